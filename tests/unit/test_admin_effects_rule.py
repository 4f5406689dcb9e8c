"""Which admin actions leave a durable effect (chalicelib/admin/effects.py), recorded with the action."""

from __future__ import annotations

import pytest

from chalicelib.admin import effects

ENTRY = {
    "action_id": "a1",
    "at": "2026-12-03T07:00:00.000000Z",
    "admin_id": "root",
    "details": {"space_id": "s1"},
}


@pytest.mark.parametrize("action", ["remove_from_space", "end_space", "suspend"])
def test_actions_that_must_happen_are_recorded_as_pending(action: str) -> None:
    effect = effects.pending_for(action, "bob", ENTRY)
    assert effect is not None
    assert (effect.case_id, effect.status, effect.action, effect.target_id, effect.space_id) == (
        "effect#a1",
        effects.PENDING,
        action,
        "bob",
        "s1",
    )
    # listed through the cases table's by_status index, never as an open or closed case
    assert effect.status not in ("open", "closed") and effect.last_seen_at == ENTRY["at"]


@pytest.mark.parametrize("action", ["dismiss", "warn", "lift_suspension"])
def test_other_actions_leave_nothing_pending(action: str) -> None:
    assert effects.pending_for(action, "bob", ENTRY) is None
