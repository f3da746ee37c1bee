"""The local stack's services are real and keep their data: Kafka, Cassandra, PostgreSQL, run.sh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import LOGS, cassandra_cluster
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaTimeoutError

from pipeline import config
from script.procs import pid_alive, process_tree, read_pid, supervisor_state
from script.services import airflow

REPO = Path(__file__).resolve().parents[1]
SIMPLE_RF1 = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
STACK = [sys.executable, "-m", "script"]


def stack(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*STACK, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
        timeout=timeout,
    )


def test_kafka_round_trips_1000_keyed_messages(kafka_bootstrap: str, unique: str) -> None:
    topic = f"stack-test-{unique}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    sent = {f"key-{i}": f"value-{i}-ünïcødé" for i in range(1000)}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for key, value in sent.items():
        producer.send(topic, key=key.encode(), value=value.encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=15000,
    )
    received: dict[str, str] = {}
    partitions: dict[str, set[int]] = {}
    for message in consumer:
        key = message.key.decode()
        received[key] = message.value.decode()
        partitions.setdefault(key, set()).add(message.partition)
        if len(received) == len(sent):
            break
    consumer.close()
    assert received == sent
    assert {p for ps in partitions.values() for p in ps} == {0, 1, 2}


def test_kafka_does_not_auto_create_topics(kafka_bootstrap: str, unique: str) -> None:
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    consumer.topics()  # a metadata request
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_block_ms=3000)
    with pytest.raises(KafkaTimeoutError):
        producer.send(f"never-created-{unique}", b"x").get(timeout=5)
    producer.close()
    assert f"never-created-{unique}" not in consumer.topics()
    consumer.close()


def test_cassandra_writes_and_reads_rows_as_superuser(cassandra_session, unique: str) -> None:
    ks = f"stack_test_{unique}"
    cassandra_session.execute(f"CREATE KEYSPACE {ks} WITH replication = {SIMPLE_RF1}")
    cassandra_session.execute(f"CREATE TABLE {ks}.people (id text PRIMARY KEY, name text)")
    rows = {f"id-{i}": f"名前-{i}" for i in range(50)}
    insert = cassandra_session.prepare(f"INSERT INTO {ks}.people (id, name) VALUES (?, ?)")
    for key, name in rows.items():
        cassandra_session.execute(insert, (key, name))
    read = {r.id: r.name for r in cassandra_session.execute(f"SELECT id, name FROM {ks}.people")}
    cassandra_session.execute(f"DROP KEYSPACE {ks}")
    assert read == rows
    # What the drop kept (its snapshot) is freed within the hour, not left on the disk for good.
    kept = list(
        cassandra_session.execute(
            "SELECT created_at, expires_at FROM system_views.snapshots WHERE keyspace_name = %s "
            "ALLOW FILTERING",
            (ks,),
        )
    )
    assert kept, f"no snapshot of the dropped keyspace {ks}"
    assert all(s.expires_at is not None for s in kept)
    assert all(s.expires_at - s.created_at <= timedelta(hours=1) for s in kept)


def test_cassandra_refuses_a_wrong_password(settings) -> None:
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    c = settings.cassandra
    cluster = cassandra_cluster(c, password=c.password + "-wrong")
    with pytest.raises(NoHostAvailable) as refused:
        cluster.connect()
    cluster.shutdown()
    errors = list(refused.value.errors.values())
    assert errors and all(isinstance(e, AuthenticationFailed) for e in errors)


def test_postgres_answers_as_airflow(settings: config.Settings) -> None:
    import psycopg2

    s = settings.stack
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=s.postgres_port,
        user=s.postgres_user,
        password=s.postgres_password,
        dbname=s.postgres_db,
        connect_timeout=5,
    )
    with conn.cursor() as cur:
        cur.execute("SELECT current_user, current_database()")
        assert cur.fetchone() == (s.postgres_user, s.postgres_db)
    conn.close()


def _service_rows() -> dict[str, list[str]]:
    """`status` table rows by service name (the lines between the header and the total)."""
    lines = stack("status").stdout.splitlines()
    table = lines[1 : next(i for i, line in enumerate(lines) if line.startswith("total"))]
    return {line.split()[0]: line.split() for line in table}


def _pids() -> dict[str, str]:
    return {name: row[2] for name, row in _service_rows().items()}


def test_up_twice_is_harmless(kafka_bootstrap: str) -> None:
    before = _pids()
    result = stack("up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already running" in result.stdout
    assert _pids() == before
    assert all(before[s] != "-" for s in ("postgres", "zookeeper", "kafka", "cassandra"))


def test_airflow_stops_on_one_sigterm_per_component_and_comes_back(airflow_client) -> None:
    """`down airflow` signals each component once, through its supervisor: the scheduler ends its
    LocalExecutor workers itself and exits 0. Its forked workers inherit a SIGTERM handler that
    does nothing outside the scheduler; signalled as a tree, the scheduler got SIGTERM twice,
    cut its own shutdown short, and `down` waited 30 s, then killed six processes."""
    supervisors = [read_pid(f"airflow-{c}") for c in airflow.COMPONENTS]
    assert all(supervisors), supervisors
    before = [p for pid in supervisors for p in process_tree(pid)]
    workers = [p for p in before if "LocalExecutor" in _cmdline(p)]
    assert workers  # the scheduler's executor runs its workers before any task

    result = stack("down", "airflow", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ignored SIGTERM" not in result.stdout, result.stdout
    for component in airflow.COMPONENTS:
        state = json.loads(supervisor_state(f"airflow-{component}").read_text())
        assert state["finished"] and state["last_exit"] == 0, (component, state)
    assert not [p for p in before if pid_alive(p)]

    result = stack("up", "airflow", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert airflow.Airflow().probe() is None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# Thread names as Linux shortens them: the job's compilers, and its query's thread.
COMPILERS = ("C1 CompilerThre", "C2 CompilerThre")
QUERY_THREAD = "stream executio"


def test_the_stream_job_compiles_at_nice_19_once_warm_and_carries_users_at_nice_0() -> None:
    """Once warmed up, the user's stream job has its JIT compilers' threads at nice 19, so they
    take what the job's own threads and the other services leave of the cores; nothing else of
    it is pushed down there, and its query's thread runs at nice 0 or below (read per thread
    from /proc). Its log says the compilers went down after the warm-up, not before it."""
    supervisor = read_pid("spark-stream")
    assert supervisor, "the stream job is not running"
    javas = [p for p in process_tree(supervisor) if _cmdline(p).split(" ")[0].endswith("java")]
    assert len(javas) == 1, javas
    threads = _thread_nice(javas[0])
    compilers = [nice for name, nice in threads if name.startswith(COMPILERS)]
    assert len(compilers) >= 2 and set(compilers) == {19}, threads
    lowest = [n for n, nice in threads if nice == 19 and not n.startswith(COMPILERS)]
    assert lowest == [], lowest
    query = [nice for name, nice in threads if name.startswith(QUERY_THREAD)]
    assert query and max(query) <= 0, threads
    log = (LOGS / "spark-stream.log").read_text(errors="replace")
    last_start = log[log.rindex("warmed up in ") :]
    assert "compiler threads now run at nice 19" in last_start.split("stream job ready")[0]


def _thread_nice(pid: int) -> list[tuple[str, int]]:
    """(name, nice) of each of the process's threads."""
    out = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the thread ended
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        out.append((name, int(text.rsplit(")", 1)[1].split()[16])))
    return out


