"""Shared fixtures: the real local-stack services, never mocks.

`./run.sh test` starts the stack before pytest runs. A fixture whose service does not answer
fails the test with the service, its port and its log file; nothing is skipped.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline import config  # noqa: E402

LOGS = config.state_dir() / "logs"

# Spark's Python workers run this interpreter, which has the parser's packages (msgspec, pyarrow).
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
# What the suite writes under .stack/ is private, as when `./run.sh test` runs it.
os.umask(0o077)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all",
        action="store_true",
        help="also the long tests (cluster topology, soak, fault scenarios): what CI runs",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --all and without a test named on the command line, the default set: every
    behaviour a user relies on, without the tests marked `long`."""
    named = config.args_source != pytest.Config.ArgsSource.TESTPATHS
    if config.getoption("--all") or named:
        return
    long = [item for item in items if item.get_closest_marker("long")]
    if long:
        config.hook.pytest_deselected(items=long)
        items[:] = [item for item in items if not item.get_closest_marker("long")]


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, at any depth (function-level imports too),
    with ``from M import N`` also giving ``M.N`` (N may be a module)."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def require_port(service: str, host: str, port: int, log: str) -> None:
    """Fail (not skip) with the fix when ``service`` does not accept TCP on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return
    except OSError as exc:
        pytest.fail(
            f"{service} is not answering on {host}:{port} ({exc}). Start the stack with "
            f"`./run.sh up` and read {LOGS / log}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def settings() -> config.Settings:
    return config.load()


@pytest.fixture(scope="session")
def kafka_bootstrap(settings: config.Settings) -> str:
    """The local Kafka broker's bootstrap address, checked to be listening."""
    host, _, port = settings.kafka.bootstrap_servers.split(",")[0].rpartition(":")
    require_port("Kafka", host, int(port), "kafka.log")
    return settings.kafka.bootstrap_servers


@pytest.fixture(scope="session")
def schema_registry(settings: config.Settings) -> str:
    """SCHEMA_REGISTRY_URL, checked to answer the Confluent REST API."""
    import requests

    url = settings.registry.url
    try:
        requests.get(f"{url}/subjects", timeout=3).raise_for_status()
    except requests.RequestException as exc:
        pytest.fail(
            f"no schema registry at SCHEMA_REGISTRY_URL={url} ({exc}). Start the stack with "
            f"`./run.sh up` (or `python -m script up schema-registry`) and read "
            f"{LOGS / 'schema-registry.log'}",
            pytrace=False,
        )
    return url


def cassandra_cluster(c: config.CassandraSettings, password: str | None = None):
    """A cassandra-driver Cluster for the configured Cassandra, logged in as ``c.username``.

    It tries to reconnect every second, so a session sees a restarted Cassandra as soon as it
    answers again. ``password`` replaces the configured one (to show a wrong one is refused).
    """
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster
    from cassandra.policies import ConstantReconnectionPolicy

    return Cluster(
        [c.host],
        port=c.port,
        auth_provider=PlainTextAuthProvider(
            c.username, c.password if password is None else password
        ),
        protocol_version=5,
        reconnection_policy=ConstantReconnectionPolicy(1.0),
    )


@pytest.fixture(scope="session")
def cassandra_session(settings: config.Settings):
    """A cassandra-driver session logged in as the admin (CASSANDRA_ADMIN_USERNAME), which
    creates the tests' keyspaces and roles; the stream job's role may not."""
    c = config.cassandra_admin()
    require_port("Cassandra", c.host, c.port, "cassandra.log")
    cluster = cassandra_cluster(c)
    session = cluster.connect()
    yield session
    cluster.shutdown()


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the tests that run transforms on static DataFrames."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture
def topic(kafka_bootstrap: str, schema_registry: str, unique: str):
    """A fresh topic name (its schema subject is fresh too: a producer run publishes one); the
    topic is deleted after the test."""
    from kafka import KafkaAdminClient

    name = f"test_{unique}"
    yield name
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        if name in admin.list_topics():
            admin.delete_topics([name])
    finally:
        admin.close()


