"""PynamoDB models of the tables in infra/template.yaml (docs/data-model.md).

Table names and the region come from the settings each time a model is used
(PynamoDB reconnects when a model's table name changes), not when this module is
imported: tests import the models before the local stack has set its environment.
The endpoint comes from botocore's own configuration
(AWS_ENDPOINT_URL_*), so the local stack needs no code path of its own.
"""

from __future__ import annotations

import zlib

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.config import get_settings


class FromSettings:
    """A Meta attribute read from the settings when PynamoDB asks for it."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __get__(self, instance: object, owner: type | None = None) -> str:
        value: str = getattr(get_settings(), self.field)
        return value


class _Meta:
    region = FromSettings("region")
    connect_timeout_seconds = 2
    read_timeout_seconds = 5
    max_retry_attempts = 4


# -- connections -------------------------------------------------------------


class ConnectionsByUser(GlobalSecondaryIndex["Connection"]):
    class Meta:
        index_name = "by_user"
        projection = AllProjection()

    user_id = UnicodeAttribute(hash_key=True)
    connected_at = NumberAttribute(range_key=True)


class ConnectionsByLastSeen(GlobalSecondaryIndex["Connection"]):
    class Meta:
        index_name = "by_last_seen"
        projection = AllProjection()

    sweep_shard = UnicodeAttribute(hash_key=True)
    last_seen = NumberAttribute(range_key=True)


class Connection(Model):
    """One live WebSocket connection and the user it was verified as."""

    class Meta(_Meta):
        table_name = FromSettings("connections_table")

    connection_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute()
    groups = UnicodeSetAttribute(null=True)
    connected_at = NumberAttribute()  # epoch ms
    last_seen = NumberAttribute()  # epoch s
    sweep_shard = UnicodeAttribute()
    expires_at = NumberAttribute()  # TTL, epoch s
    # The one space this socket holds (docs/protocol: one space per socket): the last it joined.
    # space_version rises with every join, so racing joins on one socket cannot both win.
    space_id = UnicodeAttribute(null=True)
    space_version = NumberAttribute(null=True)
    token_exp = NumberAttribute(null=True)  # epoch s: the identity ends with the token that proved it
    # command rate limit (chalicelib/gate.py): theoretical arrival time, epoch ms
    rate_tat = NumberAttribute(null=True)

    by_user = ConnectionsByUser()
    by_last_seen = ConnectionsByLastSeen()


class Ticket(Model):
    """A single-use WebSocket connect ticket (POST /ws/ticket), keyed by its SHA-256."""

    class Meta(_Meta):
        table_name = FromSettings("tickets_table")

    ticket_hash = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute()
    username = UnicodeAttribute()
    groups = UnicodeSetAttribute(null=True)
    token_exp = NumberAttribute(null=True)  # epoch s, of the JWT that bought it
    expires_at = NumberAttribute()  # TTL and validity, epoch s


# -- spaces ------------------------------------------------------------------


# Listed (scheduled and live) spaces are spread over LIST_SHARDS index partitions per
# state, "live#0" … "live#7": keyed on the state alone, every write to any live space
# would land on one index partition (docs/data-model.md).
LIST_SHARDS = 8


def list_shard(state: str, space_id: str) -> str:
    return f"{state}#{zlib.crc32(space_id.encode()) % LIST_SHARDS}"


def list_shards(state: str) -> list[str]:
    return [f"{state}#{k}" for k in range(LIST_SHARDS)]


class SpacesByState(GlobalSecondaryIndex["Space"]):
    class Meta:
        index_name = "by_state"
        projection = AllProjection()

    list_shard = UnicodeAttribute(hash_key=True)
    participant_count = NumberAttribute(range_key=True)


class SpacesBySchedule(GlobalSecondaryIndex["Space"]):
    class Meta:
        index_name = "by_schedule"
        projection = AllProjection()

    list_shard = UnicodeAttribute(hash_key=True)
    scheduled_start = UnicodeAttribute(range_key=True)


class SpacesByCreator(GlobalSecondaryIndex["Space"]):
    class Meta:
        index_name = "by_creator"
        projection = AllProjection()

    creator_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class SpacesByGrace(GlobalSecondaryIndex["Space"]):
    class Meta:
        index_name = "by_grace"
        projection = AllProjection()

    grace_shard = UnicodeAttribute(hash_key=True)
    grace_deadline = NumberAttribute(range_key=True)


class SpacesByCaptureDue(GlobalSecondaryIndex["Space"]):
    class Meta:
        index_name = "by_capture_due"
        projection = AllProjection()

    capture_shard = UnicodeAttribute(hash_key=True)
    capture_due = NumberAttribute(range_key=True)


class Space(Model):
    class Meta(_Meta):
        table_name = FromSettings("spaces_table")

    space_id = UnicodeAttribute(hash_key=True)
    state = UnicodeAttribute()  # scheduled | live | ended
    list_shard = UnicodeAttribute(null=True)  # by_state/by_schedule key while listed; gone once ended
    title = UnicodeAttribute()
    title_lc = UnicodeAttribute()
    creator_id = UnicodeAttribute()
    lang = UnicodeAttribute(null=True)
    speak_policy = UnicodeAttribute(default="everyone")  # everyone | following | invited
    handover = BooleanAttribute(default=False)  # pass to a co-host if the host does not come back
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    scheduled_start = UnicodeAttribute(null=True)
    started_at = UnicodeAttribute(null=True)
    ended_at = UnicodeAttribute(null=True)
    ended_reason = UnicodeAttribute(null=True)
    participant_count = NumberAttribute(default=0)  # as last published (coalesced)
    listener_count = NumberAttribute(default=0)  # exact: listeners present now
    host_id = UnicodeAttribute()
    # The stage (at most 13 entries) lives on the space item, so every stage
    # transition is one conditional write on stage_version: two moderators
    # acting at once cannot both take the last seat.
    # {user_id: {role, present, muted, muted_by, since, connection_id}}
    stage = JSONAttribute(default=dict)
    stage_version = NumberAttribute(default=0)
    meeting_id = UnicodeAttribute(null=True)
    meeting = JSONAttribute(null=True)
    replicas = JSONAttribute(null=True)  # replica meetings, oldest first (placement.py)
    replica_count = NumberAttribute(default=0)
    # The Region hosting the space's meetings (a Chime media Region), and which meeting of the
    # space this is: Chime ends meetings on their own, and the space then opens its next
    # generation (placement.renew).
    media_region = UnicodeAttribute(null=True)
    meeting_generation = NumberAttribute(null=True)
    grace_shard = UnicodeAttribute(null=True)  # set with grace_deadline while the host is away
    grace_deadline = NumberAttribute(null=True)
    # Live and the host has not joined yet: grace_deadline is when the space ends if they never do.
    host_no_show = BooleanAttribute(null=True)
    invited_user_ids = ListAttribute(of=UnicodeAttribute, null=True)
    # Audio capture (evidence.py): the running segment, the finished ones, why it runs.
    capture = JSONAttribute(null=True)  # {n, pipeline_id, pipeline_arn, prefix, started_at, recording}
    captures = JSONAttribute(null=True)  # finished segments, oldest first
    capture_segments = NumberAttribute(default=0)  # segments ever started (optimistic lock)
    capture_error = UnicodeAttribute(null=True)  # why the last capture could not start
    capture_shard = UnicodeAttribute(null=True)  # set with capture_due while housekeeping is due
    capture_due = NumberAttribute(null=True)  # epoch s: the cap of a running capture, or a release check
    held_by = UnicodeSetAttribute(null=True)  # open cases that hold this space's audio
    recording = BooleanAttribute(default=False)  # the host records for replay
    recording_started_at = UnicodeAttribute(null=True)
    captions = BooleanAttribute(default=False)
    subscriber_count = NumberAttribute(default=0)  # reminders set (X API's subscriber_count)

    by_state = SpacesByState()
    by_schedule = SpacesBySchedule()
    by_creator = SpacesByCreator()
    by_grace = SpacesByGrace()
    by_capture_due = SpacesByCaptureDue()


class MembersByUser(GlobalSecondaryIndex["Member"]):
    class Meta:
        index_name = "by_user"
        projection = AllProjection()

    user_id = UnicodeAttribute(hash_key=True)
    space_id = UnicodeAttribute(range_key=True)


class MembersWithHandRaised(GlobalSecondaryIndex["Member"]):
    class Meta:
        index_name = "hands"
        projection = AllProjection()

    space_id = UnicodeAttribute(hash_key=True)
    hand_raised_at = UnicodeAttribute(range_key=True)


class MembersAway(GlobalSecondaryIndex["Member"]):
    """Sparse: members whose socket dropped, by the end of their reconnect grace (the sweep)."""

    class Meta:
        index_name = "by_away"
        projection = AllProjection()

    away_shard = UnicodeAttribute(hash_key=True)
    away_until = NumberAttribute(range_key=True)


class Member(Model):
    """A user's place in one space: role, mic, hand, connection and attendee."""

    class Meta(_Meta):
        table_name = FromSettings("members_table")

    space_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    role = UnicodeAttribute()  # host | cohost | speaker | listener
    present = BooleanAttribute(default=False)
    removed = BooleanAttribute(default=False)  # removed by a moderator: no rejoin
    hand_raised_at = UnicodeAttribute(null=True)
    invited_at = UnicodeAttribute(null=True)
    invited_by = UnicodeAttribute(null=True)
    joined_at = UnicodeAttribute(null=True)
    connection_id = UnicodeAttribute(null=True)
    attendee_id = UnicodeAttribute(null=True)
    meeting_id = UnicodeAttribute(null=True)
    pooled = BooleanAttribute(null=True)  # the attendee came from the listener pool (pool.py)
    # The attendee's JoinToken and ExternalUserId, so a reconnect within the grace gets the
    # same attendee back without a Chime call.
    join_token = UnicodeAttribute(null=True)
    attendee_external = UnicodeAttribute(null=True)
    # A listener seated in a replica and promoted to the stage also holds an attendee in the
    # primary meeting (Chime's promote-to-primary: the replica connection is kept and the client
    # promotes it with these credentials); kept for a resume, deleted when they leave the stage.
    # https://aws.github.io/amazon-chime-sdk-js/modules/replicatedmeetings.html
    primary_attendee_id = UnicodeAttribute(null=True)
    primary_meeting_id = UnicodeAttribute(null=True)
    primary_join_token = UnicodeAttribute(null=True)
    # The socket dropped: the member keeps seat and attendee until then (membership.step_away).
    away_until = NumberAttribute(null=True)
    away_shard = UnicodeAttribute(null=True)
    # The attendee's audio connection as Chime's attendee events last said ("joined", "left",
    # "dropped") and that event's timestamp (epoch ms), so older or repeated events change
    # nothing (spaces/presence.py). Cleared when the member takes another attendee.
    audio = UnicodeAttribute(null=True)
    audio_at = NumberAttribute(null=True)
    reaction_window = NumberAttribute(default=0)
    reaction_count = NumberAttribute(default=0)

    by_user = MembersByUser()
    hands = MembersWithHandRaised()
    by_away = MembersAway()


