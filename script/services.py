"""Each service of the local stack: how to start it, how to know it is ready, how to stop it.

PostgreSQL, ZooKeeper, Kafka, Cassandra and Airflow form the stack (`SERVICES`, in start
order); the Spark stream job and the randomuser stand-in are started on demand (`EXTRAS`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pipeline import config
from script import supervise
from script.jars import spark_jars
from script.layout import (
    CONF,
    DATA,
    JARS,
    LOGS,
    REPO,
    RUN,
    STACK_CONF,
    STATE,
    VENV_BIN,
    StackError,
    say,
    versions,
)
from script.procs import (
    pid_alive,
    pid_file,
    port_open,
    read_pid,
    spawn,
    stop_tree,
    write_secret,
)

# --------------------------------------------------------------------------- services


def java() -> str:
    home = os.environ.get("JAVA_HOME")
    exe = Path(home, "bin", "java") if home else shutil.which("java")
    if not exe or not Path(exe).exists():
        raise StackError("Java 17 is not installed (java not on PATH, JAVA_HOME unset)")
    return str(exe)


@dataclass
class Service:
    """One process of the stack: how to start it and how to know it is really ready."""

    name: str
    port: int | None
    start: Callable[[], None]
    probe: Callable[[], str | None]  # None when ready, else what is still missing
    timeout: float
    stop: Callable[[], None] | None = None
    pid: Callable[[], int | None] | None = None
    log_name: str = ""  # when the log is not NAME.log
    complete: Callable[[], bool] | None = None  # False: some of its processes are missing
    set_up: Callable[[], None] | None = None  # once it is ready, on every `up`: idempotent

    @property
    def log(self) -> Path:
        return LOGS / (self.log_name or f"{self.name}.log")

    def current_pid(self) -> int | None:
        return self.pid() if self.pid else read_pid(self.name)


def _render(template: str, dest: str) -> Path:
    CONF.mkdir(parents=True, exist_ok=True)
    out = CONF / dest
    out.write_text((STACK_CONF / template).read_text().replace("{state}", str(STATE)))
    return out


# ZooKeeper ---------------------------------------------------------------------------


def start_zookeeper() -> None:
    (DATA / "zookeeper").mkdir(parents=True, exist_ok=True)
    cfg = _render("zookeeper.properties", "zookeeper.properties")
    spawn(
        "zookeeper",
        [
            java(),
            "-Xms128m",
            "-Xmx256m",
            "-XX:+UseG1GC",
            f"-Dlog4j.configuration=file:{STACK_CONF / 'log4j.properties'}",
            "-cp",
            f"{JARS / 'kafka'}/*",
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(cfg),
        ],
    )


def probe_zookeeper() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 2181), timeout=2) as s:
            s.sendall(b"srvr")
            reply = s.recv(4096)
    except OSError as exc:
        return f"no answer on :2181 ({exc})"
    return None if b"Mode:" in reply else "not serving yet"


# Kafka ---------------------------------------------------------------------------------


def start_kafka() -> None:
    (DATA / "kafka").mkdir(parents=True, exist_ok=True)
    cfg = _render("kafka-server.properties", "kafka-server.properties")
    heap = os.environ.get("KAFKA_HEAP", "512m")
    spawn(
        "kafka",
        [
            java(),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{STACK_CONF / 'log4j.properties'}",
            f"-Dkafka.logs.dir={LOGS}",
            "-cp",
            f"{JARS / 'kafka'}/*",
            "kafka.Kafka",
            str(cfg),
        ],
    )


def probe_kafka() -> str | None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers="localhost:9092", request_timeout_ms=3000)
    except (KafkaError, OSError) as exc:
        return f"no metadata from :9092 ({exc.__class__.__name__})"
    try:
        brokers = admin.describe_cluster().get("brokers", [])
    except (KafkaError, OSError) as exc:
        return f"metadata request failed ({exc.__class__.__name__})"
    finally:
        admin.close()
    return None if brokers else "no broker registered yet"


def create_topic() -> None:
    """The pipeline's topic (KAFKA_TOPIC), with KAFKA_TOPIC_PARTITIONS partitions if it is new."""
    from kafka.errors import KafkaError

    from pipeline.producer import RunFailed, ensure_topic

    kafka = config.load().kafka
    try:
        partitions = ensure_topic(kafka)  # leaves an existing topic as it is
    except (RunFailed, KafkaError) as exc:
        raise StackError(
            f"kafka: could not create topic {kafka.topic} (KAFKA_TOPIC, "
            f"KAFKA_TOPIC_PARTITIONS={kafka.partitions}, KAFKA_REPLICATION_FACTOR="
            f"{kafka.replication_factor}) at {kafka.bootstrap_servers}: {exc}"
        ) from exc
    say(f"  kafka: topic {kafka.topic} is there ({partitions} partition(s))")


