"""Titles: the same rule for REST and WebSocket, refusing what a reader cannot see."""

from __future__ import annotations

import pytest

from chalicelib import rules
from chalicelib.errors import CommandError, ErrorCode


@pytest.mark.parametrize(
    "title",
    [
        "\u202e\u200b",  # bidi override + zero-width space only
        "\u200b\u200c\u200d\u2060",  # zero-width characters only
        "\u3164",  # Hangul filler, a "letter" that renders blank
        "\u2800\u2800",  # braille blank
        "\u0301\u0301",  # combining marks with nothing to combine with
        "Friday \u202ejam",  # a bidi override anywhere
        "jam\u2066",  # an isolate
        "jam\x00",  # control character
        "jam\x7f",
        "jam\ue000",  # private use
        "\U000e0001\U000e0020",  # tag characters only (format: invisible)
        "x" * (rules.TITLE_MAX + 1),
    ],
)
def test_titles_nobody_can_read_are_bad_requests(title: str) -> None:
    with pytest.raises(CommandError) as refused:
        rules.validate_title(title)
    assert refused.value.code == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize(
    ("title", "kept"),
    [
        ("  Friday   jam ", "Friday jam"),
        ("Cuma sohbeti 🔥", "Cuma sohbeti 🔥"),
        ("מוזיקה ערבית", "מוזיקה ערבית"),  # right-to-left text needs no control characters
        ("café", "café"),
        ("x" * rules.TITLE_MAX, "x" * rules.TITLE_MAX),
    ],
)
def test_readable_titles_pass_with_whitespace_collapsed(title: str, kept: str) -> None:
    assert rules.validate_title(title) == kept