class Presence(Model):
    """One row per member whose socket is open: exactly the members with a `connection_id`,
    written in the same transaction as every change of it (docs/data-model.md). A broadcast's
    recipients are one strongly consistent Query of the space's rows, however many people
    came and went."""

    class Meta(_Meta):
        table_name = FromSettings("presence_table")

    space_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    connection_id = UnicodeAttribute()


# -- users and relations -----------------------------------------------------


class User(Model):
    """A user's own settings and state. The notification fan-out reads a hundred of these
    with one BatchGetItem, so all it needs of a follower is on this one item."""

    class Meta(_Meta):
        table_name = FromSettings("users_table")

    user_id = UnicodeAttribute(hash_key=True)
    suspended_until = NumberAttribute(null=True)  # epoch s
    suspension_reason = UnicodeAttribute(null=True)
    # open WebSocket connections (added on $connect, removed when the socket is forgotten)
    connection_ids = UnicodeSetAttribute(null=True)
    # {device_id: {platform, endpoint_arn, registered_at}}: SNS mobile push endpoints
    devices = MapAttribute(null=True)  # type: ignore[var-annotated]
    # {start: "22:00", end: "07:00", tz: "Europe/Istanbul"}: no pushes in between
    quiet_hours = JSONAttribute(null=True)
    # notifications created at or before this ISO time count as read ("mark all read")
    read_until = UnicodeAttribute(null=True)


