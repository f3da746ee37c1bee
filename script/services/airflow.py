"""Airflow 3.3: API server, scheduler, DAG processor and triggerer on the LocalExecutor."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from pipeline import config
from script import airflow_quiet
from script.layout import DATA, LOGS, REPO, STATE, VENV_BIN, StackError, say
from script.procs import pid_file, read_pid, spawn, stop_tree, write_secret
from script.services.base import Process, Service
from script.services.postgres import Postgres, pg_settings
from script.supervise import STOP_TIMEOUT

HOME = DATA / "airflow"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# The users API the last `./run.sh` chose (randomuser.me or the stand-in): scheduled and
# UI-triggered runs use it too, until USERS_API_URL says otherwise.
USERS_API_CHOICE = HOME / "users-api-url"


class Airflow(Service):
    name = "airflow"

    @property
    def port(self) -> int:
        return config.load().stack.airflow_port

    timeout = 300

    @property
    def log(self):
        return LOGS / "airflow-scheduler.log"

    @property
    def logs(self) -> str:
        return f"{LOGS.relative_to(STATE.parent)}/airflow-*.log"

    def start(self) -> None:
        """Migrate the database, then start each component that is not running."""
        env = airflow_env()
        admin, password = airflow_admin()
        write_secret(HOME / "passwords.json", json.dumps({admin: password}))
        migrate(env)
        for component in COMPONENTS:
            name = f"airflow-{component}"
            if read_pid(name):
                continue
            args = [str(VENV_BIN / "airflow"), component]
            # Their hard-coded idle loops, slowed (script/airflow_quiet.py; Compose: entrypoint.sh).
            if component in airflow_quiet.COMPONENTS:
                args = [str(VENV_BIN / "python"), "-m", "script.airflow_quiet", component]
            if component == "api-server":
                args += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
            elif component in ("scheduler", "triggerer"):
                # Their log servers (:8793, :8794) bind to every interface, and nothing needs
                # them: tasks run on this machine and the API server reads their log files.
                args += ["--skip-serve-logs"]
            # A stop signals the component alone, as `docker stop` signals a container's first
            # process: the scheduler then ends its LocalExecutor workers itself. Its forked
            # workers inherit its SIGTERM handler, which does nothing outside the scheduler
            # (they ignored every SIGTERM), and a second SIGTERM to the scheduler cut its own
            # shutdown short: `./run.sh down` waited 30 s for them, then killed six processes.
            spawn(name, args, env, supervisor_options=("--term-leader",))

    def probe(self) -> str | None:
        import requests

        try:
            health = requests.get(f"{url()}/api/v2/monitor/health", timeout=3).json()
        except (requests.RequestException, ValueError) as exc:
            return f"API server not answering on :{self.port} ({exc.__class__.__name__})"
        missing = [
            part
            for part in ("metadatabase", "scheduler", "dag_processor", "triggerer")
            if (health.get(part) or {}).get("status") != "healthy"
        ]
        return f"not healthy yet: {', '.join(missing)}" if missing else None

    def pid(self) -> int | None:
        """A live component's pid (the API server's first), None when none runs."""
        return next(filter(None, (read_pid(f"airflow-{c}") for c in COMPONENTS)), None)

    def complete(self) -> bool:
        return all(read_pid(f"airflow-{c}") for c in COMPONENTS)

    def stop(self) -> None:
        for component in reversed(COMPONENTS):
            name = f"airflow-{component}"
            pid = read_pid(name)
            if pid:  # its supervisor, which stops the component and does not restart it
                stop_tree(name, pid, timeout=STOP_TIMEOUT + 10, leader_only=True)
            pid_file(name).unlink(missing_ok=True)

    def processes(self) -> list[Process]:
        return [
            Process(
                f"airflow-{c}",
                read_pid(f"airflow-{c}"),
                self.port if c == "api-server" else None,
                LOGS / f"airflow-{c}.log",
            )
            for c in COMPONENTS
        ]


def migrate(
    env: dict[str, str],
    wait_s: float = Postgres.timeout,
    log: Path = LOGS / "airflow-db-migrate.log",
) -> None:
    """`airflow db migrate`; again while PostgreSQL does not answer, for up to ``wait_s`` (a
    second attempt at least, however long the first took on a busy machine).

    PostgreSQL restarted under it (its supervisor brings it back within seconds) must not
    leave Airflow down: the migration is idempotent, so it runs again once the database is
    back. Any other failure (a wrong password among them) stops at once, with its log.
    """
    say("  airflow: migrating the metadata database (airflow db migrate) ...")
    deadline = time.monotonic() + wait_s
    for attempt in itertools.count(1):
        result = subprocess.run(
            [str(VENV_BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True
        )
        output = result.stdout + result.stderr
        log.write_text(output)
        if result.returncode == 0:
            return
        reason = database_unreachable(output)
        if reason is None:
            raise StackError(f"airflow db migrate failed: see {log}")
        if attempt > 1 and time.monotonic() > deadline:  # one more try whatever the time
            raise StackError(
                f"airflow db migrate: PostgreSQL did not answer for {wait_s:.0f}s ({reason}): "
                f"is it up (`./run.sh status`)? see {log} and {LOGS / 'postgres.log'}"
            )
        say(f"  airflow: the metadata database did not answer ({reason}); again in 2s ({attempt})")
        time.sleep(2)


# psycopg2's words when the database is not there (or went away mid-way); a refused login is
# not among them: waiting cannot fix it.
UNREACHABLE = (
    "Connection refused",
    "server closed the connection unexpectedly",
    "the database system is starting up",
    "the database system is shutting down",
    "terminating connection due to administrator command",
    "could not connect to server",
    "Connection reset by peer",
)


def database_unreachable(output: str) -> str | None:
    """What in Airflow's output says the database was not there, None when nothing does."""
    return next((words for words in UNREACHABLE if words in output), None)


