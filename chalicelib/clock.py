"""The one clock format: ISO 8601 UTC with microseconds, as every stored timestamp uses."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
