"""The cluster topology (STACK_TOPOLOGY=cluster), on a cluster of the suite's own: 3 Cassandra
nodes, 3 Kafka brokers and a Spark master with 2 workers on the loopback addresses
127.0.0.11-13, in a state folder of its own, so that it stands beside the user's stack, whatever
its topology. It is brought up by `./run.sh up`, and its nodes are killed by the `./run.sh
faults` scenarios, each SIGKILLing one node mid-stream at 1,000 users/s: every user sent is in
Cassandra exactly once, and the node rejoins and catches up."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import config
from script.harness.side import free_port

REPO = Path(__file__).resolve().parents[1]
HOSTS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
NODES = [
    "zookeeper",
    "kafka",
    "kafka-2",
    "kafka-3",
    "cassandra",
    "cassandra-2",
    "cassandra-3",
    "spark-master",
    "spark-worker-1",
    "spark-worker-2",
]

# a 3-node cluster of its own: `./run.sh test --all`
pytestmark = [pytest.mark.long, pytest.mark.usefixtures("user_pipeline_stays_healthy")]


def _jmx_ports() -> int:
    """The first of three consecutive free ports (Cassandra node n's JMX: this + n - 1)."""
    while True:
        first = free_port()
        if first < 65000 and all(_free(first + n) for n in (1, 2)):
            return first


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def script(env: dict[str, str], *arguments: str, timeout: float = 900) -> str:
    """`./run.sh ARGUMENTS` against the suite's cluster; its output, or the test fails."""
    done = subprocess.run(
        [sys.executable, "-m", "script", *arguments],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"./run.sh {' '.join(arguments)}:\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The environment of a cluster of the suite's own, up; stopped and removed afterwards."""
    state = tmp_path_factory.mktemp("cluster") / ".stack"
    state.mkdir()
    user_state = config.state_dir()
    for shared in ("venv", "jars"):  # the user's downloads, not a second copy
        (state / shared).symlink_to(user_state / shared)
    env = {
        **os.environ,
        "STACK_STATE_DIR": str(state),
        "STACK_TOPOLOGY": "cluster",
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(f"{host}:9092" for host in HOSTS),
        "CASSANDRA_HOST": ",".join(HOSTS),
        "SPARK_MASTER": f"spark://{HOSTS[0]}:7077",
        "ZOOKEEPER_PORT": str(free_port()),
        "CASSANDRA_JMX_PORT": str(_jmx_ports()),
        "SPARK_MASTER_UI_PORT": str(free_port()),
    }
    try:
        script(env, "up", *NODES)
        yield env
    finally:
        subprocess.run(
            [sys.executable, "-m", "script", "down"], env=env, cwd=REPO, capture_output=True
        )
        shutil.rmtree(state.parent, ignore_errors=True)


def test_the_cluster_runs_every_node_and_replicates_the_topic_and_the_keyspace(
    cluster: dict[str, str],
) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    from pipeline import cassandra_schema

    settings = config.load(cluster)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        brokers = admin.describe_cluster()["brokers"]
        (topic,) = admin.describe_topics([settings.kafka.topic])
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.kafka.topic)]
        )
    finally:
        admin.close()
    assert sorted((b["host"], b["port"]) for b in brokers) == [(h, 9092) for h in HOSTS]
    assert {len(p["replica_nodes"]) for p in topic["partitions"]} == {3}
    assert {len(p["isr_nodes"]) for p in topic["partitions"]} == {3}
    min_isr = configs["topic"][settings.kafka.topic]["min.insync.replicas"]["value"]
    assert min_isr == "2"

    session = cassandra_schema.connect(config.cassandra_admin(cluster))
    try:
        ring = {h.address for h in session.cluster.metadata.all_hosts() if h.is_up}
        assert ring == set(HOSTS)
        tokens = session.cluster.metadata.token_map.token_to_host_owner.values()
        assert {h.address for h in tokens} == set(HOSTS)  # each owns part of the ring
        assert cassandra_schema.replication_factor(session, settings.cassandra.keyspace) == 3
        assert cassandra_schema.replication_factor(session, "system_auth") == 3
    finally:
        session.cluster.shutdown()

    status = script(cluster, "status", timeout=120)
    status = status[status.index("CLUSTER") :]
    for name in ("kafka", "kafka-2", "kafka-3", "cassandra", "cassandra-2", "cassandra-3"):
        assert re.search(rf"^  {name} +\S+ +.+ up\b", status, re.M), (name, status)
    assert "3 partitions x 3 replicas, min.insync.replicas 2; under-replicated 0" in status
    assert f"keyspace {settings.cassandra.keyspace}: 3 replicas (system_auth 3)" in status
    assert "workers alive 2 of 2" in status