# Cassandra -----------------------------------------------------------------------------


def start_cassandra() -> None:
    (DATA / "cassandra").mkdir(parents=True, exist_ok=True)
    heap = os.environ.get("CASSANDRA_HEAP", "1G")
    options = [
        line.strip()
        for line in (STACK_CONF / "cassandra-jvm17.options").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    spawn(
        "cassandra",
        [
            java(),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-Xss256k",
            *options,
            f"-Dcassandra.config=file://{STACK_CONF / 'cassandra.yaml'}",
            f"-Dcassandra.storagedir={DATA / 'cassandra'}",
            f"-Dcassandra.logdir={LOGS}",
            f"-Dlogback.configurationFile={STACK_CONF / 'cassandra-logback.xml'}",
            "-Dcassandra-foreground=yes",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-Dcassandra.jmx.local.port=7199",
            "-cp",
            f"{JARS / 'cassandra'}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ],
    )


def _cql(username: str, password: str, query: str) -> list:
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster

    s = config.load().cassandra
    cluster = Cluster(
        [s.host],
        port=s.port,
        protocol_version=5,
        connect_timeout=3,
        auth_provider=PlainTextAuthProvider(username, password),
    )
    try:
        return list(cluster.connect().execute(query, timeout=10))
    finally:
        cluster.shutdown()


def probe_cassandra() -> str | None:
    from cassandra.cluster import NoHostAvailable

    s = config.load().cassandra
    if not port_open(s.port):
        return f"CQL port :{s.port} not open yet"
    try:
        _cql(s.username, s.password, "SELECT release_version FROM system.local")
        return None
    except NoHostAvailable as exc:
        reason = str(exc)
    # A fresh node only knows cassandra/cassandra: give the configured superuser its password.
    if (s.username, s.password) != ("cassandra", "cassandra"):
        try:
            if s.username == "cassandra":
                _cql(
                    "cassandra",
                    "cassandra",
                    f"ALTER ROLE cassandra WITH PASSWORD = '{_cql_quote(s.password)}'",
                )
            else:
                _cql(
                    "cassandra",
                    "cassandra",
                    f'CREATE ROLE IF NOT EXISTS "{s.username}" WITH SUPERUSER = true AND '
                    f"LOGIN = true AND PASSWORD = '{_cql_quote(s.password)}'",
                )
            say(f"  cassandra: superuser {s.username!r} set up from CASSANDRA_USERNAME/PASSWORD")
            return "superuser just configured"
        except NoHostAvailable as exc:
            reason += f"; setting up the role as cassandra/cassandra failed too: {exc}"
    return f"authenticated query as {s.username!r} failed ({reason[:300]})"


def _cql_quote(value: str) -> str:
    return value.replace("'", "''")


# PostgreSQL ----------------------------------------------------------------------------

PG_DATA = DATA / "postgres"
PG_SOCKET = RUN / "postgres"


def pg_bin(tool: str) -> str:
    major = versions()["POSTGRES_MAJOR"]
    candidates = [
        Path(f"/usr/lib/postgresql/{major}/bin/{tool}"),
        *sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), reverse=True),
    ]
    for path in candidates:
        if path.exists():
            return str(path)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("installing PostgreSQL from Debian (apt-get) ...")
        # Debian would create and start its own cluster on :5432; the stack runs its own.
        conf = Path("/etc/postgresql-common/createcluster.conf")
        conf.parent.mkdir(parents=True, exist_ok=True)
        if not conf.exists():
            conf.write_text("create_main_cluster = false\n")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "postgresql"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        return pg_bin(tool)
    raise StackError(
        "PostgreSQL server binaries not found: install them "
        "(sudo apt-get install postgresql) and run again"
    )


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _pg_dirs() -> None:
    for path in (PG_DATA, PG_SOCKET):
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")
            path.chmod(0o700)
    if os.geteuid() == 0:
        for parent in PG_DATA.parents:
            if parent == Path("/"):
                break
            if not os.stat(parent).st_mode & 0o001:
                raise StackError(
                    f"the postgres user cannot reach {PG_DATA}: {parent} is not "
                    f"world-executable (chmod o+x {parent}) or set STACK_STATE_DIR"
                )