def url() -> str:
    """The local Airflow API server's base URL (AIRFLOW_PORT)."""
    return config.load().stack.airflow_url


def airflow_admin() -> tuple[str, str]:
    """The admin login: AIRFLOW_ADMIN_USERNAME/PASSWORD, or a password generated once."""
    s = config.load().stack
    user, password = s.airflow_admin_username, s.airflow_admin_password
    saved = HOME / "admin-password"
    if not password:
        if saved.exists():
            password = saved.read_text().strip()
        else:
            HOME.mkdir(parents=True, exist_ok=True)
            password = secrets.token_urlsafe(12)
            write_secret(saved, password)
            say(f"  airflow: generated a password for admin {user!r}: `cat {saved}`")
    return user, password


def airflow_env() -> dict[str, str]:
    """Environment of every Airflow process of the local stack (and `./run.sh airflow`)."""
    HOME.mkdir(parents=True, exist_ok=True)
    secret_file = HOME / "jwt-secret"
    if not secret_file.exists():
        write_secret(secret_file, secrets.token_urlsafe(32))
    user, password, db = pg_settings()
    admin, _ = airflow_admin()
    login = f"{quote(user, safe='')}:{quote(password, safe='')}"
    s = config.load().stack
    database_url = f"postgresql+psycopg2://{login}@127.0.0.1:{s.postgres_port}/{db}"
    # The DAG only produces to Kafka: no Cassandra setting, login above all, reaches Airflow.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASSANDRA_")}
    chosen = users_api()
    if chosen:
        env["USERS_API_URL"] = chosen
    env.update(
        {
            "AIRFLOW_HOME": str(HOME),
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(s.airflow_parallelism),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{admin}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(HOME / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{s.airflow_url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
            "AIRFLOW__API__PORT": str(s.airflow_port),
            "AIRFLOW__API__WORKERS": "1",
            **QUIET,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(LOGS / "airflow-tasks"),
            # Task logs hold the users' data: the owner's alone (Airflow's defaults are 0o775
            # and 0o664, set with chmod whatever the umask).
            "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS": "0o700",
            "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS": "0o600",
        }
    )
    return env


# Airflow's loops while nothing runs, slower than its defaults (an idle stack is quiet, see
# docs/benchmark.md): the scheduler looks for work every 4 s (a triggered run waits up to that),
# the jobs tell Postgres they live every 10 s (health thresholds 30 s), the DAG file is parsed
# again every 2 min (a new DAG file is seen within 5); the scheduler's timed checks that find
# nothing on this stack (deferred tasks past their timeout, stale DAGs and orphaned assets,
# stale connection tests) run every 1 to 5 min instead of every 15 to 60 s. Compose's
# x-airflow-env has the same.
QUIET: dict[str, str] = {
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "4",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "10",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "30",
    "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "60",
    "AIRFLOW__SCHEDULER__PARSING_CLEANUP_INTERVAL": "300",
    "AIRFLOW__CONNECTION_TEST__REAPER_INTERVAL": "300",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "10",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
    "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "60",
}


def users_api() -> str | None:
    """The users API Airflow's runs use: USERS_API_URL when set, else what the last `./run.sh`
    chose (`record_users_api`), else None (the setting's default, randomuser.me)."""
    if os.environ.get("USERS_API_URL"):
        return os.environ["USERS_API_URL"]
    if USERS_API_CHOICE.exists():
        return USERS_API_CHOICE.read_text().strip() or None
    return None


def record_users_api(api_url: str) -> None:
    """Remember the API a run chose, for the Airflow processes started from now on."""
    HOME.mkdir(parents=True, exist_ok=True)
    USERS_API_CHOICE.write_text(api_url + "\n")


def scheduler_users_api() -> str | None:
    """USERS_API_URL in the running scheduler's environment (the DAG's task inherits it); None
    when the scheduler does not run or runs with the setting's default."""
    pid = read_pid("airflow-scheduler")
    if not pid:
        return None
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        name, _, value = entry.partition(b"=")
        if name == b"USERS_API_URL":
            return value.decode()
    return None