def _scenario(cluster: dict[str, str], name: str) -> dict[str, Any]:
    output = script(cluster, "faults", "--scenarios", name, "--short", timeout=1200)
    results = re.search(r"^JSON: (\S+)$", output, re.M)
    assert results, output[-3000:]
    (outcome,) = json.loads(Path(results.group(1)).read_text())
    assert not outcome["error"], outcome["error"]
    return outcome


@pytest.mark.parametrize(
    ("scenario", "rejoined"),
    [
        ("cassandra-node", "every hint for it delivered"),
        ("cassandra-seed", "every hint for it delivered"),
        ("kafka-broker", "replicas in sync again"),
        ("spark-worker", "workers alive and the job's"),
    ],
)
def test_one_node_killed_mid_stream_loses_and_duplicates_nothing_and_rejoins(
    cluster: dict[str, str], scenario: str, rejoined: str
) -> None:
    outcome = _scenario(cluster, scenario)
    assert outcome["tried"] == 1
    assert outcome["sent"] > 10_000 and outcome["rows"] == outcome["sent"]
    assert (outcome["lost"], outcome["extra"], outcome["dead_letters"]) == (0, 0, 0)
    assert outcome["recover_s"] is not None  # rows went on being written, nobody acted
    assert rejoined in outcome["note"], outcome["note"]


def test_a_worker_more_is_a_setting(cluster: dict[str, str]) -> None:
    """SPARK_WORKERS=3: `up` starts a third worker, and the master counts it."""
    more = {**cluster, "SPARK_WORKERS": "3"}
    try:
        script(more, "up", "spark-worker-3")
        status = script(more, "status", timeout=120)
        assert "workers alive 3 of 3" in status, status
    finally:
        script(more, "down", "spark-worker-3")
    assert "workers alive 2 of 2" in script(cluster, "status", timeout=120)


def test_the_whole_ring_stopped_and_started_again_logs_in_and_keeps_its_rows(
    cluster: dict[str, str],
) -> None:
    """`./run.sh down` then `up` of every Cassandra node: the seed comes back alone first, and
    the default superuser's login needs a quorum of system_auth's three replicas."""
    from pipeline import cassandra_schema

    settings = config.load(cluster)
    table = f"{settings.cassandra.keyspace}.{settings.cassandra.table}"

    def rows() -> int:
        session = cassandra_schema.connect(config.cassandra_admin(cluster))
        try:
            return session.execute(f"SELECT COUNT(*) FROM {table}", timeout=60).one()[0]
        finally:
            session.cluster.shutdown()

    session = cassandra_schema.connect(config.cassandra_admin(cluster))
    try:
        session.execute(f"INSERT INTO {table} (id, email) VALUES ('ring-restart', 'r@example.com')")
    finally:
        session.cluster.shutdown()
    before = rows()
    ring = ["cassandra", "cassandra-2", "cassandra-3"]
    script(cluster, "down", *ring)
    script(cluster, "up", *ring)
    assert rows() == before >= 1
    status = script(cluster, "status", timeout=120)
    assert f"keyspace {settings.cassandra.keyspace}: 3 replicas (system_auth 3)" in status