def _run_pg(cmd: list[str], what: str) -> None:
    """Run a PostgreSQL tool; on failure raise StackError with its own words and the log."""
    result = subprocess.run(as_postgres(cmd), capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise StackError(
            f"postgres: {what} failed: {' / '.join(tail)}. Log: {LOGS / 'postgres.log'}"
        )


def start_postgres() -> None:
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
    log = LOGS / "postgres.log"
    log.touch()
    if os.geteuid() == 0:
        shutil.chown(log, "postgres", "postgres")
    _run_pg(
        [
            pg_bin("pg_ctl"),
            "-D",
            str(PG_DATA),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "start",
            "-o",
            f"-p 5432 -c listen_addresses=127.0.0.1 -k {PG_SOCKET} "
            "-c shared_buffers=64MB -c max_connections=100",
        ],
        "pg_ctl start",
    )
    _ensure_airflow_db()


def _psql(sql: str, db: str = "postgres") -> str:
    result = subprocess.run(
        as_postgres(
            [
                pg_bin("psql"),
                "-h",
                str(PG_SOCKET),
                "-p",
                "5432",
                "-U",
                "postgres",
                "-d",
                db,
                "-tAc",
                sql,
            ]
        ),
        capture_output=True,
        text=True,
    )
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


def pg_settings() -> tuple[str, str, str]:
    return (
        os.environ.get("POSTGRES_USER", "airflow"),
        os.environ.get("POSTGRES_PASSWORD", "airflow"),
        os.environ.get("POSTGRES_DB", "airflow"),
    )


def probe_postgres() -> str | None:
    import psycopg2

    user, password, db = pg_settings()
    try:
        conn = psycopg2.connect(
            host="127.0.0.1", port=5432, user=user, password=password, dbname=db, connect_timeout=3
        )
    except psycopg2.OperationalError as exc:
        return f"no connection as {user!r} ({str(exc).strip()[:120]})"
    conn.close()
    return None


def postgres_pid() -> int | None:
    pidfile = PG_DATA / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def stop_postgres() -> None:
    if postgres_pid():
        _run_pg([pg_bin("pg_ctl"), "-D", str(PG_DATA), "-m", "fast", "-w", "stop"], "pg_ctl stop")


# Airflow -------------------------------------------------------------------------------

AIRFLOW_HOME = DATA / "airflow"
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def airflow_admin() -> tuple[str, str]:
    """The admin login: AIRFLOW_ADMIN_USERNAME/PASSWORD, or a password generated once."""
    user = os.environ.get("AIRFLOW_ADMIN_USERNAME", "admin")
    password = os.environ.get("AIRFLOW_ADMIN_PASSWORD")
    saved = AIRFLOW_HOME / "admin-password"
    if not password:
        if saved.exists():
            password = saved.read_text().strip()
        else:
            AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
            password = secrets.token_urlsafe(12)
            write_secret(saved, password)
            say(
                f"  airflow: generated admin login {user} / {password} "
                f"(printed once; kept in {saved.relative_to(REPO)})"
            )
    return user, password


def airflow_env() -> dict[str, str]:
    """Environment of every Airflow process of the local stack."""
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    secret_file = AIRFLOW_HOME / "jwt-secret"
    if not secret_file.exists():
        write_secret(secret_file, secrets.token_urlsafe(32))
    user, password, db = pg_settings()
    admin, _ = airflow_admin()
    login = f"{quote(user, safe='')}:{quote(password, safe='')}"
    database_url = f"postgresql+psycopg2://{login}@127.0.0.1:5432/{db}"
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(AIRFLOW_HOME),
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "4"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{admin}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                AIRFLOW_HOME / "passwords.json"
            ),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:8080/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
            "AIRFLOW__API__PORT": "8080",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(LOGS / "airflow-tasks"),
        }
    )
    return env


