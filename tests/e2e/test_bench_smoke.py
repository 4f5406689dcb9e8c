"""`python -m bench` end to end at a tiny N: the one-command benchmark runs and its table
holds the figures the performance page quotes (each variant's stack as a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
N = 5


def _rows(table: str) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells[1:]
    return rows


def _number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("x"))


def test_bench_runs_every_variant_and_prints_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    args = ["-n", str(N), "--repeats", "2", "--reaction-spread", "1", "--sender-posts", "200"]
    args += ["--storm-budget", "60", "--naive-storm-budget", "60"]
    args += ["--reaction-budget", "20", "--naive-reaction-budget", "20", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(out.read_text())
    assert rows["figure"] == ["sohbet", "api-gateway-only", "naive", "naive/sohbet", "naive/api-gateway-only"]
    sohbet, gateway_only, naive = 0, 1, 2
    for column in (sohbet, gateway_only, naive):
        assert _number(rows["join storm: listeners joined"][column]) == N
        assert _number(rows["stage event: deliveries missing"][column]) == 0
        assert _number(rows["reactions: deliveries owed at the end"][column]) == 0
    # As deployed, a room event is one publish to the tier, which delivers it to every listener.
    assert _number(rows["stage event: tier publishes per event"][sohbet]) == 1
    assert _number(rows["stage event: tier deliveries per event"][sohbet]) >= N
    assert _number(rows["stage event: tier publishes per event"][gateway_only]) == 0
    assert _number(rows["stage event: posts per event"][gateway_only]) >= N
    # The naive design broadcasts every reaction to everyone; sohbet coalesces them.
    assert _number(rows["reactions: posts per reaction"][naive]) > _number(
        rows["reactions: posts per reaction"][gateway_only]
    )
