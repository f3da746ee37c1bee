"""No secret of the local stack leaks: none on any process's command line (`/proc/*/cmdline`,
readable by every local user), none in any log of `.stack/logs`, and `.stack/` itself is its
owner's alone: another local user can open nothing in it, and the postgres user (Postgres runs
as `postgres` when the stack runs as root) only passes through to its own files.

Run against the running stack (`./run.sh up`). A failure names where a secret appears, never
the secret.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from pipeline import config
from script.layout import DATA, LOGS, RUN, STATE
from script.services.airflow import HOME as AIRFLOW_HOME
from script.services.postgres import PG_DATA, PG_SOCKET

DEFAULTS = {v.name: v.default for v in config.VARIABLES}


def configured_secrets() -> dict[str, str]:
    """What the running stack uses as secrets, by name.

    A password left at its documented default (`cassandra`, `airflow`) is in the README and is
    a word every log holds: it is no secret to look for.
    """
    s = config.load()
    admin_file = AIRFLOW_HOME / "admin-password"
    jwt_file = AIRFLOW_HOME / "jwt-secret"
    found = {
        "CASSANDRA_PASSWORD": s.cassandra.password,
        "POSTGRES_PASSWORD": s.stack.postgres_password,
        "AIRFLOW_ADMIN_PASSWORD": s.stack.airflow_admin_password
        or (admin_file.read_text().strip() if admin_file.exists() else ""),
        f"Airflow's JWT secret ({jwt_file})": (
            jwt_file.read_text().strip() if jwt_file.exists() else ""
        ),
    }
    return {name: value for name, value in found.items() if value and value != DEFAULTS.get(name)}


def _forms(secret: str) -> set[bytes]:
    """The secret as written raw and as written in a URL (the database URL quotes it)."""
    return {secret.encode(), quote(secret, safe="").encode()}


def secrets_in_command_lines(secrets: dict[str, str]) -> list[str]:
    """'NAME in pid PID (PROGRAM)' for every process whose command line holds a secret."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes()
        except OSError:
            continue  # gone meanwhile
        for name, secret in secrets.items():
            if any(form in argv for form in _forms(secret)):
                program = Path(argv.split(b"\0")[0].decode(errors="replace")).name
                found.append(f"{name} in pid {cmdline.parent.name} ({program})")
    return found


def secrets_in_files(secrets: dict[str, str], top: Path) -> list[str]:
    """'NAME in PATH line N' for every file under ``top`` that holds a secret."""
    found = []
    for path in sorted(p for p in top.rglob("*") if p.is_file() and not p.is_symlink()):
        try:
            text = path.read_bytes()
        except OSError:
            continue  # rotated meanwhile
        for name, secret in secrets.items():
            for form in _forms(secret):
                at = text.find(form)
                if at >= 0:
                    line = text.count(b"\n", 0, at) + 1
                    found.append(f"{name} in {path} line {line}")
                    break
    return found


def test_no_secret_on_any_command_line_or_in_any_log() -> None:
    secrets = configured_secrets()
    # Airflow's JWT secret and admin password exist once it has started: at least those.
    assert "AIRFLOW_ADMIN_PASSWORD" in secrets and any("JWT" in name for name in secrets), (
        f"Airflow's secrets are not in {AIRFLOW_HOME}: start the stack (`./run.sh up`)"
    )
    leaks = secrets_in_command_lines(secrets) + secrets_in_files(secrets, LOGS)
    assert not leaks, "secrets leak:\n  " + "\n  ".join(leaks)


def test_the_pipeline_page_shows_no_secret() -> None:
    """The monitor's process and log are among those searched above; here its page: the HTML,
    the layout, and every figure it shows (one refresh of all its sections)."""
    import requests

    from script.services import named

    monitor = named("monitor")
    assert monitor.pid(), "the pipeline page is not running: `./run.sh up monitor`"
    assert monitor.log.parent == LOGS and monitor.log.exists()
    secrets = configured_secrets()
    base = f"http://127.0.0.1:{config.load().monitor.port}"
    layout = requests.get(f"{base}/_dash-layout", timeout=10).json()
    outputs = _outputs(layout)
    refresh = requests.post(
        f"{base}/_dash-update-component",
        json={
            "output": ".." + "...".join(outputs) + "..",
            "outputs": [{"id": i, "property": p} for i, p in _split(outputs)],
            "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}],
            "changedPropIds": ["tick.n_intervals"],
            "state": [],
        },
        timeout=30,
    )
    assert refresh.status_code == 200 and b"job-state" in refresh.content, refresh.text[:300]
    pages = {
        "the HTML": requests.get(base, timeout=10).content,
        "the layout": json.dumps(layout).encode(),
        "the figures": refresh.content,
    }
    leaks = [
        f"{name} in {where}"
        for where, text in pages.items()
        for name, secret in secrets.items()
        if any(form in text for form in _forms(secret))
    ]
    assert not leaks, "the pipeline page shows secrets: " + ", ".join(leaks)


