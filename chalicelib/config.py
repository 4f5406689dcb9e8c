"""Settings read from the environment.

Production gets these from the merge template (infra/template.yaml, Globals);
the local stack sets the same variables before it imports app.py. Nothing here
knows which of the two it is running in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    stage: str
    region: str
    spaces_table: str
    members_table: str
    presence_table: str
    connections_table: str
    relations_table: str
    users_table: str
    reports_table: str
    cases_table: str
    audit_table: str
    idempotency_table: str
    tickets_table: str
    reminders_table: str
    notifications_table: str
    moderation_queue_url: str
    fanout_queue_url: str
    notify_queue_url: str
    # https://{api-id}.execute-api.{region}.amazonaws.com/{stage} in AWS; the
    # emulator's http://127.0.0.1:PORT locally.
    websocket_endpoint: str
    auth_issuer: str
    auth_audience: str
    auth_jwks_url: str
    host_grace_seconds: int
    reconnect_grace_seconds: int
    # How long a member whose socket is gone stays while Chime says their audio is up (the
    # reconnect grace extended; a bound against a lost AttendeeLeft). spaces/presence.py.
    audio_hold_seconds: int
    listener_count_interval_seconds: float
    connection_ttl_seconds: int
    fanout_shard_threshold: int
    fanout_shard_size: int
    fanout_workers: int
    naive_fanout: bool
    naive_join_broadcast: bool
    reaction_limit: int
    reaction_window_seconds: int
    reaction_flush_seconds: float
    max_listeners: int
    meeting_max_attendees: int
    # Chime: the Region whose API endpoint the app calls (a control Region) and the Region
    # meetings are hosted in by default (any media Region); replicas a primary may have (the
    # account's quota: 4 unless raised, up to 40); listener attendees pre-created per batch
    # (BatchCreateAttendee, 1-100; 0: one CreateAttendee per join). docs/media.md.
    chime_control_region: str
    media_region: str
    max_replicas: int
    attendee_pool_batch: int
    chime_max_attempts: int  # attempts per Chime call, botocore's retries included
    # doors at the edge (docs/limits.md)
    command_rate_per_second: float
    command_burst: int
    command_hard_limit: int
    max_connections_per_user: int
    ticket_ttl_seconds: int
    # the broadcast tier (chalicelib/broadcast.py): AppSync Events' https://{http domain}/event
    # and wss://{realtime domain}/event/realtime; empty: every event goes through API Gateway
    broadcast_http_url: str = ""
    broadcast_realtime_url: str = ""
    # spaces whose listener count reaches this publish once per event (0: every space)
    broadcast_threshold: int = 0
    # per-user quotas (chalicelib/quotas.py) and a host who never shows up
    quota_live_spaces_per_hour: int = 6
    quota_scheduled_spaces_per_day: int = 20
    quota_reports_per_hour: int = 20
    quota_hand_toggles_per_minute: int = 10
    host_no_show_seconds: int = 600
    # audio evidence, host recordings and captions (docs/media.md, "Evidence")
    evidence_bucket: str = ""
    capture_all_spaces: bool = False  # X's behaviour: every live space is captured from its start
    evidence_max_seconds: int = 4 * 60 * 60  # a capture stops this long after it started
    evidence_url_seconds: int = 300  # lifetime of a presigned evidence or replay URL
    # notifications (chalicelib/notifications): SNS platform applications (empty: that
    # platform is not offered), followers per queued chunk, devices per user
    apns_platform_application_arn: str = ""
    apns_sandbox_platform_application_arn: str = ""
    fcm_platform_application_arn: str = ""
    notify_chunk_size: int = 100
    notify_page_size: int = 2000
    max_devices_per_user: int = 10


def _table(name: str) -> str:
    return os.environ.get(name, "")


_override: Settings | None = None


def override(settings: Settings | None) -> None:
    """Use these settings instead of the environment's (None: back to the environment).
    Tests reach this through clients.override(settings=...)."""
    global _override
    _override = settings
    get_settings.cache_clear()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    if _override is not None:
        return _override
    return from_environment()


# The Regions with a Chime SDK Meetings API endpoint (control Regions), as botocore's endpoint
# data lists them for chime-sdk-meetings; every other Region can host meetings (MediaRegion)
# but has no API: https://docs.aws.amazon.com/chime-sdk/latest/dg/chime-sdk-meetings-regions.html
CHIME_CONTROL_REGIONS = frozenset(
    {
        "af-south-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-south-1",
        "ap-southeast-1",
        "ap-southeast-2",
        "ca-central-1",
        "eu-central-1",
        "eu-west-2",
        "il-central-1",
        "us-east-1",
        "us-west-2",
    }
)


def control_region_for(region: str) -> str:
    """The stack's own Region when it has the Chime API, else us-east-1 (the control plane's home:
    https://docs.aws.amazon.com/chime-sdk/latest/dg/media-control-plane-java.html)."""
    return region if region in CHIME_CONTROL_REGIONS else "us-east-1"


