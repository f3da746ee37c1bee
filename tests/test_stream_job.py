"""``spark_stream.py`` under ``spark-submit`` against the real local Kafka and Cassandra.

One scenario, shared by the tests below: valid and malformed messages go to a fresh topic; the
job starts, is stopped with SIGTERM mid-stream (to its JVM alone, as ``./run.sh stream stop``
and ``docker stop`` do), more messages arrive while it is down, and a second run of the
job catches up. Each run has its own topic, keyspace, checkpoint folder and Cassandra role: the
job logs in as a writer role that set-up made, which may only read and write that keyspace.
"""

from __future__ import annotations

import contextlib
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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import count_when_ready, topic_end_offsets
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from pipeline import cassandra_schema, config, contract, parsing, spark_jars
from script.harness.side import QUICK_WARM_UP, QUICK_WARM_UP_MESSAGES, batch_phases
from script.pipeline_status import checkpoint_batches, checkpoint_offsets

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
TEST_DATA = REPO / ".stack" / "data" / "test"
LOGS = REPO / ".stack" / "logs"

VALID_BEFORE, VALID_WHILE_DOWN = 150, 50
MESSAGES_PER_BATCH = 30  # small batches, so the first run is stopped with work left
# The users table exists before set-up runs, made when the contract had no such field: set-up
# must add the column, and the job fill it.
ADDED_FIELD = "picture"
BATCH_LINE = re.compile(r"batch (\d+): (\d+) rows in, (\d+) written, (\d+) rejected, [\d.]+ s")


def user(n: int) -> dict[str, Any]:
    user_id = str(uuid.uuid4())
    return {
        "id": user_id,
        "first_name": f"Zoë {n}",
        "last_name": 'O\'Brien "Jr"',
        "gender": "female" if n % 2 else "male",
        "address": f"{n} Rue de l'Église, Genève, 東京",
        "post_code": f"{10000 + n}",
        "email": f"user{n}@example.com",
        "username": f"user_{user_id[:8]}",
        "dob": "1990-07-14T03:04:05.678Z",
        "registered_date": "2015-01-02T03:04:05.678Z",
        "phone": "(555) 010-0000",
        "picture": f"https://example.com/portraits/{n}.jpg",
        "produced_at": 1_714_564_800_000 + n,
    }


