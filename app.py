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
