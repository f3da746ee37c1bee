"""Shared fixtures: the real local-stack services, never mocks.

`./run.sh test` starts the stack before pytest runs. A fixture whose service does not answer
fails the test with the service, its port and its log file; nothing is skipped.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline import config  # noqa: E402

LOGS = REPO / ".stack" / "logs"

# Spark's Python workers run this interpreter, which has the parser's packages (msgspec, pyarrow).
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


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
def cassandra_session(settings: config.Settings):
    """A cassandra-driver session logged in as the configured superuser."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster

    c = settings.cassandra
    require_port("Cassandra", c.host, c.port, "cassandra.log")
    cluster = Cluster(
        [c.host],
        port=c.port,
        auth_provider=PlainTextAuthProvider(c.username, c.password),
        protocol_version=5,
    )
    session = cluster.connect()
    yield session
    cluster.shutdown()


@pytest.fixture(scope="session")
def airflow_client():
    """A logged-in client of the local Airflow's REST API (the stack's admin login)."""
    from script import stack
    from script.airflow_api import AirflowClient

    require_port("Airflow API server", "127.0.0.1", 8080, "airflow-api-server.log")
    user, password = stack.airflow_admin()
    return AirflowClient("http://127.0.0.1:8080", user, password)


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