def start_airflow() -> None:
    env = airflow_env()
    admin, password = airflow_admin()
    passwords = AIRFLOW_HOME / "passwords.json"
    write_secret(passwords, json.dumps({admin: password}))
    say("  airflow: migrating the metadata database (airflow db migrate) ...")
    result = subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True
    )
    (LOGS / "airflow-db-migrate.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise StackError(f"airflow db migrate failed: see {LOGS / 'airflow-db-migrate.log'}")
    airflow = str(VENV_BIN / "airflow")
    for component in AIRFLOW_COMPONENTS:
        name = f"airflow-{component}"
        if read_pid(name):
            continue
        args = [airflow, component]
        if component == "api-server":
            args += ["--host", "127.0.0.1", "--port", "8080", "--workers", "1"]
        spawn(name, args, env)


def probe_airflow() -> str | None:
    import requests

    try:
        health = requests.get("http://127.0.0.1:8080/api/v2/monitor/health", timeout=3).json()
    except (requests.RequestException, ValueError) as exc:
        return f"API server not answering on :8080 ({exc.__class__.__name__})"
    missing = [
        part
        for part in ("metadatabase", "scheduler", "dag_processor", "triggerer")
        if (health.get(part) or {}).get("status") != "healthy"
    ]
    return f"not healthy yet: {', '.join(missing)}" if missing else None


def airflow_pid() -> int | None:
    """A live Airflow component's pid (the API server's first), None when none runs."""
    for component in AIRFLOW_COMPONENTS:
        pid = read_pid(f"airflow-{component}")
        if pid:
            return pid
    return None


def airflow_complete() -> bool:
    return all(read_pid(f"airflow-{c}") for c in AIRFLOW_COMPONENTS)


def stop_airflow() -> None:
    for component in reversed(AIRFLOW_COMPONENTS):
        name = f"airflow-{component}"
        pid = read_pid(name)
        if pid:
            stop_tree(name, pid)
        pid_file(name).unlink(missing_ok=True)


# Spark stream job ------------------------------------------------------------------------


def stream_command(env: dict[str, str] | None = None) -> list[str]:
    """The spark-submit line of the stream job, with the jars resolved into .stack/jars/spark."""
    s = config.load(env).stream
    return [
        str(VENV_BIN / "spark-submit"),
        "--master",
        s.master,
        "--jars",
        ",".join(str(j) for j in spark_jars()),
        "--driver-memory",
        (env or os.environ).get("SPARK_DRIVER_MEMORY", "1g"),
        "--conf",
        f"spark.ui.port={s.ui_port}",
        "--conf",
        "spark.sql.shuffle.partitions=4",
        str(REPO / "spark_stream.py"),
    ]


def spawn_stream_job(overrides: dict[str, str], log: Path) -> subprocess.Popen:
    """A stream job of its own (tests, benchmark), e.g. on another topic, keyspace, checkpoint."""
    env = {**stream_env(), **overrides}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            stream_command(env),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stream_env() -> dict[str, str]:
    env = dict(os.environ)
    # The defaults in pipeline/config.py are under the repo's .stack; follow STACK_STATE_DIR.
    env.setdefault("SPARK_CHECKPOINT_DIR", str(DATA / "spark" / "checkpoint"))
    env.setdefault("SPARK_JARS_DIR", str(JARS / "spark"))
    env["PYTHONPATH"] = str(REPO)
    env["PYSPARK_PYTHON"] = sys.executable
    env["SPARK_CONF_DIR"] = str(REPO / "stack" / "spark")  # log4j2.properties
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


STREAM_STATE = RUN / "spark-stream.supervisor.json"


def start_stream() -> None:
    """The stream job under its supervisor (`script/supervise.py`): restarted when it fails."""
    env = stream_env()
    supervised = [
        sys.executable,
        "-m",
        "script.supervise",
        "--state",
        str(STREAM_STATE),
        "--",
        *stream_command(env),
    ]
    spawn("spark-stream", supervised, env)


def stream_restarts() -> str | None:
    """The supervisor's line for `status`, e.g. "spark-stream restarts 2 (last exit 1 at ...)"."""
    state = supervise.read_state(STREAM_STATE)
    return supervise.describe("spark-stream", state) if state else None


# What spark_stream.py logs once it has warmed up and started its query.
STREAM_READY = "stream job ready"


def probe_stream() -> str | None:
    """Ready once the job has logged STREAM_READY since the supervisor last started it."""
    port = config.load().stream.ui_port
    log = LOGS / "spark-stream.log"
    try:
        with log.open("rb") as text:
            text.seek(max(0, log.stat().st_size - 256_000))
            tail = text.read().decode(errors="replace")
    except OSError:
        tail = ""
    if STREAM_READY in tail[tail.rfind("supervisor: started") :]:
        return None
    state = supervise.read_state(STREAM_STATE)
    restarts = f"; restarts {state.restarts}" if state and state.restarts else ""
    warming = "warming up" if port_open(port) else f"Spark UI :{port} not up yet"
    return f"{warming}{restarts}"


def stop_stream() -> None:
    pid = read_pid("spark-stream")
    if pid:
        # Only the supervisor is signalled: it stops the job and kills it after its own grace.
        stop_tree("spark-stream", pid, timeout=supervise.STOP_TIMEOUT + 10, leader_only=True)
    pid_file("spark-stream").unlink(missing_ok=True)


# randomuser stand-in --------------------------------------------------------------------

STANDIN_PORT = int(os.environ.get("USERS_STANDIN_PORT", "8765"))


def standin_url() -> str:
    return f"http://127.0.0.1:{STANDIN_PORT}/api/"


def start_standin() -> None:
    spawn(
        "randomuser-standin",
        [
            sys.executable,
            "-m",
            "pipeline.randomuser_standin",
            "--host",
            "127.0.0.1",
            "--port",
            str(STANDIN_PORT),
        ],
        stream_env(),
    )


def probe_standin() -> str | None:
    import requests

    try:
        requests.get(standin_url(), params={"results": 1}, timeout=3).raise_for_status()
    except requests.RequestException as exc:
        return f"no answer on :{STANDIN_PORT} ({exc.__class__.__name__})"
    return None


# --------------------------------------------------------------------------- the stack

SERVICES: list[Service] = [
    Service("postgres", 5432, start_postgres, probe_postgres, 90, stop_postgres, postgres_pid),
    Service("zookeeper", 2181, start_zookeeper, probe_zookeeper, 60),
    Service("kafka", 9092, start_kafka, probe_kafka, 120, set_up=create_topic),
    Service("cassandra", 9042, start_cassandra, probe_cassandra, 240),
    Service(
        "airflow",
        8080,
        start_airflow,
        probe_airflow,
        300,
        stop_airflow,
        airflow_pid,
        log_name="airflow-scheduler.log",
        complete=airflow_complete,
    ),
]
STREAM = Service(
    "spark-stream", config.load().stream.ui_port, start_stream, probe_stream, 180, stop_stream
)
STANDIN = Service("randomuser-standin", STANDIN_PORT, start_standin, probe_standin, 30)
EXTRAS = [STREAM, STANDIN]  # started on demand (the runner, `stream`), stopped by `down`
