"""`./run.sh faults` when a scenario gives up: the others still run, and the table and the
JSON say which one failed and why (no stack needed: the scenarios are stand-ins here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from script.faults import cli
from script.faults.rig import Outcome
from script.layout import StackError


def test_a_scenario_that_gives_up_is_reported_with_its_reason_and_the_next_still_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def gives_up(_durations: object) -> Outcome:
        raise StackError("faults-kill: no new rows after 300 s; see kill.log")

    def counts(_durations: object) -> Outcome:
        return Outcome("Cassandra down 10 s mid-run", tried=1, sent=500, rows=500)

    monkeypatch.setattr(cli, "EVERY", {"kill": gives_up, "cassandra": counts})
    monkeypatch.setattr(cli, "STATE", tmp_path)
    monkeypatch.setattr(cli.stack, "up", lambda names: None)
    monkeypatch.setattr(cli.stack, "start_service", lambda service: None)

    assert cli.main(["--scenarios", "kill,cassandra", "--short"]) == 1

    printed = capsys.readouterr().out
    assert "[faults] kill: FAILED: faults-kill: no new rows after 300 s; see kill.log" in printed
    assert "  kill: FAILED: faults-kill: no new rows after 300 s; see kill.log" in printed
    path = re.search(r"^JSON: (\S+)$", printed, re.M)
    assert path, printed
    failed, counted = json.loads(Path(path.group(1)).read_text())
    assert (failed["scenario"], failed["ok"]) == ("kill", False)
    assert failed["error"].startswith("faults-kill: no new rows")
    assert (counted["rows"], counted["ok"], counted["error"]) == (500, True, "")
