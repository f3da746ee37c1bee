"""The local stack: ZooKeeper, Kafka, Cassandra, PostgreSQL and Airflow as plain processes.

`./run.sh` creates the venv and hands its arguments to this file. Everything it downloads or
writes lives under `.stack/` (git-ignored): `jars/` (Maven downloads), `data/` (service data),
`logs/` (one log per service), `run/` (pid files), `conf/` (generated config).
Versions are pinned in `stack/versions.env`; static service config lives in `stack/`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline import config  # noqa: E402

STACK_CONF = REPO / "stack"
STATE = Path(os.environ.get("STACK_STATE_DIR", REPO / ".stack"))
JARS = STATE / "jars"
DATA = STATE / "data"
LOGS = STATE / "logs"
RUN = STATE / "run"
CONF = STATE / "conf"
VENV_BIN = Path(sys.executable).parent


class StackError(RuntimeError):
    """A step of the stack failed; the message names the service, its port and its log."""


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def versions() -> dict[str, str]:
    """The pinned versions from stack/versions.env."""
    pairs = {}
    for line in (STACK_CONF / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


# --------------------------------------------------------------------------- downloads


def _mvn_copy(pom: Path, dest: Path, properties: dict[str, str], what: str) -> None:
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is not on PATH: install it (apt-get install maven)")
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={tmp}",
    ]
    cmd += [f"-D{k}={v}" for k, v in properties.items()]
    say(f"resolving {what} with Maven (first run only) ...")
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise StackError(f"Maven could not resolve {what}:\n{tail}")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    count = len(list(dest.glob("*.jar")))
    say(f"  {count} jars in {dest.relative_to(REPO)} ({time.monotonic() - started:.0f}s)")


def _resolved(dest: Path, key: str) -> bool:
    marker = dest / ".resolved"
    return marker.exists() and marker.read_text() == key


def resolve_service_jars(
    name: str, group: str, artifact: str, version: str, pom: str = "jar.pom.xml"
) -> Path:
    """Resolve ``group:artifact:version`` with its runtime dependencies into .stack/jars/NAME."""
    dest = JARS / name
    key = f"{group}:{artifact}:{version} ({pom})"
    if not _resolved(dest, key):
        JARS.mkdir(parents=True, exist_ok=True)
        _mvn_copy(
            STACK_CONF / pom,
            dest,
            {"artifact.group": group, "artifact.id": artifact, "artifact.version": version},
            key,
        )
        (dest / ".resolved").write_text(key)
    return dest


def _artifact_name(jar: str) -> str:
    match = re.match(r"^(.*?)-\d[^-]*(-.*)?\.jar$", jar)
    return match.group(1) if match else jar


def resolve_spark_jars() -> Path:
    """Resolve the Spark job's connectors into .stack/jars/spark, minus jars pyspark bundles."""
    v = versions()
    dest = JARS / "spark"
    key = (
        f"spark-sql-kafka-0-10_{v['SCALA_BINARY_VERSION']}:{v['SPARK_VERSION']} "
        f"spark-cassandra-connector_{v['SCALA_BINARY_VERSION']}:"
        f"{v['SPARK_CASSANDRA_CONNECTOR_VERSION']}"
    )
    if _resolved(dest, key):
        return dest
    JARS.mkdir(parents=True, exist_ok=True)
    _mvn_copy(
        STACK_CONF / "spark-jars.pom.xml",
        dest,
        {
            "spark.version": v["SPARK_VERSION"],
            "scala.binary.version": v["SCALA_BINARY_VERSION"],
            "scc.version": v["SPARK_CASSANDRA_CONNECTOR_VERSION"],
        },
        key,
    )
    import pyspark

    bundled = {
        _artifact_name(j.name) for j in (Path(pyspark.__file__).parent / "jars").glob("*.jar")
    }
    for jar in dest.glob("*.jar"):
        if _artifact_name(jar.name) in bundled:
            jar.unlink()  # pyspark ships its own (newer, matching) copy
    (dest / ".resolved").write_text(key)
    return dest


def spark_jars() -> list[Path]:
    return sorted(resolve_spark_jars().glob("*.jar"))


def ensure_downloads() -> dict[str, Path]:
    """Every jar the stack and the Spark job need, resolved once into .stack/jars."""
    v = versions()
    return {
        "kafka": resolve_service_jars(
            "kafka",
            "org.apache.kafka",
            f"kafka_{v['KAFKA_SCALA_VERSION']}",
            v["KAFKA_VERSION"],
            pom="kafka-jars.pom.xml",
        ),
        "cassandra": resolve_service_jars(
            "cassandra", "org.apache.cassandra", "cassandra-all", v["CASSANDRA_VERSION"]
        ),
        "spark": resolve_spark_jars(),
    }