class DeviceOwner(Model):
    """`user_id = "device#<sha256 of the token>"`: which user a push token belongs to now.

    Lives in the users table, like OpenCase in the cases table: a token registered by
    a second user (a phone changing hands) is taken from the first one's devices.
    """

    class Meta(_Meta):
        table_name = FromSettings("users_table")

    user_id = UnicodeAttribute(hash_key=True)
    owner_id = UnicodeAttribute()
    endpoint_arn = UnicodeAttribute()


class RelationsInverse(GlobalSecondaryIndex["Relation"]):
    class Meta:
        index_name = "inverse"
        projection = AllProjection()

    other_id = UnicodeAttribute(hash_key=True)
    inverse_rel = UnicodeAttribute(range_key=True)


class Relation(Model):
    """`ada` blocks/follows `bob`: user_id=ada, rel=block#bob, inverse_rel=block#ada."""

    class Meta(_Meta):
        table_name = FromSettings("relations_table")

    user_id = UnicodeAttribute(hash_key=True)
    rel = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()
    other_id = UnicodeAttribute()
    inverse_rel = UnicodeAttribute()
    created_at = UnicodeAttribute()

    inverse = RelationsInverse()


# -- notifications (chalicelib/notifications) ------------------------------------


class RemindersByUser(GlobalSecondaryIndex["Reminder"]):
    class Meta:
        index_name = "by_user"
        projection = AllProjection()

    user_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Reminder(Model):
    """A user wants to be told when a scheduled space starts, is cancelled or moves."""

    class Meta(_Meta):
        table_name = FromSettings("reminders_table")

    space_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    created_at = UnicodeAttribute()

    by_user = RemindersByUser()