def value(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _without(name: str) -> dict[str, Any]:
    record = user(-1)
    del record[name]
    return record


# One message per kind of malformation, with the reason its dead letter must carry.
MALFORMED: list[tuple[bytes | None, str]] = [
    (b'{"id": "\xc3\x28"}', "not utf-8"),
    (b'{"id": "abc", "first_name": ', "not json"),
    (value([user(-1)]), "not a json object"),
    (value(_without("id")), "missing field id"),
    (value(_without("email")), "missing field email"),
    (
        value({**user(-1), "produced_at": "1714564800000"}),
        "wrong type for produced_at: expected long",
    ),
    (value({**user(-1), "first_name": 42}), "wrong type for first_name: expected string"),
    (None, "empty message"),
]


@dataclass
class Run:
    """One run of the job: its exit status, the per-batch counts it logged, and the progress
    Spark logged for each batch that read messages (SPARK_BATCH_TIMINGS)."""

    returncode: int
    log: Path
    batches: list[tuple[int, int, int, int]] = field(
        default_factory=list
    )  # id, in, written, rejected
    progress: list[dict[str, int]] = field(default_factory=list)  # durationMs, numInputRows

    @property
    def rows_in(self) -> int:
        return sum(batch[1] for batch in self.batches)


@dataclass
class Scenario:
    keyspace: str
    role: str
    sent: dict[str, dict[str, Any]]  # id -> record
    # (partition, offset) -> value, reason, the schema-id header it was sent with (None: none)
    dead: dict[tuple[int, int], tuple[bytes | None, str, int | None]]
    runs: list[Run]
    job: config.Settings  # the job's settings, as it read them
    # Batches the first run planned (its offset log has them) but did not commit: stopped
    # between a batch's plan and its write, Spark runs it again from that log on restart.
    planned_not_committed: set[int] = field(default_factory=set)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stream_command(ui_port: int) -> list[str]:
    """The job's command line, as ``./run.sh stream`` runs it."""
    return [
        str(VENV_BIN / "spark-submit"),
        "--master",
        "local[*]",
        "--jars",
        spark_jars.jars_argument(Path(config.load().stream.jars_dir)),
        "--driver-memory",
        "1g",
        "--conf",
        f"spark.ui.port={ui_port}",
        str(REPO / "spark_stream.py"),
    ]


def start_job(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            stream_command(free_port()),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,  # its own process group, killed as a whole if it hangs
        )


def stop_job(job: subprocess.Popen[bytes], log: Path, log_offset: int, timeout: float = 90) -> Run:
    """SIGTERM the job's JVM (spark-submit execs it); wait for the job to exit; read the batch
    lines it logged."""
    job.send_signal(signal.SIGTERM)
    try:
        returncode = job.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        pytest.fail(f"the job ignored SIGTERM for {timeout:.0f} s; see {log}")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(job.pid, signal.SIGKILL)  # what it left in its group, as the supervisor does
    text = log.read_text(errors="replace")[log_offset:]
    batches = [(int(a), int(b), int(c), int(d)) for a, b, c, d in BATCH_LINE.findall(text)]
    return Run(returncode, log, batches, batch_phases(text))


def wait_until(
    condition: Callable[[], bool],
    job: subprocess.Popen[bytes],
    log: Path,
    what: str,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if job.poll() is not None:
            pytest.fail(f"the job exited ({job.returncode}) before {what}; see {log}")
        time.sleep(0.5)
    pytest.fail(f"no {what} after {timeout:.0f} s; see {log}")


def count(session: Any, keyspace: str, table: str) -> int:
    """Rows in ``keyspace.table``; 0 while the job has not created it yet."""
    return count_when_ready(session, keyspace, table)


@pytest.fixture(scope="module")
def scenario(
    settings: config.Settings, kafka_bootstrap: str, cassandra_session: Any
) -> Iterator[Scenario]:
    suffix = uuid.uuid4().hex[:10]
    topic, keyspace, role = f"stream_job_{suffix}", f"stream_job_{suffix}", f"writer_{suffix}"
    checkpoint = TEST_DATA / f"stream-job-{suffix}" / "checkpoint"
    log = LOGS / f"test-stream-job-{suffix}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_CONF_DIR": str(REPO / "stack" / "spark"),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "KAFKA_TOPIC": topic,
        "CASSANDRA_KEYSPACE": keyspace,
        "CASSANDRA_USERNAME": role,
        "CASSANDRA_PASSWORD": secrets.token_hex(12),
        "SPARK_CHECKPOINT_DIR": str(checkpoint),
        "SPARK_TRIGGER_INTERVAL": "1 second",
        "SPARK_MAX_OFFSETS_PER_TRIGGER": str(MESSAGES_PER_BATCH),
        "SPARK_BATCH_TIMINGS": "true",  # Spark's progress of each batch in the log, as the bench's
        **QUICK_WARM_UP,
    }
    table = settings.cassandra.table
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    sent: dict[str, dict[str, Any]] = {}
    dead: dict[tuple[int, int], tuple[bytes | None, str, int | None]] = {}

    def send_valid(n: int, first: int) -> None:
        for i in range(first, first + n):
            record = user(i)
            sent[record["id"]] = record
            producer.send(topic, key=record["id"].encode(), value=value(record))
            if i % 25 == 0 and i // 25 < len(MALFORMED):  # malformed ones among the valid
                raw, reason = MALFORMED[i // 25]
                schema_id = i // 25 or None  # the first one without the header
                headers = (
                    [(contract.SCHEMA_ID_HEADER, str(schema_id).encode())] if schema_id else None
                )
                meta = producer.send(topic, key=b"bad", value=raw, headers=headers).get(timeout=30)
                dead[(meta.partition, meta.offset)] = (raw, reason, schema_id)
        producer.flush()

    runs: list[Run] = []
    job: subprocess.Popen[bytes] | None = None
    try:
        cassandra_session.execute(cassandra_schema.keyspace_cql(keyspace, 1))
        users = cassandra_schema.USERS
        older = {name: cql for name, cql in users.columns.items() if name != ADDED_FIELD}
        cassandra_session.execute(
            cassandra_schema.table_cql(
                keyspace, table, cassandra_schema.TableShape(older, users.partition_key)
            )
        )
        cassandra_schema.set_up(cassandra_session, config.load(env).cassandra)
        send_valid(VALID_BEFORE, 0)
        job = start_job(env, log)
        # Stopped mid-stream once a batch is committed (rows land before their batch's
        # commit): the second run must begin at the next batch.
        wait_until(
            lambda: checkpoint_offsets(str(checkpoint), topic)[0] is not None,
            job,
            log,
            "a committed batch",
            240,
        )
        runs.append(stop_job(job, log, 0))
        planned_not_committed = checkpoint_batches(str(checkpoint), "offsets") - checkpoint_batches(
            str(checkpoint), "commits"
        )

        send_valid(VALID_WHILE_DOWN, VALID_BEFORE)
        log_offset = len(log.read_text(errors="replace"))
        job = start_job(env, log)

        def caught_up() -> bool:
            return count(cassandra_session, keyspace, table) == len(sent) and count(
                cassandra_session, keyspace, settings.cassandra.dead_letter_table
            ) == len(dead)

        wait_until(caught_up, job, log, "catch-up", 300)
        # Rows can land before their batch is committed: stop the job only once its checkpoint
        # has committed every offset the topic holds, so nothing is left for a third run.
        end = topic_end_offsets(kafka_bootstrap, topic)
        wait_until(
            lambda: checkpoint_offsets(str(checkpoint), topic)[1] == end,
            job,
            log,
            f"commit of every offset ({end})",
            120,
        )
        runs.append(stop_job(job, log, log_offset))
        yield Scenario(keyspace, role, sent, dead, runs, config.load(env), planned_not_committed)
    finally:
        if job is not None and job.poll() is None:  # a failed wait left it running
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        producer.close()
        admin.delete_topics([topic])
        admin.close()
        cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        cassandra_session.execute(f'DROP ROLE IF EXISTS "{role}"')
        shutil.rmtree(checkpoint.parent, ignore_errors=True)


def test_every_valid_message_becomes_one_row_equal_to_what_was_sent(
    scenario: Scenario, cassandra_session: Any, settings: config.Settings
) -> None:
    columns = ", ".join(contract.FIELD_NAMES)
    rows = cassandra_session.execute(
        f"SELECT {columns} FROM {scenario.keyspace}.{settings.cassandra.table}"
    )
    stored = [row._asdict() for row in rows]
    assert len(stored) == len(scenario.sent) == VALID_BEFORE + VALID_WHILE_DOWN
    assert {row["id"]: row for row in stored} == scenario.sent


def test_each_start_warms_up_with_synthetic_users_in_a_topic_and_table_of_its_own(
    scenario: Scenario, cassandra_session: Any, kafka_bootstrap: str
) -> None:
    """The users' table holds only what was sent (the test above); the warm-up's users are in
    its scratch table, and its topic is gone once the job is ready; the UI answered first."""
    job = scenario.job
    text = scenario.runs[0].log.read_text(errors="replace")
    warmed = re.findall(r"warmed up in [\d.]+ s: (\d+) synthetic users through topic (\S+)", text)
    assert warmed == [(str(QUICK_WARM_UP_MESSAGES), job.kafka.warm_up_topic)] * 2
    # and asked its UI what the pipeline page asks, before it was ready
    assert len(re.findall(r"the Spark UI's REST API answered in [\d.]+ s", text)) == 2
    rows = cassandra_session.execute(
        f"SELECT id, first_name, produced_at FROM {scenario.keyspace}.{job.cassandra.warm_up_table}"
    )
    assert sorted((r.id, r.first_name, r.produced_at) for r in rows) == sorted(
        (f"00000000-0000-4000-8000-{n:012d}", f"first_name {n}{parsing.SYNTHETIC_TEXT}", n)
        for n in range(QUICK_WARM_UP_MESSAGES)
    )
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert job.kafka.topic in consumer.topics()
        assert job.kafka.warm_up_topic not in consumer.topics()
    finally:
        consumer.close()


def test_the_job_writes_as_its_own_role_the_column_set_up_added(
    scenario: Scenario, cassandra_session: Any, settings: config.Settings
) -> None:
    where = f"{scenario.keyspace}.{settings.cassandra.table}"
    text = scenario.runs[0].log.read_text(errors="replace")  # both runs
    assert (
        text.count(
            f"cassandra {settings.cassandra.host}:{settings.cassandra.port} as "
            f"{scenario.role} into {where}"
        )
        == 2
    )
    assert "adding it" not in text  # set-up altered the table, the job only checked it
    rows = cassandra_session.execute(f"SELECT id, {ADDED_FIELD} FROM {where}")
    assert {row[0]: row[1] for row in rows} == {
        user_id: record[ADDED_FIELD] for user_id, record in scenario.sent.items()
    }


def test_every_malformed_message_becomes_one_dead_letter_with_its_reason(
    scenario: Scenario, cassandra_session: Any, settings: config.Settings
) -> None:
    rows = cassandra_session.execute(
        "SELECT partition, offset, raw_value, reason, schema_id, kafka_timestamp, rejected_at "
        f"FROM {scenario.keyspace}.{settings.cassandra.dead_letter_table}"
    )
    stored = {
        (row.partition, row.offset): (row.raw_value, row.reason, row.schema_id) for row in rows
    }
    assert stored == scenario.dead  # each with the schema id its header named
    assert sorted(reason for _, reason, _ in stored.values()) == sorted(r for _, r in MALFORMED)


def test_sigterm_stops_each_run_cleanly_after_a_committed_batch(scenario: Scenario) -> None:
    assert [run.returncode for run in scenario.runs] == [0, 0]
    text = scenario.runs[0].log.read_text(errors="replace")
    assert text.count("SIGTERM: stopping after the running batch") == 2
    assert len(re.findall(r"stopped after batch \d+", text)) == 2


def test_a_restarted_job_resumes_where_it_stopped(scenario: Scenario) -> None:
    first, second = scenario.runs
    total = len(scenario.sent) + len(scenario.dead)
    assert 0 < first.rows_in < VALID_BEFORE, "the first run was not stopped mid-stream"
    # Right after the last committed batch: none read twice, none skipped. (SIGTERM to the
    # job's whole group once killed the `chmod` of a checkpoint commit, and a batch was read
    # again; the JVM alone is signalled now, as by the supervisor and `docker stop`.)
    assert second.batches[0][0] == first.batches[-1][0] + 1
    assert first.rows_in + second.rows_in == total


def test_each_batch_logs_rows_in_written_and_rejected(scenario: Scenario) -> None:
    batches = [batch for run in scenario.runs for batch in run.batches]
    assert all(rows_in == written + rejected for _, rows_in, written, rejected in batches)
    assert all(batch[1] <= MESSAGES_PER_BATCH for batch in batches)
    assert sum(batch[2] for batch in batches) == len(scenario.sent)
    assert sum(batch[3] for batch in batches) == len(scenario.dead)


def test_spark_logs_each_batchs_phases_for_the_benchmark_to_read(scenario: Scenario) -> None:
    """With SPARK_BATCH_TIMINGS the log has Spark's own progress of every batch that read
    messages, as the benchmark reads it: the same batches, with the messages the job's sink
    counted in each (its Python workers' count, not Spark's), and every phase the bench prints.
    Spark counts the rows each of a batch's Spark jobs read: a batch with rejected messages
    reads its messages twice (the valid rows' write, then the dead letters'), one without once.
    A batch the first run planned but was stopped before writing is run again by the second from
    its offset log, without planning it: no latestOffset or walCommit phase then (the bench
    counts a missing phase as 0)."""
    second = scenario.runs[1]
    # At most the batch the second run begins with was planned before the restart.
    assert scenario.planned_not_committed <= {second.batches[0][0]}
    for run in scenario.runs:
        reported = [p["numInputRows"] for p in run.progress]
        counted = [rows_in * (2 if rejected else 1) for _, rows_in, _, rejected in run.batches]
        # SIGTERM may stop the job between a batch's write and Spark's report of it.
        assert reported == counted[: len(reported)] and len(counted) - len(reported) <= 1
        assert reported  # the first run is stopped after its first committed batch
        for phases, (batch_id, *_) in zip(run.progress, run.batches[: len(reported)], strict=True):
            expected = {"addBatch", "triggerExecution"}
            if batch_id not in scenario.planned_not_committed:
                expected |= {"latestOffset", "walCommit"}
            assert expected <= phases.keys(), f"batch {batch_id}"
            assert phases["triggerExecution"] >= phases["addBatch"] > 0


@pytest.mark.parametrize(
    ("env", "expected", "status"),
    [
        (
            {"CASSANDRA_PASSWORD": "not-the-password"},
            "check CASSANDRA_USERNAME and CASSANDRA_PASSWORD",
            2,  # a restart cannot fix it
        ),
        ({"CASSANDRA_PORT": "1"}, "is Cassandra up?", 1),  # worth another try
    ],
    ids=["wrong password", "cassandra down"],
)
def test_the_job_stops_at_once_naming_host_port_and_user(
    env: dict[str, str],
    expected: str,
    status: int,
    settings: config.Settings,
    cassandra_session: Any,
) -> None:
    c = config.load({**os.environ, **env}).cassandra
    job_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_CONF_DIR": str(REPO / "stack" / "spark"),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "CASSANDRA_KEYSPACE": f"never_created_{uuid.uuid4().hex[:8]}",
        **env,
    }
    result = subprocess.run(
        stream_command(free_port()), env=job_env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == status
    [line] = [line for line in result.stdout.splitlines() if "ERROR spark_stream" in line]
    assert f"Cassandra at {c.host}:{c.port} as user {c.username!r}" in line
    assert expected in line


def test_the_job_stops_naming_the_set_up_when_a_table_is_missing(
    cassandra_session: Any, settings: config.Settings, unique: str
) -> None:
    keyspace, role = f"no_set_up_{unique}", f"writer_{unique}"
    env = {
        "CASSANDRA_KEYSPACE": keyspace,
        "CASSANDRA_USERNAME": role,
        "CASSANDRA_PASSWORD": secrets.token_hex(12),
    }
    try:
        cassandra_schema.set_up(cassandra_session, config.load(env).cassandra)
        dead = f"{keyspace}.{settings.cassandra.dead_letter_table}"
        cassandra_session.execute(f"DROP TABLE {dead}")  # as if set-up predates the table
        job_env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_CONF_DIR": str(REPO / "stack" / "spark"),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **env,
        }
        result = subprocess.run(
            stream_command(free_port()), env=job_env, capture_output=True, text=True, timeout=120
        )
        tables = cassandra_schema.table_columns(
            cassandra_session, keyspace, settings.cassandra.dead_letter_table
        )
    finally:
        cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        cassandra_session.execute(f'DROP ROLE IF EXISTS "{role}"')
    assert result.returncode == 2  # a restart cannot help
    [line] = [line for line in result.stdout.splitlines() if "ERROR spark_stream" in line]
    assert f"table {dead} does not exist (CASSANDRA_DEAD_LETTER_TABLE)" in line
    assert "`./run.sh up`" in line and "cassandra-init" in line
    assert tables == {}  # the job did not create it


def test_the_python_daemon_drops_spark_archives_only_where_pyspark_is_installed(
    tmp_path: Path,
) -> None:
    from pipeline.spark_daemon import without_archives

    archives = [str(tmp_path / "pyspark.zip"), str(tmp_path / "spark-core_2.12-3.5.7.jar")]
    site = tmp_path / "site-packages"
    assert without_archives([*archives, str(site)]) == [*archives, str(site)]  # nothing there
    (site / "pyspark").mkdir(parents=True)
    (site / "py4j").mkdir()
    assert without_archives([*archives, str(site), "/opt/app"]) == [str(site), "/opt/app"]


def test_the_python_daemon_imports_what_a_new_worker_needs_and_passes_over_what_is_missing() -> (
    None
):
    """Every module of ``WORKER_IMPORTS`` is installed where the job runs (a renamed one would
    be passed over silently, and new workers would import it in their first batch again)."""
    code = (
        "import sys; from pipeline.spark_daemon import WORKER_IMPORTS, preload; "
        "got = preload((*WORKER_IMPORTS, 'no_such_module_here')); "
        "print(','.join(got)); print(all(name in sys.modules for name in got))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    imported, loaded = done.stdout.split()
    from pipeline.spark_daemon import WORKER_IMPORTS

    assert imported.split(",") == list(WORKER_IMPORTS)
    assert loaded == "True"


def test_the_python_daemon_freezes_its_imports_out_of_the_workers_collections() -> None:
    """What the daemon imported before it forks is frozen: a worker's ``gc.collect()`` after
    each task (pyspark's daemon) walks only what that task made, not the imports' objects."""
    code = (
        "import gc; from pipeline.spark_daemon import prepare; prepare(); "
        "print(gc.get_freeze_count(), len(gc.get_objects()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    frozen, tracked = map(int, done.stdout.split())
    assert frozen > 50_000  # pandas, pyarrow, pyspark and the parser
    assert tracked < frozen / 20, (frozen, tracked)  # what a collection still walks


def test_a_workers_socket_sends_and_acknowledges_at_once() -> None:
    """The daemon's workers run each task on a socket without Nagle's delay (and, on Linux,
    with immediate acknowledgements): the options are on the socket the task is given."""
    from pipeline.spark_daemon import QUICKACK, without_delays

    seen: list[tuple[int, int | None, bool]] = []

    def task(sock: socket.socket, authenticated: bool) -> int:
        nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        quickack = None if QUICKACK is None else sock.getsockopt(socket.IPPROTO_TCP, QUICKACK)
        seen.append((nodelay, quickack, authenticated))
        return 7

    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()):
            accepted, _ = server.accept()
            with accepted:
                assert without_delays(task)(accepted, True) == 7
    assert seen == [(1, None if QUICKACK is None else 1, True)]


def test_the_users_job_daemon_holds_pandas_and_arrow_before_any_worker_asks() -> None:
    """The user's stream job forks its Python workers from a daemon that has pandas's and
    pyarrow's libraries loaded: a worker started after an idle minute does not load them."""
    from script.procs import proc_stats, process_tree
    from script.services import STREAM

    pid = STREAM.pid()
    if pid is None:
        pytest.skip("the user's stream job is not running (`./run.sh stream start`)")
    tree = set(process_tree(pid))
    parent = {p: int(fields[1]) for p, fields in proc_stats() if p in tree}

    def python_daemon(p: int) -> bool:
        try:
            return b"pipeline.spark_daemon" in Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            return False

    daemons = [p for p in tree if python_daemon(p) and not python_daemon(parent.get(p, 0))]
    assert len(daemons) == 1, f"the job's Python daemon: {daemons}"
    maps = Path(f"/proc/{daemons[0]}/maps").read_text()
    assert "/pandas/_libs/" in maps and "libarrow" in maps


def test_a_write_cassandra_refuses_as_too_large_is_retried_naming_the_limit_to_raise() -> None:
    from spark_stream import write_failure

    refused = RuntimeError(
        "An error occurred while calling z:org.apache.spark.sql.Dataset.ofRows.\n"
        "Caused by: com.datastax.oss.driver.api.core.servererrors.InvalidQueryException: "
        "Batch too large"
    )
    assert "batch_size_fail_threshold: 640KiB" in write_failure(refused)
    other = RuntimeError("An error occurred while calling z:...\nCaused by: timeout")
    assert write_failure(other) == "An error occurred while calling z:..."


def test_a_batch_cassandra_keeps_refusing_opens_a_new_session_ever_more_rarely() -> None:
    from spark_stream import RETRY_DELAYS, renews_session

    hour = 3600 // RETRY_DELAYS[-1]  # attempts in an hour of retrying
    renewed = [a for a in range(1, int(hour) + 1) if renews_session(a)]
    assert renewed[:4] == [1, 2, 4, 8] and len(renewed) == 10
