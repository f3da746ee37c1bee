"""`./run.sh bench`, `faults` and `chaos` run Spark jobs of their own from their process: a
SIGTERM to it (a CI timeout, `kill`, a closed session) must run their clean-up as Ctrl-C does,
not leave the jobs behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMMAND = """
import time
from script.__main__ import interrupt_on_sigterm
interrupt_on_sigterm()
try:
    print("running", flush=True)
    time.sleep(60)
finally:
    print("side job stopped", flush=True)
"""


def test_sigterm_runs_the_commands_clean_up_as_ctrl_c_does() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", COMMAND],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "running\n"
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=30)
    assert out == "side job stopped\n"
    assert "KeyboardInterrupt: signal 15" in err
    assert child.returncode == -signal.SIGINT  # as Python ends on an unhandled Ctrl-C