class NotificationsByTime(GlobalSecondaryIndex["Notification"]):
    class Meta:
        index_name = "by_time"
        projection = AllProjection()

    user_id = UnicodeAttribute(hash_key=True)
    created_sk = UnicodeAttribute(range_key=True)


class Notification(Model):
    """One entry of a user's inbox. Its key names what it is about (`{space_id}:live`), so
    writing it with attribute_not_exists is also the claim that it is told only once."""

    class Meta(_Meta):
        table_name = FromSettings("notifications_table")

    user_id = UnicodeAttribute(hash_key=True)
    notification_id = UnicodeAttribute(range_key=True)
    created_sk = UnicodeAttribute()  # {created_at}#{notification_id}: the inbox order
    created_at = UnicodeAttribute()
    kind = UnicodeAttribute()  # live | cancelled | rescheduled
    space_id = UnicodeAttribute()
    title = UnicodeAttribute()
    actor_id = UnicodeAttribute()  # whose space (host) or whose co-hosting
    scheduled_start = UnicodeAttribute(null=True)
    read_at = UnicodeAttribute(null=True)
    expires_at = NumberAttribute()  # TTL, epoch s

    by_time = NotificationsByTime()


class PendingJob(Model):
    """A notification job that could not be queued (an SQS outage): the sweep queues it.

    Lives in the notifications table under the one partition `user_id = "pending#jobs"`
    (only failures land here: a handful at most); `created_sk` is absent, so the inbox
    index never lists it.
    """

    class Meta(_Meta):
        table_name = FromSettings("notifications_table")

    user_id = UnicodeAttribute(hash_key=True)
    notification_id = UnicodeAttribute(range_key=True)  # {created_at}|{uuid}
    body = UnicodeAttribute()  # the job message, as it would have been queued
    expires_at = NumberAttribute()  # TTL: a day of retries at most


# -- safety: reports, cases, audit ---------------------------------------------


class ReportsByCase(GlobalSecondaryIndex["Report"]):
    class Meta:
        index_name = "by_case"
        projection = AllProjection()

    case_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Report(Model):
    """One report as triage stored it, with the snapshot taken when it was filed."""

    class Meta(_Meta):
        table_name = FromSettings("reports_table")

    report_id = UnicodeAttribute(hash_key=True)
    case_id = UnicodeAttribute()
    created_at = UnicodeAttribute()
    reporter_id = UnicodeAttribute()
    space_id = UnicodeAttribute()
    target_key = UnicodeAttribute()  # user#bob | space#<id>
    target_user_id = UnicodeAttribute(null=True)
    category = UnicodeAttribute()
    note = UnicodeAttribute(null=True)
    snapshot = JSONAttribute()
    stored_at = UnicodeAttribute()

    by_case = ReportsByCase()