def from_environment() -> Settings:
    issuer = os.environ.get("AUTH_ISSUER", "")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    return Settings(
        stage=os.environ.get("SOHBET_STAGE", "dev"),
        region=region,
        spaces_table=_table("SPACES_TABLE"),
        members_table=_table("MEMBERS_TABLE"),
        presence_table=_table("PRESENCE_TABLE"),
        connections_table=_table("CONNECTIONS_TABLE"),
        relations_table=_table("RELATIONS_TABLE"),
        users_table=_table("USERS_TABLE"),
        reports_table=_table("REPORTS_TABLE"),
        cases_table=_table("CASES_TABLE"),
        audit_table=_table("AUDIT_TABLE"),
        idempotency_table=_table("IDEMPOTENCY_TABLE"),
        tickets_table=_table("TICKETS_TABLE"),
        reminders_table=_table("REMINDERS_TABLE"),
        notifications_table=_table("NOTIFICATIONS_TABLE"),
        moderation_queue_url=os.environ.get("MODERATION_QUEUE_URL", ""),
        fanout_queue_url=os.environ.get("FANOUT_QUEUE_URL", ""),
        notify_queue_url=os.environ.get("NOTIFY_QUEUE_URL", ""),
        websocket_endpoint=os.environ.get("WEBSOCKET_ENDPOINT", ""),
        auth_issuer=issuer,
        auth_audience=os.environ.get("AUTH_AUDIENCE", ""),
        auth_jwks_url=os.environ.get("AUTH_JWKS_URL") or (issuer.rstrip("/") + "/.well-known/jwks.json"),
        host_grace_seconds=_int("HOST_GRACE_SECONDS", 120),
        reconnect_grace_seconds=_int("RECONNECT_GRACE_SECONDS", 60),
        audio_hold_seconds=_int("AUDIO_HOLD_SECONDS", 2 * 60 * 60),
        listener_count_interval_seconds=_float("LISTENER_COUNT_INTERVAL_SECONDS", 2.0),
        connection_ttl_seconds=_int("CONNECTION_TTL_SECONDS", 2 * 60 * 60 + 600),
        fanout_shard_threshold=_int("FANOUT_SHARD_THRESHOLD", 500),
        fanout_shard_size=_int("FANOUT_SHARD_SIZE", 250),
        fanout_workers=_int("FANOUT_WORKERS", 16),
        naive_fanout=os.environ.get("NAIVE_FANOUT", "") in ("1", "true", "yes"),
        # the benchmark builds its naive room without the quadratic join broadcasts (NAIVE_JOINS=0)
        naive_join_broadcast=os.environ.get("NAIVE_FANOUT", "") in ("1", "true", "yes")
        and os.environ.get("NAIVE_JOINS", "1") not in ("0", "false", "no"),
        reaction_limit=_int("REACTION_LIMIT", 5),
        reaction_window_seconds=_int("REACTION_WINDOW_SECONDS", 10),
        reaction_flush_seconds=_float("REACTION_FLUSH_SECONDS", 1.0),
        max_listeners=_int("MAX_LISTENERS", 10_000),
        meeting_max_attendees=_int("MEETING_MAX_ATTENDEES", 250),
        chime_control_region=os.environ.get("CHIME_CONTROL_REGION") or control_region_for(region),
        media_region=os.environ.get("MEDIA_REGION") or region,
        max_replicas=_int("MAX_REPLICAS_PER_MEETING", 4),
        attendee_pool_batch=_int("ATTENDEE_POOL_BATCH", 100),
        chime_max_attempts=_int("CHIME_MAX_ATTEMPTS", 2),
        command_rate_per_second=_float("COMMAND_RATE_PER_SECOND", 10.0),
        command_burst=_int("COMMAND_BURST", 20),
        command_hard_limit=_int("COMMAND_HARD_LIMIT", 50),
        max_connections_per_user=_int("MAX_CONNECTIONS_PER_USER", 10),
        ticket_ttl_seconds=_int("TICKET_TTL_SECONDS", 45),
        broadcast_http_url=os.environ.get("BROADCAST_HTTP_URL", ""),
        broadcast_realtime_url=os.environ.get("BROADCAST_REALTIME_URL", ""),
        broadcast_threshold=_int("BROADCAST_THRESHOLD", 0),
        quota_live_spaces_per_hour=_int("QUOTA_LIVE_SPACES_PER_HOUR", 6),
        quota_scheduled_spaces_per_day=_int("QUOTA_SCHEDULED_SPACES_PER_DAY", 20),
        quota_reports_per_hour=_int("QUOTA_REPORTS_PER_HOUR", 20),
        quota_hand_toggles_per_minute=_int("QUOTA_HAND_TOGGLES_PER_MINUTE", 10),
        host_no_show_seconds=_int("HOST_NO_SHOW_SECONDS", 600),
        evidence_bucket=os.environ.get("EVIDENCE_BUCKET", ""),
        capture_all_spaces=os.environ.get("CAPTURE_ALL_SPACES", "") in ("1", "true", "yes"),
        evidence_max_seconds=_int("EVIDENCE_MAX_SECONDS", 4 * 60 * 60),
        evidence_url_seconds=_int("EVIDENCE_URL_SECONDS", 300),
        apns_platform_application_arn=os.environ.get("APNS_PLATFORM_APPLICATION_ARN", ""),
        apns_sandbox_platform_application_arn=os.environ.get("APNS_SANDBOX_PLATFORM_APPLICATION_ARN", ""),
        fcm_platform_application_arn=os.environ.get("FCM_PLATFORM_APPLICATION_ARN", ""),
        # 100: one BatchGetItem and one TransactWriteItems hold at most 100 items
        notify_chunk_size=min(_int("NOTIFY_CHUNK_SIZE", 100), 100),
        notify_page_size=_int("NOTIFY_PAGE_SIZE", 2000),
        max_devices_per_user=_int("MAX_DEVICES_PER_USER", 10),
    )