# --------------------------------------------------------------------------- processes


def pid_file(name: str) -> Path:
    return RUN / f"{name}.pid"


def read_pid(name: str) -> int | None:
    path = pid_file(name)
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
    except ValueError:
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Start ``cmd`` in its own session, output to .stack/logs/NAME.log, pid to .stack/run."""
    LOGS.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{name}.log").open("ab")
    log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
    log.flush()
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    pid_file(name).write_text(str(proc.pid))
    return proc.pid


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def stop_tree(name: str, pid: int, timeout: float = 30) -> None:
    """SIGTERM the process tree of ``pid``, then SIGKILL whatever is left after ``timeout``."""
    tree = process_tree(pid)
    for p in tree:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in tree):
        time.sleep(0.3)
    left = [p for p in tree if pid_alive(p)]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        say(f"  {name}: killed {len(left)} process(es) that ignored SIGTERM for {timeout:.0f}s")


def memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in KiB summed over the process tree of ``pid``."""
    pss = rss = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return pss, rss


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

    @property
    def log(self) -> Path:
        return LOGS / f"{self.name}.log"

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
        except NoHostAvailable:
            pass
    return f"authenticated query as {s.username!r} failed ({reason[:160]})"


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


def start_postgres() -> None:
    _pg_dirs()
    if not (PG_DATA / "PG_VERSION").exists():
        say("  postgres: initialising a new cluster in .stack/data/postgres")
        subprocess.run(
            as_postgres(
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
                ]
            ),
            check=True,
            capture_output=True,
        )
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / "postgres.log"
    log.touch()
    if os.geteuid() == 0:
        shutil.chown(log, "postgres", "postgres")
    subprocess.run(
        as_postgres(
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
            ]
        ),
        check=True,
        capture_output=True,
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
        subprocess.run(
            as_postgres([pg_bin("pg_ctl"), "-D", str(PG_DATA), "-m", "fast", "-w", "stop"]),
            check=True,
            capture_output=True,
        )


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
            saved.write_text(password)
            saved.chmod(0o600)
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
        secret_file.write_text(secrets.token_urlsafe(32))
        secret_file.chmod(0o600)
    user, password, db = pg_settings()
    admin, _ = airflow_admin()
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(AIRFLOW_HOME),
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{user}:{password}@127.0.0.1:5432/{db}",
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
    passwords.write_text(json.dumps({admin: password}))
    passwords.chmod(0o600)
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
    return read_pid("airflow-api-server")


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
    env["PYTHONPATH"] = str(REPO)
    env["PYSPARK_PYTHON"] = sys.executable
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def start_stream() -> None:
    spawn("spark-stream", stream_command(), stream_env())


def probe_stream() -> str | None:
    port = config.load().stream.ui_port
    return None if port_open(port) else f"Spark UI :{port} not up yet"


def stop_stream() -> None:
    pid = read_pid("spark-stream")
    if pid:
        stop_tree("spark-stream", pid, timeout=60)
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
    Service("kafka", 9092, start_kafka, probe_kafka, 120),
    Service("cassandra", 9042, start_cassandra, probe_cassandra, 240),
    Service("airflow", 8080, start_airflow, probe_airflow, 300, stop_airflow, airflow_pid),
]
STREAM = Service("spark-stream", None, start_stream, probe_stream, 180, stop_stream)
STANDIN = Service("randomuser-standin", STANDIN_PORT, start_standin, probe_standin, 30)
EXTRAS = [STREAM, STANDIN]  # started on demand (the runner, `stream`), stopped by `down`


def wait_ready(service: Service) -> None:
    started = time.monotonic()
    last_reason, last_print = "", 0.0
    while True:
        reason = service.probe()
        if reason is None:
            say(f"  {service.name}: ready ({time.monotonic() - started:.0f}s)")
            return
        pid = service.current_pid()
        if pid is None and service.name != "postgres":
            raise StackError(_failure(service, "the process exited"))
        elapsed = time.monotonic() - started
        if elapsed > service.timeout:
            raise StackError(_failure(service, f"not ready after {service.timeout:.0f}s: {reason}"))
        if reason != last_reason or elapsed - last_print > 15:
            say(f"  {service.name}: waiting ({reason}) {elapsed:.0f}s")
            last_reason, last_print = reason, elapsed
        time.sleep(1)


