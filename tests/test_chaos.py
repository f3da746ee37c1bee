"""`./run.sh chaos`: random faults on the user's stack while the real DAG streams; afterwards
every user Kafka acknowledged is one row, field for field, and every service came back by
itself (script/chaos/). The schedule is seeded: the same seed, the same faults."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from script.chaos import driver
from script.chaos.nemesis import ACTIONS, GAP_SECONDS, PAUSE_SECONDS, schedule
from script.harness.side import free_port
from script.layout import REPO

SEED = 7  # its 3 minutes: the stream job SIGKILLed, then two more faults (see the JSON)


def test_the_nemesis_schedule_is_the_seeds_and_keeps_to_its_bounds() -> None:
    plan = schedule(SEED, 1800, 12)
    assert plan == schedule(SEED, 1800, 12) != schedule(SEED + 1, 1800, 12)
    times = [0.0] + [at for at, *_ in plan]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(GAP_SECONDS[0] - 0.1 <= gap <= GAP_SECONDS[1] + 0.1 for gap in gaps)
    assert {action for _, _, action, _ in plan} == set(ACTIONS)
    assert all(PAUSE_SECONDS[0] <= pause <= PAUSE_SECONDS[1] for *_, pause in plan)
    assert {index for _, index, _, _ in plan} <= set(range(12))


def test_the_driver_stops_saying_why_when_airflow_stays_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Airflow that never comes back (its database not restarted) ends the run with a reason:
    the driver once retried for ever, and the test's 30-minute timeout said nothing."""
    monkeypatch.setattr(driver, "url", lambda: f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(driver, "AWAY_BOUND", 0.5)
    monkeypatch.setattr(driver, "RETRY_EVERY", 0.1)
    said: list[str] = []
    runs = driver.Driver(10, 10, said.append)
    runs.run()
    assert runs.runs == []
    assert runs.error and "did not answer for 0s" in runs.error and "does not answer" in runs.error
    assert said[-1] == f"driver: stopped: {runs.error}"


@pytest.mark.long
@pytest.mark.usefixtures("user_pipeline_stays_healthy")
def test_three_minutes_of_chaos_lose_and_double_nothing_and_everything_comes_back() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "script", "chaos", "--minutes", "3", "--seed", str(SEED)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = done.stdout + done.stderr
    found = re.search(r"^JSON: (.+)$", done.stdout, re.MULTILINE)
    assert found, output[-4000:]
    timeline = json.loads(Path(found.group(1)).read_text())
    count = timeline["count"]
    assert count["acknowledged"] > 0 and count["rows"] == count["acknowledged"], output[-4000:]
    assert (count["lost"], count["extra"], count["dead_letters"]) == (0, 0, 0)
    assert count["run_users_missing"] == 0
    runs = timeline["runs"]
    assert runs and {r["state"] for r in runs} <= {"success", "failed"}
    assert any(r["state"] == "success" for r in runs)
    faults = [f for f in timeline["faults"] if not f["note"]]
    assert faults and all(f["recovered_s"] is not None for f in faults), timeline["faults"]
    assert done.returncode == 0, output[-4000:]
    assert Path(found.group(1)).with_name("timeline.png").stat().st_size > 0