def _outputs(layout: dict) -> list[str]:
    """The refresh callback's outputs ("id.property"), as the page's sections name them."""
    from script.monitor.app import CHARTS, SECTIONS

    return [f"{s}.children" for s in SECTIONS] + [f"{c}.figure" for c in CHARTS]


def _split(outputs: list[str]) -> list[tuple[str, str]]:
    return [tuple(o.rsplit(".", 1)) for o in outputs]  # type: ignore[misc]


def test_the_leak_search_finds_a_secret_on_a_command_line_and_in_a_file(tmp_path: Path) -> None:
    marker = f"not-a-real-secret/{os.getpid()}:{tmp_path.name}"  # '/' and ':' get URL-quoted
    secrets = {"MARKER": marker}
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.log").write_text(f"one\ntwo postgresql://u:{quote(marker, safe='')}@h\n")
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)", marker],
        stdout=subprocess.PIPE,
    )
    try:
        assert sleeper.stdout is not None
        sleeper.stdout.readline()  # it runs its own command line now (a fork shows the parent's)
        on_command_lines = secrets_in_command_lines(secrets)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert on_command_lines == [f"MARKER in pid {sleeper.pid} ({Path(sys.executable).name})"]
    assert secrets_in_files(secrets, tmp_path) == [f"MARKER in {tmp_path / 'sub' / 'a.log'} line 2"]
    assert all(marker not in line for line in on_command_lines)


def _what_user_can_open(user: str) -> list[str]:
    """Everything under the state dir (but the venv and the jars) that ``user`` can read (a
    file) or pass (a directory), as 'f PATH' / 'd PATH', asked as ``user`` (access(2))."""
    listing = subprocess.run(
        [
            "find",
            str(STATE),
            "(",
            "-name",
            "venv",
            "-o",
            "-name",
            "jars",
            ")",
            "-prune",
            "-o",
            "-printf",
            r"%y %p\n",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    check = (
        'while read -r kind path; do case "$kind" in '
        'd) [ -x "$path" ] && echo "d $path";; '
        'f) [ -r "$path" ] && echo "f $path";; esac; done; true'
    )
    result = subprocess.run(
        ["runuser", "-u", user, "--", "sh", "-c", check],
        input=listing,
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    return result.stdout.splitlines()


@pytest.mark.skipif(os.geteuid() != 0, reason="asking as another user needs root (runuser)")
def test_another_local_user_can_open_nothing_in_the_state_dir() -> None:
    assert _what_user_can_open("nobody") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="asking as another user needs root (runuser)")
def test_the_postgres_user_only_passes_through_to_its_own_files() -> None:
    postgres_uid = Path(PG_DATA).stat().st_uid
    opens = _what_user_can_open("postgres")
    passages = {f"d {d}" for d in (STATE, DATA, RUN, LOGS)}
    foreign = [
        line
        for line in opens
        if line not in passages and Path(line[2:]).stat().st_uid != postgres_uid
    ]
    assert foreign == []
    # and it does reach its own: the data directory, the socket's directory, its log
    assert {f"d {PG_DATA}", f"d {PG_SOCKET}", f"f {LOGS / 'postgres.log'}"} <= set(opens)


def test_postgres_asks_for_a_password_over_tcp() -> None:
    rules = [
        line.split()
        for line in (PG_DATA / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    tcp = [rule for rule in rules if rule[0].startswith("host")]
    assert tcp and all(rule[-1] == "scram-sha-256" for rule in tcp), tcp


def test_cqlsh_reads_the_password_from_a_private_file_not_its_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import script.__main__ as cli
    from script.services import cassandra

    password = f"pw-{tmp_path.name}"
    monkeypatch.setenv("CASSANDRA_ADMIN_USERNAME", "someone")
    monkeypatch.setenv("CASSANDRA_ADMIN_PASSWORD", password)
    monkeypatch.setattr(cassandra, "CONF", tmp_path)
    calls: list[list[str]] = []
    monkeypatch.setattr(cli.subprocess, "call", lambda argv: calls.append(argv) or 0)

    assert cli.cqlsh(["-e", "SELECT 1"]) == 0

    (argv,) = calls
    assert not any(password in arg for arg in argv)
    credentials = Path(argv[argv.index("--credentials") + 1])
    assert credentials.stat().st_mode & 0o777 == 0o600
    assert credentials.read_text().split("\n")[:3] == [
        "[plain_text_auth]",
        "username = someone",
        f"password = {password}",
    ]


def test_the_stream_jobs_command_line_holds_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from script.services.stream import stream_command, stream_env

    marker = f"pw-{os.getpid()}-stream"
    for name in ("CASSANDRA_PASSWORD", "POSTGRES_PASSWORD", "AIRFLOW_ADMIN_PASSWORD"):
        monkeypatch.setenv(name, marker)
    argv = stream_command(stream_env())
    assert argv[0].endswith("spark-submit") and not any(marker in arg for arg in argv)