def _failure(service: Service, why: str) -> str:
    port = f" on port {service.port}" if service.port else ""
    tail = ""
    if service.log.exists():
        lines = service.log.read_text(errors="replace").splitlines()[-12:]
        tail = "\n    " + "\n    ".join(lines)
    return f"{service.name}{port} failed: {why}. Log: {service.log}{tail}"


def _port_taken(service: Service) -> str:
    return (
        f"{service.name}: port {service.port} is taken by another process (see "
        f"`ss -ltnp 'sport = :{service.port}'`); stop it or free the port. "
        f"Log: {service.log}"
    )


def start_service(service: Service) -> bool:
    """Start ``service`` unless it already runs; return True when this call started it."""
    if service.current_pid():
        if service.probe() is None:
            say(f"{service.name}: already running (pid {service.current_pid()})")
            return False
        say(f"{service.name}: running, waiting until ready")
        wait_ready(service)
        return False
    if service.port and port_open(service.port):
        raise StackError(_port_taken(service))
    logs = (
        f"{LOGS.name}/airflow-*.log"
        if service.name == "airflow"
        else str(service.log.relative_to(STATE.parent))
    )
    say(f"{service.name}: starting (log {logs})")
    service.start()
    wait_ready(service)
    return True


def stop_service(service: Service) -> None:
    pid = service.current_pid()
    if not pid:
        pid_file(service.name).unlink(missing_ok=True)
        return
    say(f"{service.name}: stopping (pid {pid})")
    if service.stop:
        service.stop()
    else:
        stop_tree(service.name, pid)
        pid_file(service.name).unlink(missing_ok=True)


def up(names: Iterable[str] | None = None) -> list[str]:
    """Start the named services (default: all) in order; return those this call started."""
    wanted = set(names or [s.name for s in SERVICES])
    unknown = wanted - {s.name for s in SERVICES}
    if unknown:
        raise StackError(f"unknown service(s): {', '.join(sorted(unknown))}")
    started_at = time.monotonic()
    for service in SERVICES:  # fail before any download when a port is taken
        if (
            service.name in wanted
            and not service.current_pid()
            and service.port
            and port_open(service.port)
        ):
            raise StackError(_port_taken(service))
    ensure_downloads()
    started = [s.name for s in SERVICES if s.name in wanted and start_service(s)]
    say(f"stack up in {time.monotonic() - started_at:.0f}s; `./run.sh status` for details")
    return started


def down(names: Iterable[str] | None = None) -> None:
    wanted = set(names or [s.name for s in [*SERVICES, *EXTRAS]])
    for service in [*EXTRAS, *reversed(SERVICES)]:
        if service.name in wanted:
            stop_service(service)


def status_rows() -> list[dict[str, object]]:
    rows = []
    for service in [*SERVICES, *EXTRAS]:
        groups = (
            [f"airflow-{c}" for c in AIRFLOW_COMPONENTS]
            if service.name == "airflow"
            else [service.name]
        )
        for name in groups:
            if service.name == "airflow":
                pid = read_pid(name)
                port = 8080 if name == "airflow-api-server" else None
            else:
                pid, port = service.current_pid(), service.port
            if name == "spark-stream":
                port = config.load().stream.ui_port
            pss, rss = memory_kb(pid) if pid else (0, 0)
            log = LOGS / f"{name}.log"
            rows.append(
                {
                    "service": name,
                    "state": "up" if pid else "down",
                    "pid": pid or "-",
                    "port": port or "-",
                    "pss_mb": pss // 1024,
                    "rss_mb": rss // 1024,
                    "log": str(log.relative_to(REPO)) if log.is_relative_to(REPO) else str(log),
                }
            )
    return rows


def status() -> None:
    rows = status_rows()
    header = f"{'SERVICE':<24}{'STATE':<7}{'PID':>8}{'PORT':>7}{'PSS MB':>9}{'RSS MB':>9}  LOG"
    print(header)
    for r in rows:
        print(
            f"{r['service']:<24}{r['state']:<7}{r['pid']!s:>8}{r['port']!s:>7}"
            f"{r['pss_mb']:>9}{r['rss_mb']:>9}  {r['log']}"
        )
    total_pss = sum(int(r["pss_mb"]) for r in rows)
    total_rss = sum(int(r["rss_mb"]) for r in rows)
    print(f"{'total':<46}{total_pss:>9}{total_rss:>9}  (PSS counts shared pages once)")
    up_now = {r["service"] for r in rows if r["state"] == "up"}
    print()
    for line in pipeline_lines(up_now):
        print(line)


