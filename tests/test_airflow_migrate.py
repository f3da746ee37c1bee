"""Airflow's start migrates its metadata database again when PostgreSQL was not there.

A restart of Airflow while PostgreSQL restarts (CI's chaos run: Airflow restarted, PostgreSQL
killed during its `airflow db migrate`) left Airflow down for good. The migration now runs again
until the database answers; a refused login stops at once. Real Airflow, real PostgreSQL: the
user's, reached through a port that starts forwarding to it only after a while.
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading
from contextlib import suppress
from pathlib import Path

import pytest
from conftest import require_port

from pipeline import config
from script.harness.side import free_port
from script.layout import StackError
from script.services import airflow


class Relay:
    """127.0.0.1:listen relays each connection to 127.0.0.1:target once ``open()`` is called;
    until then nothing listens there (a connection is refused, as with PostgreSQL down)."""

    def __init__(self, listen: int, target: int) -> None:
        self.listen, self.target = listen, target
        self.connections = 0
        self._server: socketserver.ThreadingTCPServer | None = None

    def open(self) -> None:
        relay = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                relay.connections += 1
                with socket.create_connection(("127.0.0.1", relay.target)) as upstream:
                    back = threading.Thread(target=pump, args=(upstream, self.request))
                    back.start()
                    pump(self.request, upstream)
                    back.join()

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.listen), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy src to dst until src ends, then end both."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        with suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def postgres_port(settings: config.Settings) -> int:
    port = settings.stack.postgres_port
    require_port("PostgreSQL", "127.0.0.1", port, "postgres.log")
    return port


def env_via(port: int, password: str | None = None) -> dict[str, str]:
    """Airflow's environment of the local stack, its database reached on ``port``."""
    env = airflow.airflow_env()
    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    url = re.sub(r"@127\.0\.0\.1:\d+/", f"@127.0.0.1:{port}/", url)
    if password is not None:
        url = re.sub(r"^([^:]+://[^:]+):[^@]*@", rf"\1:{password}@", url)
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = url
    return env


def test_the_migration_runs_again_until_postgres_answers(
    postgres_port: int, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    relay = Relay(free_port(), postgres_port)
    log = tmp_path / "migrate.log"
    done = threading.Event()

    def open_once_refused() -> None:
        # PostgreSQL "comes back" once an attempt was refused: the log says so.
        while not done.wait(0.1):
            if log.exists() and "Connection refused" in log.read_text(errors="replace"):
                relay.open()
                return

    opener = threading.Thread(target=open_once_refused)
    opener.start()
    try:
        airflow.migrate(env_via(relay.listen), wait_s=300, log=log)
    finally:
        done.set()
        opener.join()
        relay.close()
    said = capsys.readouterr().out
    assert "did not answer (Connection refused); again in 2s (1)" in said, said
    assert relay.connections > 0  # the last attempt reached PostgreSQL through the relay
    assert "Connection refused" not in log.read_text()  # its log is the attempt that worked


def test_a_database_that_never_answers_ends_with_what_to_look_at(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(StackError) as failed:
        airflow.migrate(env_via(free_port()), wait_s=5, log=tmp_path / "migrate.log")
    message = str(failed.value)
    assert "PostgreSQL did not answer for 5s (Connection refused)" in message
    assert "./run.sh status" in message and "postgres.log" in message
    assert capsys.readouterr().out.count("again in 2s") >= 1


def test_a_refused_login_stops_at_once(
    postgres_port: int, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log = tmp_path / "migrate.log"
    with pytest.raises(StackError) as failed:
        airflow.migrate(env_via(postgres_port, password="not-the-password"), wait_s=300, log=log)
    assert f"airflow db migrate failed: see {log}" in str(failed.value)
    assert "again in 2s" not in capsys.readouterr().out
    assert "password authentication failed" in log.read_text()
