"""PostgreSQL from Debian's packages: Airflow's metadata database, its role and database."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from pipeline import config
from script.layout import DATA, LOGS, RUN, STATE, StackError, say, versions
from script.procs import apt_install, pid_alive, pid_file, read_pid, spawn, stop_tree
from script.services.base import Service
from script.supervise import STOP_TIMEOUT

PG_DATA = DATA / "postgres"
PG_SOCKET = RUN / "postgres"


def pg_settings() -> tuple[str, str, str]:
    """Airflow's login and database: (user, password, database)."""
    s = config.load().stack
    return s.postgres_user, s.postgres_password, s.postgres_db


def port() -> int:
    return config.load().stack.postgres_port


class Postgres(Service):
    name = "postgres"
    timeout = 90
    pid_while_starting = False

    @property
    def port(self) -> int:
        return port()

    def start(self) -> None:
        _pg_dirs()
        if not (PG_DATA / "PG_VERSION").exists():
            say("  postgres: initialising a new cluster in .stack/data/postgres")
            _run_pg(
                [
                    pg_bin("initdb"),
                    "-D",
                    str(PG_DATA),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
                "initdb",
            )
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        self.log.chmod(0o600)  # it may predate the private umask
        if os.geteuid() == 0:
            shutil.chown(self.log, "postgres", "postgres")
        # In the foreground under its supervisor (`procs.spawn`): a killed postmaster is
        # started again (its orphaned backends are killed with its process group first).
        options = [
            f"-p{self.port}",
            "-clisten_addresses=127.0.0.1",
            f"-cunix_socket_directories={PG_SOCKET}",
            "-cunix_socket_permissions=0700",
            "-cshared_buffers=64MB",
            "-cmax_connections=100",
        ]
        spawn(self.name, as_postgres([pg_bin("postgres"), "-D", str(PG_DATA), *options]))
        deadline = time.monotonic() + self.timeout
        while not _accepting():
            if time.monotonic() > deadline:
                raise StackError(
                    f"postgres: not accepting connections after {self.timeout:.0f}s. "
                    f"Log: {self.log}"
                )
            time.sleep(0.5)
        _ensure_airflow_db()

    def probe(self) -> str | None:
        import psycopg2

        user, password, db = pg_settings()
        try:
            conn = psycopg2.connect(
                host="127.0.0.1",
                port=self.port,
                user=user,
                password=password,
                dbname=db,
                connect_timeout=3,
            )
        except psycopg2.OperationalError as exc:
            return f"no connection as {user!r} ({str(exc).strip()[:120]})"
        conn.close()
        return None

    def share_state(self) -> None:
        """The postgres user keeps its way through the private state dir (when there is one:
        on a new machine, `start` installs PostgreSQL and grants it then)."""
        if os.geteuid() == 0 and _postgres_user_exists():
            grant_traverse()

    def pid(self) -> int | None:
        try:
            pid = int((PG_DATA / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def main_pid(self) -> int | None:
        """The postmaster (its supervisor's job is `runuser` when the stack runs as root)."""
        return self.pid()

    def stop(self) -> None:
        supervisor = read_pid(self.name)
        if self.pid():
            _run_pg(
                [pg_bin("pg_ctl"), "-D", str(PG_DATA), "-m", "fast", "-w", "stop"], "pg_ctl stop"
            )
        if supervisor:  # it exits once the postmaster has; stopped anyway if it is restarting
            stop_tree(self.name, supervisor, timeout=STOP_TIMEOUT + 10, leader_only=True)
        pid_file(self.name).unlink(missing_ok=True)


def _accepting() -> bool:
    """True once the postmaster accepts connections on its socket (pg_isready)."""
    ready = [pg_bin("pg_isready"), "-q", "-h", str(PG_SOCKET), "-p", str(port())]
    return subprocess.run(as_postgres(ready), capture_output=True).returncode == 0


def pg_bin(tool: str) -> str:
    major = versions()["POSTGRES_MAJOR"]
    candidates = [
        Path(f"/usr/lib/postgresql/{major}/bin/{tool}"),
        *sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), reverse=True),
    ]
    for path in candidates:
        if path.exists():
            return str(path)
    if os.geteuid() == 0:
        # Debian would create and start its own cluster; the stack runs its own.
        conf = Path("/etc/postgresql-common/createcluster.conf")
        conf.parent.mkdir(parents=True, exist_ok=True)
        if not conf.exists():
            conf.write_text("create_main_cluster = false\n")
    if apt_install("postgresql", "for Airflow's metadata"):
        return pg_bin(tool)
    raise StackError(
        "PostgreSQL server binaries not found: install them "
        "(sudo apt-get install postgresql) and run again"
    )


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _pg_dirs() -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    for path in (PG_DATA, PG_SOCKET):
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")
            path.chmod(0o700)
    if os.geteuid() == 0:
        grant_traverse()


def grant_traverse() -> None:
    """Let the postgres user pass through to its data, socket and log, and no further.

    The state dir is its owner's alone (`layout.private_state`) and may sit in a home that is
    (`/root` is 0700): each directory on the way that the postgres user cannot pass gets an
    ACL entry `u:postgres:x` (traverse, not list or read), top down, so only those that need
    one get one.
    """
    # The stack's own directories are private (0700) by design: name postgres in each, even
    # where it may pass today (before `private_state` first runs).
    own = [STATE, DATA, RUN, LOGS]
    for path in own:
        path.mkdir(parents=True, exist_ok=True)
    _grant(own)
    while blocked := _blocked_dirs():  # the ancestors, wherever the repository is cloned
        first = blocked[0]
        _grant([first])
        say(f"  postgres: the postgres user may now pass {first} (ACL u:postgres:x)")
        if _blocked_dirs()[:1] == [first]:
            raise StackError(f"the postgres user still cannot pass {first} after setfacl")


def _grant(dirs: list[Path]) -> None:
    names = " ".join(map(str, dirs))
    result = subprocess.run(
        [_setfacl(), "-m", "u:postgres:x", *map(str, dirs)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise StackError(
            f"the postgres user cannot reach {PG_DATA}: `setfacl -m u:postgres:x {names}` "
            f"failed ({result.stderr.strip()}); give it that right another way (chmod o+x) or "
            "set STACK_STATE_DIR to a directory it can reach"
        )


def _postgres_user_exists() -> bool:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True


def _blocked_dirs() -> list[Path]:
    """The directories on the postgres user's ways that it cannot pass, top down."""
    targets = (PG_DATA, PG_SOCKET, LOGS / "postgres.log")
    dirs = sorted({d for t in targets for d in t.parents}, key=lambda d: len(d.parts))
    # access(2) as the postgres user itself, so its groups and any ACL count.
    check = 'for d; do [ -x "$d" ] || printf "%s\\n" "$d"; done'
    result = subprocess.run(
        as_postgres(["sh", "-c", check, "sh", *map(str, dirs)]), capture_output=True, text=True
    )
    return [Path(line) for line in result.stdout.splitlines()]


def _setfacl() -> str:
    found = shutil.which("setfacl")
    if found:
        return found
    if apt_install("acl", "for setfacl, to let postgres reach its files"):
        return _setfacl()
    raise StackError(
        "setfacl not found: install it (sudo apt-get install acl) so that the postgres user "
        "can reach its data in a private state dir, and run again"
    )


def _run_pg(cmd: list[str], what: str) -> None:
    """Run a PostgreSQL tool; on failure raise StackError with its own words and the log."""
    result = subprocess.run(as_postgres(cmd), capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise StackError(
            f"postgres: {what} failed: {' / '.join(tail)}. Log: {LOGS / 'postgres.log'}"
        )


def _psql(sql: str, db: str = "postgres") -> str:
    cmd = [pg_bin("psql"), "-h", str(PG_SOCKET), "-p", str(port()), "-U", "postgres", "-d", db]
    result = subprocess.run(as_postgres([*cmd, "-tAc", sql]), capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _ensure_airflow_db() -> None:
    user, password, db = pg_settings()
    quoted = password.replace("'", "''")
    if _psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'") != "1":
        _psql(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{quoted}'")
    else:
        _psql(f"ALTER ROLE \"{user}\" PASSWORD '{quoted}'")
    if _psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'") != "1":
        _psql(f'CREATE DATABASE "{db}" OWNER "{user}"')