def topic_end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> the offset the next message of ``topic`` will get (its end offset now)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"Kafka has no topic {topic}"
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, until: dict[int, int], timeout: float = 60) -> list:
    """Every message of ``topic`` from the start of each partition up to ``until`` (end offsets
    taken once the producer finished), so a duplicate or a stray message is always seen."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    wanted = {TopicPartition(topic, p): end for p, end in until.items() if end > 0}
    messages = []
    try:
        consumer.assign(list(wanted))
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in wanted.items()):
            if time.monotonic() > deadline:
                pytest.fail(f"{topic}: read {len(messages)} messages, not up to {until}")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                messages += [m for m in batch if m.offset < wanted[tp]]
    finally:
        consumer.close()
    return messages


@pytest.fixture(scope="session")
def airflow_client(settings: config.Settings):
    """A logged-in client of the local Airflow's REST API (the stack's admin login)."""
    from script.airflow_api import AirflowClient
    from script.services.airflow import airflow_admin

    port = settings.stack.airflow_port
    require_port("Airflow API server", "127.0.0.1", port, "airflow-api-server.log")
    user, password = airflow_admin()
    return AirflowClient(settings.stack.airflow_url, user, password)


def count_when_ready(session, keyspace: str, table: str) -> int:
    """Rows in ``keyspace.table``, 0 while a job that is creating it has not finished.

    A new table can be listed in system_schema a moment before queries can use it: meanwhile
    Cassandra answers "does not exist" or "Unknown CF"; both mean "not yet".
    """
    from cassandra import InvalidRequest
    from cassandra.cluster import NoHostAvailable

    try:
        return session.execute(f"SELECT COUNT(*) FROM {keyspace}.{table}").one()[0]
    except (InvalidRequest, NoHostAvailable) as exc:
        if "does not exist" in str(exc) or "Unknown CF" in str(exc):
            return 0
        raise


@pytest.fixture
def unique() -> str:
    """A short random suffix so each test gets its own topic, keyspace or table."""
    return uuid.uuid4().hex[:10]


# py4j logs "Closing down clientserver connection" from __del__ at interpreter exit, after
# pytest has closed its capture streams; keep it quiet.
logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def compose() -> dict:
    """docker-compose.yml as Compose resolves it once ./run-docker.sh created .env."""
    from compose_helpers import compose_with

    return compose_with()


# How long the user's stream job may commit no batch while it has a lag, after a test, before
# the test fails: a restart's warm-up under load and its backlog fit several times over.
CATCH_UP_PATIENCE = 300.0
# The test after which the user's job did not catch up: later tests say so at once instead of
# each waiting as long again (a suite that waits where it should fail ends past CI's bound).
_behind: list[str] = []


@pytest.fixture
def user_pipeline_stays_healthy(settings: config.Settings, request: pytest.FixtureRequest):
    """Afterwards every service is up again, and a stream job that was running has caught up."""
    from script import stack
    from script.services import STACK, STREAM

    main_job_was_running = STREAM.pid() is not None
    yield
    for s in STACK:
        stack.start_service(s)
    if main_job_was_running:
        assert STREAM.pid(), "the user's stream job did not survive"
        wait_until_caught_up(settings, request.node.name)


def wait_until_caught_up(settings: config.Settings, test: str) -> None:
    """Until the user's stream job has no lag; fails when it committed no batch for
    ``CATCH_UP_PATIENCE`` seconds while behind, naming its supervisor's view and its log."""
    from script import supervise
    from script.pipeline_status import stream_progress
    from script.services.stream import SUPERVISOR_STATE

    if _behind:
        pytest.fail(f"the user's stream job has been behind since {_behind[0]}")
    last_batch, moved = None, time.monotonic()
    while (progress := stream_progress(settings)).lag:
        if progress.batch != last_batch:
            last_batch, moved = progress.batch, time.monotonic()
        elif time.monotonic() - moved > CATCH_UP_PATIENCE:
            _behind.append(test)
            state = supervise.read_state(SUPERVISOR_STATE)
            log = (LOGS / "spark-stream.log").read_text(errors="replace").splitlines()[-40:]
            pytest.fail(
                f"the user's stream job did not catch up: lag {progress.lag:,}, no batch "
                f"committed for {CATCH_UP_PATIENCE:.0f} s (last {last_batch}); supervisor "
                f"{state}; its log's end:\n" + "\n".join(log)
            )
        time.sleep(2)


SCREENSHOTS = LOGS / "screenshots"


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium from Debian (script/browser.py), one for the session."""
    from script.browser import chromium

    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, request):
    """A fresh browser page; its last view is saved as `.stack/logs/screenshots/TEST.png`."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    yield page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{request.node.name}.png", full_page=True)
    context.close()