def test_up_creates_the_topic_once_with_the_configured_partitions(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = f"stack-up-topic-{unique}"
    outputs = []
    for partitions in ("5", "5", "2"):  # the last `up` asks for fewer: the topic stays as it is
        env = {**os.environ, "KAFKA_TOPIC": topic, "KAFKA_TOPIC_PARTITIONS": partitions}
        result = stack("up", "kafka", env=env, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(result.stdout)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
        admin.delete_topics([topic])
    finally:
        admin.close()
    assert len(described["partitions"]) == 5
    assert all(f"kafka: topic {topic} is there (5 partition(s), " in out for out in outputs)


def test_up_fails_naming_service_port_and_log_when_a_port_is_taken(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    # A second stack in an empty state folder finds every port taken by the first one.
    env = {**os.environ, "STACK_STATE_DIR": str(tmp_path / "state")}
    result = stack("up", "kafka", env=env, timeout=60)
    assert result.returncode == 1
    assert "kafka: port 9092 is taken" in result.stdout
    assert str(tmp_path / "state" / "logs" / "kafka.log") in result.stdout
    assert not (tmp_path / "state" / "jars").exists()  # failed before downloading anything


def test_status_lists_every_service_with_pid_port_memory_and_log(
    settings: config.Settings,
) -> None:
    rows = _service_rows()
    for name, port in (
        ("postgres", settings.stack.postgres_port),
        ("zookeeper", settings.stack.zookeeper_port),
        ("kafka", 9092),
        ("cassandra", settings.cassandra.port),
        ("airflow-api-server", settings.stack.airflow_port),
        ("monitor", settings.monitor.port),
    ):
        state, pid, listed_port, pss, rss, log = rows[name][1:7]
        assert (state, listed_port) == ("up", str(port))
        assert int(pid) > 1 and int(rss) > 0 and int(pss) > 0
        assert log == f".stack/logs/{name}.log"


def test_cassandra_keeps_rows_across_down_and_up(cassandra_session, settings, unique: str) -> None:
    ks = f"restart_{unique}"
    cassandra_session.execute(f"CREATE KEYSPACE {ks} WITH replication = {SIMPLE_RF1}")
    cassandra_session.execute(f"CREATE TABLE {ks}.kept (id int PRIMARY KEY, note text)")
    for i in range(20):
        cassandra_session.execute(
            f"INSERT INTO {ks}.kept (id, note) VALUES (%s, %s)", (i, f"row {i}")
        )

    down = stack("down", "cassandra")
    assert down.returncode == 0, down.stdout + down.stderr
    assert _pids()["cassandra"] == "-"
    started = time.monotonic()
    up = stack("up", "cassandra")
    assert up.returncode == 0, up.stdout + up.stderr
    print(f"cassandra restarted in {time.monotonic() - started:.0f}s")

    # A fresh connection to the new process, as the admin that made the keyspace.
    cluster = cassandra_cluster(config.cassandra_admin())
    session = cluster.connect()
    rows = {r.id: r.note for r in session.execute(f"SELECT id, note FROM {ks}.kept")}
    session.execute(f"DROP KEYSPACE {ks}")
    cluster.shutdown()
    assert rows == {i: f"row {i}" for i in range(20)}


def test_cqlsh_command_logs_in_as_the_superuser(cassandra_session) -> None:
    result = stack("cqlsh", "-e", "SELECT release_version FROM system.local;", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5.0.6" in result.stdout


def test_airflow_cli_sees_the_dag_without_import_errors(airflow_client) -> None:
    dags = stack("airflow", "dags", "list", "-o", "plain", timeout=180)
    assert dags.returncode == 0, dags.stdout + dags.stderr
    assert config.DAG_ID in dags.stdout
    errors = stack("airflow", "dags", "list-import-errors", "-o", "plain", timeout=180)
    assert errors.returncode == 0 and "kafka_stream.py" not in errors.stdout