class CasesByStatus(GlobalSecondaryIndex["Case"]):
    class Meta:
        index_name = "by_status"
        projection = AllProjection()

    status = UnicodeAttribute(hash_key=True)
    last_seen_at = UnicodeAttribute(range_key=True)


class CasesByPriority(GlobalSecondaryIndex["Case"]):
    class Meta:
        index_name = "by_priority"
        projection = AllProjection()

    status_priority = UnicodeAttribute(hash_key=True)
    last_seen_at = UnicodeAttribute(range_key=True)


class CasesByTarget(GlobalSecondaryIndex["Case"]):
    class Meta:
        index_name = "by_target"
        projection = AllProjection()

    target_key = UnicodeAttribute(hash_key=True)
    opened_at = UnicodeAttribute(range_key=True)


class Case(Model):
    """The reports about one target, grouped for an admin; `version` rises with every change."""

    class Meta(_Meta):
        table_name = FromSettings("cases_table")

    case_id = UnicodeAttribute(hash_key=True)
    target_key = UnicodeAttribute()
    target_type = UnicodeAttribute()  # user | space
    target_id = UnicodeAttribute()
    status = UnicodeAttribute()  # open | closed
    priority = UnicodeAttribute()  # low | normal | high
    status_priority = UnicodeAttribute()  # open#high
    report_count = NumberAttribute(default=0)
    reporters = UnicodeSetAttribute(null=True)
    categories = UnicodeSetAttribute(null=True)
    # [[epoch s, reporter], ...] of the latest reports, for the crowd rule (triage.py)
    recent = JSONAttribute(default=list)
    first_seen_at = UnicodeAttribute()
    last_seen_at = UnicodeAttribute()
    opened_at = UnicodeAttribute()
    closed_at = UnicodeAttribute(null=True)
    resolution = UnicodeAttribute(null=True)
    latest_space_id = UnicodeAttribute(null=True)
    latest_report_id = UnicodeAttribute(null=True)
    actions = JSONAttribute(default=list)  # what admins did, oldest first
    version = NumberAttribute(default=0)
    evidence_spaces = UnicodeSetAttribute(null=True)  # spaces whose audio this case holds
    evidence_reason = UnicodeAttribute(null=True)  # why audio could not be captured, if it could not

    by_status = CasesByStatus()
    by_priority = CasesByPriority()
    by_target = CasesByTarget()


class OpenCase(Model):
    """`case_id = "open#user#bob"`: which case is the target's open one (at most one).

    Lives in the cases table without the GSI attributes, so no index lists it.
    Creating it with attribute_not_exists and deleting it when the case closes,
    in the same transactions, is what keeps one open case per target even when
    two reports about a new target are triaged at once; the by_target index is
    eventually consistent and could not.
    """

    class Meta(_Meta):
        table_name = FromSettings("cases_table")

    case_id = UnicodeAttribute(hash_key=True)
    open_case_id = UnicodeAttribute()


class AuditByTarget(GlobalSecondaryIndex["Audit"]):
    class Meta:
        index_name = "by_target"
        projection = AllProjection()

    target_key = UnicodeAttribute(hash_key=True)
    audit_sk = UnicodeAttribute(range_key=True)


class Audit(Model):
    """One admin action: partitioned by UTC day, sorted by time (`audit_sk` = `{at}#{audit_id}`)."""

    class Meta(_Meta):
        table_name = FromSettings("audit_table")

    audit_day = UnicodeAttribute(hash_key=True)
    audit_sk = UnicodeAttribute(range_key=True)
    audit_id = UnicodeAttribute()
    at = UnicodeAttribute()
    admin_id = UnicodeAttribute()
    action = UnicodeAttribute()
    target_key = UnicodeAttribute()
    target_type = UnicodeAttribute()
    target_id = UnicodeAttribute()
    case_id = UnicodeAttribute()
    reason = UnicodeAttribute()
    details = JSONAttribute(default=dict)

    by_target = AuditByTarget()
