"""sohbet: the Chalice app. Declarations only; the logic lives in chalicelib."""

from chalice import Chalice, Rate

from chalicelib import handlers
from chalicelib.config import get_settings

app = Chalice(app_name="sohbet")
app.experimental_feature_flags.update(["WEBSOCKETS"])

_stage = get_settings().stage


# -- WebSocket API ---------------------------------------------------------


@app.on_ws_connect()
def ws_connect(event):
    return handlers.ws_connect(event)


@app.on_ws_message()
def ws_message(event):
    return handlers.ws_message(event)


@app.on_ws_disconnect()
def ws_disconnect(event):
    return handlers.ws_disconnect(event)


# -- Queues and schedules --------------------------------------------------


@app.on_sqs_message(queue=f"sohbet-{_stage}-moderation", batch_size=10)
def on_moderation_report(event):
    return handlers.moderation_batch(event)


@app.on_sqs_message(queue=f"sohbet-{_stage}-fanout", batch_size=10)
def on_fanout_shard(event):
    return handlers.fanout_batch(event)


@app.schedule(Rate(1, unit=Rate.MINUTES))
def sweep(event):
    return handlers.sweep(event)


# -- REST API --------------------------------------------------------------


@app.route("/whoami", methods=["GET"], cors=True)
def whoami():
    return handlers.whoami(app.current_request)


@app.route("/spaces", methods=["POST"], cors=True)
def create_space():
    return handlers.create_space(app.current_request)


@app.route("/spaces", methods=["GET"], cors=True)
def list_spaces():
    return handlers.list_spaces(app.current_request)


@app.route("/spaces/search", methods=["GET"], cors=True)
def search_spaces():
    return handlers.search_spaces(app.current_request)


@app.route("/spaces/by/creator/{user_id}", methods=["GET"], cors=True)
def spaces_by_creator(user_id):
    return handlers.spaces_by_creator(app.current_request, user_id)


@app.route("/spaces/{space_id}", methods=["GET"], cors=True)
def get_space(space_id):
    return handlers.get_space(app.current_request, space_id)


@app.route("/spaces/{space_id}/start", methods=["POST"], cors=True)
def start_space(space_id):
    return handlers.start_space(app.current_request, space_id)


@app.route("/spaces/{space_id}/cancel", methods=["POST"], cors=True)
def cancel_space(space_id):
    return handlers.cancel_space(app.current_request, space_id)


@app.route("/spaces/{space_id}/end", methods=["POST"], cors=True)
def end_space(space_id):
    return handlers.end_space(app.current_request, space_id)


@app.route("/me/follows/{user_id}", methods=["PUT", "DELETE"], cors=True)
def follow(user_id):
    return handlers.relation(app.current_request, "follow", user_id)


@app.route("/me/follows", methods=["GET"], cors=True)
def list_follows():
    return handlers.list_relations(app.current_request, "follow")


@app.route("/me/blocks/{user_id}", methods=["PUT", "DELETE"], cors=True)
def block(user_id):
    return handlers.relation(app.current_request, "block", user_id)


@app.route("/me/blocks", methods=["GET"], cors=True)
def list_blocks():
    return handlers.list_relations(app.current_request, "block")
