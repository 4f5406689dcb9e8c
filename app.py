"""sohbet: the Chalice app. Declarations only; the logic lives in chalicelib."""

from chalice import Chalice, CORSConfig, Rate

from chalicelib import api, handlers, observability
from chalicelib.config import get_settings

app = Chalice(app_name="sohbet")
app.experimental_feature_flags.update(["WEBSOCKETS"])

_stage = get_settings().stage


# Every entry point: an X-Ray subsegment when sampled, its metrics flushed at the end.
@app.middleware("all")
def observe(event, get_response):
    return observability.observe(event, get_response)


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


# -- The broadcast tier's Lambda authorizer (AppSync Events, chalicelib/broadcast.py) -------


@app.lambda_function(name="broadcast_authorizer")
def broadcast_authorizer(event, context):
    return handlers.broadcast_authorizer(event)


# -- Queues and schedules --------------------------------------------------


@app.on_sqs_message(queue=f"sohbet-{_stage}-moderation", batch_size=10)
def on_moderation_report(event):
    return handlers.moderation_batch(event)


@app.on_sqs_message(queue=f"sohbet-{_stage}-fanout", batch_size=10)
def on_fanout_shard(event):
    return handlers.fanout_batch(event)


@app.on_sqs_message(queue=f"sohbet-{_stage}-notify", batch_size=10)
def on_notify(event):
    return handlers.notify_batch(event)


@app.schedule(Rate(1, unit=Rate.MINUTES))
def sweep(event):
    return handlers.sweep(event)


# Chime's meeting events, in the control Region's EventBridge (docs/media.md, "Meetings end"
# and "Presence": a meeting Chime ended, and attendees' audio connections coming and going).
@app.on_cw_event(
    {
        "source": ["aws.chime"],
        "detail-type": ["Chime Meeting State Change"],
        "detail": {
            "eventType": [
                "chime:MeetingEnded",
                "chime:AttendeeJoined",
                "chime:AttendeeLeft",
                "chime:AttendeeDropped",
            ]
        },
    }
)
def on_chime_event(event):
    return handlers.chime_event(event)


# -- REST API --------------------------------------------------------------


@app.route("/ws/ticket", methods=["POST"], cors=True)
def ws_ticket():
    return handlers.ws_ticket(app.current_request)


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


@app.route("/spaces/{space_id}/recording", methods=["GET"], cors=True)
def space_recording(space_id):
    return handlers.space_recording(app.current_request, space_id)


@app.route("/spaces/{space_id}", methods=["PATCH"], cors=True)
def reschedule_space(space_id):
    return handlers.reschedule_space(app.current_request, space_id)


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


@app.route("/me/mutes/{user_id}", methods=["PUT", "DELETE"], cors=True)
def mute(user_id):
    return handlers.relation(app.current_request, "mute", user_id)


@app.route("/me/mutes", methods=["GET"], cors=True)
def list_mutes():
    return handlers.list_relations(app.current_request, "mute")


# -- REST: reminders, devices, the inbox (chalicelib/notifications) ----------


@app.route("/spaces/{space_id}/reminder", methods=["PUT", "DELETE"], cors=True)
def reminder(space_id):
    return handlers.reminder(app.current_request, space_id)


@app.route("/me/reminders", methods=["GET"], cors=True)
def list_reminders():
    return handlers.list_reminders(app.current_request)


@app.route("/me/devices", methods=["POST"], cors=True)
def register_device():
    return handlers.register_device(app.current_request)


@app.route("/me/devices", methods=["GET"], cors=True)
def list_devices():
    return handlers.list_devices(app.current_request)


@app.route("/me/devices/{device_id}", methods=["DELETE"], cors=True)
def unregister_device(device_id):
    return handlers.unregister_device(app.current_request, device_id)


@app.route("/me/notifications", methods=["GET"], cors=True)
def list_notifications():
    return handlers.list_notifications(app.current_request)


@app.route("/me/notifications/read", methods=["POST"], cors=True)
def mark_notifications_read():
    return handlers.mark_notifications_read(app.current_request)


@app.route("/me/quiet-hours", methods=["GET", "PUT", "DELETE"], cors=True)
def quiet_hours():
    return handlers.quiet_hours(app.current_request)


# -- REST: reports and the admin reporting API -------------------------------

# Browsers may send Idempotency-Key to the two routes that take it.
_IDEMPOTENT_CORS = CORSConfig(allow_origin="*", allow_headers=["Idempotency-Key"])


@app.route("/reports", methods=["POST"], cors=_IDEMPOTENT_CORS)
def file_report():
    return handlers.file_report(app.current_request)


@app.route("/admin/cases", methods=["GET"], cors=True)
def admin_list_cases():
    return handlers.admin_list_cases(app.current_request)


@app.route("/admin/cases/{case_id}", methods=["GET"], cors=True)
def admin_get_case(case_id):
    return handlers.admin_get_case(app.current_request, case_id)


@app.route("/admin/cases/{case_id}/evidence", methods=["GET"], cors=True)
def admin_case_evidence(case_id):
    return handlers.admin_case_evidence(app.current_request, case_id)


@app.route("/admin/cases/{case_id}/actions", methods=["POST"], cors=_IDEMPOTENT_CORS)
def admin_case_action(case_id):
    return handlers.admin_case_action(app.current_request, case_id)


@app.route("/admin/audit", methods=["GET"], cors=True)
def admin_list_audit():
    return handlers.admin_list_audit(app.current_request)


@app.middleware("http")
def uniform_errors(event, get_response):
    return api.uniform_errors(get_response(event))