def pipeline_lines(up_now: set[str]) -> list[str]:
    """The pipeline half of `status`: topic, stream progress and lag, rows, last DAG run."""
    from script import pipeline_status as ps
    from script.airflow_api import AirflowClient, AirflowError

    settings = config.load()
    k, c = settings.kafka, settings.cassandra
    lines = ["PIPELINE"]
    if "kafka" in up_now:
        progress = ps.stream_progress(settings)
        offsets = ", ".join(f"p{p}={o}" for p, o in sorted(progress.end_offsets.items()))
        lines.append(
            f"  topic {k.topic:<26}{progress.messages:>10,} messages  ({offsets or 'no topic yet'})"
        )
        read = ", ".join(f"p{p}={o}" for p, o in sorted(progress.committed.items()))
        lines.append(
            f"  stream job has read          {progress.messages - progress.lag:>10,}  "
            f"lag {progress.lag:,}  (checkpoint batch {progress.batch}: {read or '-'})"
        )
    else:
        lines.append("  kafka is down: no topic figures")
    if "cassandra" in up_now:
        cluster, session = ps.cassandra_session(c)
        try:
            for table in (c.table, c.dead_letter_table):
                rows = ps.count_rows(session, c.keyspace, table)
                shown = "no table yet" if rows is None else f"{rows:,} rows"
                lines.append(f"  {c.keyspace}.{table:<{28 - len(c.keyspace)}}{shown:>10}")
        finally:
            cluster.shutdown()
    else:
        lines.append("  cassandra is down: no row counts")
    if "airflow-api-server" in up_now:
        admin, password = airflow_admin()
        try:
            run = AirflowClient("http://127.0.0.1:8080", admin, password).last_run(
                "user_automation"
            )
        except AirflowError as exc:
            run, lines = None, [*lines, f"  last DAG run: unknown ({exc})"]
        if run:
            lines.append(f"  last user_automation run     {run['state']:>10}  {run['dag_run_id']}")
        else:
            lines.append("  last user_automation run     none yet")
    return lines


def clean(everything: bool) -> None:
    down()
    targets = [DATA, LOGS, RUN, CONF] + ([STATE] if everything else [])
    for path in targets:
        shutil.rmtree(path, ignore_errors=True)
    say(
        "removed service data and logs"
        + (
            " and downloads/venv"
            if everything
            else " (downloads and venv kept; --all removes them)"
        )
    )


def cqlsh(extra: list[str]) -> int:
    s = config.load().cassandra
    cmd = [str(VENV_BIN / "cqlsh"), "-u", s.username, "-p", s.password, s.host, str(s.port), *extra]
    return subprocess.call(cmd)


def run_tests(pytest_args: list[str]) -> int:
    """Bring the stack up if needed, run pytest, stop what this run started."""
    started = up()
    try:
        code = subprocess.call(
            [sys.executable, "-m", "pytest", *pytest_args], cwd=REPO, env=stream_env()
        )
    finally:
        if started:
            say(f"stopping what the test run started: {', '.join(started)}")
            down([*started, *(s.name for s in EXTRAS)])
    if code == 5:
        say("pytest collected no tests: that is a failure here")
        return 1
    return code


USAGE = """usage: ./run.sh [--offline] [--users N] [--seed TEXT]   run the whole pipeline once
       ./run.sh COMMAND
  up [SERVICE...]   start the local stack (postgres zookeeper kafka cassandra airflow)
  down [SERVICE...] stop it (data kept)
  status            services: up/down, pid, port, memory (PSS/RSS), log
  clean [--all]     stop and remove data and logs (--all: also jars and the venv)
  stream [stop]     start (or stop) the Spark stream job
  cqlsh [ARGS]      cqlsh as the configured Cassandra superuser
  test [PYTEST ARGS] run the test suite against the stack (starts and stops what it needs)
  bench [--runs N]  print throughput, latency and memory figures (medians of N runs)
  jars              resolve the jars only"""


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("help", [])
    try:
        if command == "up":
            up(args or None)
        elif command == "down":
            down(args or None)
        elif command == "status":
            status()
        elif command == "clean":
            clean("--all" in args)
        elif command == "stream":
            if args[:1] == ["stop"]:
                stop_service(STREAM)
            else:
                start_service(STREAM)
        elif command == "cqlsh":
            return cqlsh(args)
        elif command == "test":
            return run_tests(args)
        elif command == "bench":
            from script import benchmark

            return benchmark.main(args)
        elif command == "jars":
            for name, path in ensure_downloads().items():
                print(f"{name}: {path}")
        else:
            print(USAGE)
            return 0 if command in ("help", "-h", "--help") else 2
    except (StackError, config.ConfigError) as exc:
        say(f"ERROR: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
