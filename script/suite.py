"""`./run.sh test`: the test suite against the local stack, which it starts if needed."""

from __future__ import annotations

import subprocess
import sys

from script import stack, status
from script.browser import ensure_chromium
from script.layout import REPO, say
from script.services import ON_DEMAND
from script.services.stream import stream_env

# As measured on 2 cores with the user's stack running (docs/development.md).
DEFAULT_MINUTES, ALL_MINUTES = 12, 45


def what_runs(pytest_args: list[str]) -> str:
    """One line before the tests start: which set, and about how long it takes."""
    if "--all" in pytest_args:
        return (
            f"running every test, the long ones too (cluster topology, soak, fault scenarios): "
            f"about {ALL_MINUTES} min on 2 cores"
        )
    if any(a.startswith("tests") or ".py" in a for a in pytest_args):
        return f"running the tests named: {' '.join(pytest_args)}"
    return (
        f"running the default set, every behaviour a user relies on: about {DEFAULT_MINUTES} "
        "min on 2 cores (`./run.sh test --all` adds the cluster topology, soak and fault runs)"
    )


def run_tests(pytest_args: list[str]) -> int:
    """Bring the stack up if needed, run pytest, stop what this run started."""
    ensure_chromium()
    say(what_runs(pytest_args))
    on_demand_before = {s.name for s in ON_DEMAND if s.pid()}
    started = stack.up()
    try:
        code = subprocess.call(
            [sys.executable, "-m", "pytest", *pytest_args], cwd=REPO, env=stream_env()
        )
        try:  # the services' memory after the suite, for the record; never the verdict
            status.show()
        except Exception as exc:  # noqa: BLE001 - reported, and pytest's code stands
            say(f"status after the tests failed: {exc.__class__.__name__}: {exc}")
    finally:
        on_demand = [s.name for s in ON_DEMAND if s.name not in on_demand_before]
        if started:
            say(f"stopping what the test run started: {', '.join(started)}")
            stack.down([*started, *on_demand])
    if code == 5:
        say("pytest collected no tests: that is a failure here")
        return 1
    return code
