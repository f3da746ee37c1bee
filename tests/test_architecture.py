"""The house plan holds: layers point one way, and a service is a unit the stack drives blind."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from script import stack
from script.layout import LOGS, StackError
from script.procs import port_open, read_pid, spawn
from script.services import ALL, Service

REPO = Path(__file__).resolve().parents[1]


def test_imports_keep_the_contracts_in_pyproject() -> None:
    """Layers of script/ point one way, pipeline/ imports no tooling, no package has a cycle."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_stack_library_names_no_service() -> None:
    """stack.py drives services through their interface only: no service's name is in it."""
    tree = ast.parse((REPO / "script" / "stack.py").read_text())
    strings = " ".join(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    )
    names = [s.name for s in ALL] + [p.name for s in ALL for p in s.processes()]
    assert [n for n in names if n in strings] == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpServer(Service):
    """A service the stack has never heard of: start, probe and stop from the base class."""

    timeout = 30

    def __init__(self) -> None:
        self.name = f"test-http-{uuid.uuid4().hex[:8]}"
        self._port = free_port()

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> None:
        spawn(
            self.name, [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.port)]
        )

    def probe(self) -> str | None:
        return None if port_open(self.port) else f"nothing on :{self.port} yet"


def test_a_new_service_is_started_probed_and_stopped_by_the_stack_through_its_class() -> None:
    service = HttpServer()
    try:
        assert stack.start_service(service) is True
        pid = read_pid(service.name)
        assert pid and pid == service.pid()
        assert port_open(service.port)
        assert stack.start_service(service) is False  # already running: left alone
        assert (LOGS / f"{service.name}.log").exists()
    finally:
        stack.stop_service(service)
    assert service.pid() is None and not port_open(service.port)
    (LOGS / f"{service.name}.log").unlink(missing_ok=True)


def test_a_service_that_exits_fails_its_start_naming_its_log() -> None:
    service = HttpServer()
    service.start = lambda: spawn(service.name, [sys.executable, "-c", "print('bye')"])
    with pytest.raises(
        StackError,
        match=rf"(?s){service.name} on port {service.port} failed: the process exited\. Log: .*bye",
    ):
        stack.start_service(service)
    (LOGS / f"{service.name}.log").unlink(missing_ok=True)
