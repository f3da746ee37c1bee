"""docker-compose.cluster.yml, checked without a Docker engine: merged into docker-compose.yml the
way Compose merges ``-f`` files (tests/compose_helpers.merge_compose), it runs three Cassandra
nodes, three Kafka brokers and two Spark workers, every service agrees on the pipeline's
settings, starts after what it needs, and has a memory limit and a healthcheck.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_helpers import (
    AIRFLOW_COMPONENTS,
    CLUSTER_FILE,
    FAKE_KAFKA_TOPICS,
    cluster_with,
    compose_text,
    compose_with,
    environment,
    is_named_volume,
    is_one_shot,
    jvm_heap,
    memory_totals,
    merge_compose,
    mounts,
    published_ports,
    raw_cluster,
    raw_compose,
    run,
    services,
    start_order,
    to_bytes,
    tool,
)

from pipeline import config

# Who reads each of the pipeline's settings the cluster changes (the DAG's producer runs in the
# Airflow services; kafka-init and cassandra-init create the topic and the keyspace).
KAFKA_READERS = {*AIRFLOW_COMPONENTS, "airflow-init", "kafka-init", "spark-stream", "monitor"}
CASSANDRA_READERS = {"cassandra-init", "spark-stream", "monitor"}
CLUSTER_VARIABLES = {
    "KAFKA_BOOTSTRAP_SERVERS": KAFKA_READERS,
    "KAFKA_REPLICATION_FACTOR": KAFKA_READERS,
    "KAFKA_MIN_INSYNC_REPLICAS": KAFKA_READERS,
    "CASSANDRA_HOST": CASSANDRA_READERS,
    "CASSANDRA_REPLICATION_FACTOR": CASSANDRA_READERS,
    "CASSANDRA_WRITE_CONSISTENCY": CASSANDRA_READERS,
    "SPARK_BATCH_PARTITIONS": {"spark-stream"},
    "SPARK_EXECUTOR_MEMORY": {"spark-stream"},
}
# Replicas that acknowledge a write at each Cassandra consistency level, of `rf` replicas.
ACKS = {
    "ONE": lambda rf: 1,
    "TWO": lambda rf: 2,
    "THREE": lambda rf: 3,
    "QUORUM": lambda rf: rf // 2 + 1,
    "LOCAL_QUORUM": lambda rf: rf // 2 + 1,
    "EACH_QUORUM": lambda rf: rf // 2 + 1,
    "ALL": lambda rf: rf,
}


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    """The merged topology as Compose resolves it once ./run-docker.sh created .env."""
    return cluster_with()


def added(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services the cluster file adds to the base file's."""
    return {n: s for n, s in services(cluster).items() if n not in raw_compose()["services"]}


def cassandra_nodes(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services(doc).items() if s["image"].startswith("cassandra:")}


def brokers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        n: s
        for n, s in services(doc).items()
        if s["image"].startswith("confluentinc/cp-server:") and not is_one_shot(s)
    }


def listeners(broker: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Advertised listener name -> (host, port)."""
    result = {}
    for item in environment(broker)["KAFKA_ADVERTISED_LISTENERS"].split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        result[name] = (host, int(port))
    return result


def internal_listeners(doc: dict[str, Any]) -> set[str]:
    return {"{}:{}".format(*listeners(b)["PLAINTEXT"]) for b in brokers(doc).values()}


def waits_for(service: dict[str, Any], condition: str = "service_healthy") -> set[str]:
    return {
        n
        for n, rule in (service.get("depends_on") or {}).items()
        if rule == {"condition": condition}
    }


# ---- The merge itself ----


def test_the_merge_follows_composes_rules() -> None:
    base = {
        "services": {
            "a": {
                "image": "x:1",
                "command": ["run", "old"],
                "environment": ["KEEP=1", "CHANGE=old"],
                "depends_on": ["b"],
                "ports": ["127.0.0.1:80:80", "127.0.0.1:81:81"],
                "volumes": ["data:/data", "./conf:/conf"],
                "dns": ["1.1.1.1"],
                "healthcheck": {"test": ["CMD", "old"], "interval": "5s"},
            }
        },
        "volumes": {"data": None},
    }
    later = {
        "services": {
            "a": {
                "command": ["run"],
                "environment": {"CHANGE": "new", "ADD": "2"},
                "depends_on": {"c": {"condition": "service_healthy"}},
                "ports": ["127.0.0.1:80:80", "127.0.0.1:82:82"],
                "volumes": ["other:/data"],
                "dns": ["8.8.8.8"],
                "healthcheck": {"test": ["CMD", "new"]},
            },
            "c": {"image": "y:1"},
        },
        "volumes": {"other": None},
    }
    merged = merge_compose(base, later)
    a = merged["services"]["a"]
    assert a["image"] == "x:1" and a["command"] == ["run"]
    assert environment(a) == {"KEEP": "1", "CHANGE": "new", "ADD": "2"}
    assert a["depends_on"] == {
        "b": {"condition": "service_started"},
        "c": {"condition": "service_healthy"},
    }
    assert a["ports"] == ["127.0.0.1:80:80", "127.0.0.1:81:81", "127.0.0.1:82:82"]
    assert a["volumes"] == ["other:/data", "./conf:/conf"]
    assert a["dns"] == ["1.1.1.1", "8.8.8.8"]
    assert a["healthcheck"] == {"test": ["CMD", "new"], "interval": "5s"}
    assert set(merged["services"]) == {"a", "c"} and set(merged["volumes"]) == {"data", "other"}
    assert base["services"]["a"]["command"] == ["run", "old"], "the inputs stay as they were"


def test_cluster_file_alone_and_merged_are_valid_against_the_compose_spec(tmp_path: Path) -> None:
    merged = tmp_path / "merged.yml"
    merged.write_text(yaml.safe_dump(merge_compose(raw_compose(), raw_cluster()), sort_keys=False))
    for path in (CLUSTER_FILE, merged):
        result = run(
            [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)]
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_cluster_files_defaults_are_the_base_files_and_secrets_have_none() -> None:
    """A variable means the same in both files; the cluster's own sizes are the exception."""
    base_defaults = dict(re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", compose_text()))
    topology = {"SPARK_WORKERS", "SPARK_BATCH_PARTITIONS"}
    found = re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)(:?[-?]?)([^}]*)\}", compose_text(CLUSTER_FILE))
    assert found
    for name, op, default in found:
        if re.search(r"PASSWORD|SECRET|FERNET", name):
            assert op == ":?", f"{name} is a secret: write ${{{name}:?...}}, never a default"
        elif op == ":-" and name not in topology:
            assert default == base_defaults.get(name), f"{name}: {default!r} differs from the base"
    assert "version" not in raw_cluster(), "the top-level `version:` key is obsolete"


# ---- Cassandra ----


def test_cassandra_runs_three_nodes_that_find_the_ring_through_the_seed(
    cluster: dict[str, Any],
) -> None:
    nodes = cassandra_nodes(cluster)
    assert set(nodes) == {"cassandra", "cassandra-2", "cassandra-3"}
    seeds = {environment(s).get("CASSANDRA_SEEDS") for s in nodes.values()}
    assert seeds == {"cassandra"}, f"every node must name the one seed: {seeds}"
    assert len({environment(s)["CASSANDRA_CLUSTER_NAME"] for s in nodes.values()}) == 1
    data = {
        n: dict((t, s) for s, t in mounts(node))["/var/lib/cassandra"] for n, node in nodes.items()
    }
    assert len(set(data.values())) == len(nodes), f"each node needs its own volume: {data}"
    assert all(is_named_volume(v) and v in cluster["volumes"] for v in data.values()), data


def test_cassandra_nodes_join_one_at_a_time_after_the_seed(cluster: dict[str, Any]) -> None:
    """Cassandra refuses two nodes bootstrapping at once: each waits for the one before."""
    nodes = cassandra_nodes(cluster)
    previous = {n: waits_for(s) & set(nodes) for n, s in nodes.items()}
    order = ["cassandra"]
    assert previous["cassandra"] == set(), "the seed starts first"
    while len(order) < len(nodes):
        following = [n for n, before in previous.items() if before == {order[-1]}]
        assert len(following) == 1, f"after {order[-1]} must come exactly one node: {following}"
        order.append(following[0])
    for name, node in nodes.items():
        for other in previous[name]:
            assert node["depends_on"][other] == {"condition": "service_healthy"}


def test_the_other_cassandra_nodes_are_configured_as_the_seed(cluster: dict[str, Any]) -> None:
    """Same image, authentication switched on the same way, the same healthcheck and heap."""
    nodes = cassandra_nodes(cluster)
    seed = nodes.pop("cassandra")
    for name, node in nodes.items():
        for key in ("image", "entrypoint", "healthcheck", "mem_limit", "networks", "restart"):
            assert node.get(key) == seed.get(key), f"{name}: {key} differs from the seed's"
        assert environment(node) == environment(seed), f"{name}: environment differs"
        assert node["hostname"] == node["container_name"] == name
        assert not node.get("ports"), f"{name}: the host reaches the ring through the seed"


def test_the_keyspace_has_a_replica_on_every_node_and_is_made_once_all_joined(
    cluster: dict[str, Any],
) -> None:
    nodes = cassandra_nodes(cluster)
    init = services(cluster)["cassandra-init"]
    env = environment(init)
    assert config.load(env).cassandra.replication_factor == len(nodes)
    assert waits_for(init) == set(nodes), "cassandra-init must wait for every node"
    assert set(env["CASSANDRA_HOST"].split(",")) == set(nodes)
    # What set-up creates, the job reads: the same contact points, keyspace and login.
    job = environment(services(cluster)["spark-stream"])
    assert config.load(env).cassandra == config.load(job).cassandra


def test_writes_are_acknowledged_by_more_than_one_replica_and_survive_one_node_down(
    cluster: dict[str, Any],
) -> None:
    env = environment(services(cluster)["spark-stream"])
    rf = int(env["CASSANDRA_REPLICATION_FACTOR"])
    acks = ACKS[env["CASSANDRA_WRITE_CONSISTENCY"]](rf)
    assert 1 < acks < rf, (env["CASSANDRA_WRITE_CONSISTENCY"], rf)


# ---- Kafka ----


def test_kafka_runs_three_brokers_with_distinct_ids_on_the_one_zookeeper(
    cluster: dict[str, Any],
) -> None:
    found = brokers(cluster)
    assert set(found) == {"broker", "broker-2", "broker-3"}
    envs = {n: environment(b) for n, b in found.items()}
    ids = [e["KAFKA_BROKER_ID"] for e in envs.values()]
    assert len(set(ids)) == len(ids), f"broker ids must differ: {ids}"
    zookeeper = environment(services(cluster)["zookeeper"])["ZOOKEEPER_CLIENT_PORT"]
    assert {e["KAFKA_ZOOKEEPER_CONNECT"] for e in envs.values()} == {f"zookeeper:{zookeeper}"}
    for name, broker in found.items():
        assert listeners(broker)["PLAINTEXT"] == (name, 29092), name
        data = dict((t, s) for s, t in mounts(broker))["/var/lib/kafka/data"]
        assert is_named_volume(data) and data in cluster["volumes"], name
        probe = " ".join(broker["healthcheck"]["test"])
        assert f"--bootstrap-server {name}:29092 " in probe, f"{name} must probe itself: {probe}"
        assert waits_for(broker) == {"zookeeper"}, f"{name}: the brokers start together"
    volumes = [dict((t, s) for s, t in mounts(b))["/var/lib/kafka/data"] for b in found.values()]
    assert len(set(volumes)) == len(volumes), volumes


def test_the_other_brokers_are_configured_as_the_first(cluster: dict[str, Any]) -> None:
    found = brokers(cluster)
    first = found.pop("broker")
    own = {"KAFKA_BROKER_ID", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS"}
    expected = {k: v for k, v in environment(first).items() if k not in own}
    for name, broker in found.items():
        env = {k: v for k, v in environment(broker).items() if k not in own}
        assert env == expected, f"{name}: {set(env.items()) ^ set(expected.items())}"
        for key in ("image", "mem_limit", "networks", "restart"):
            assert broker.get(key) == first.get(key), f"{name}: {key} differs"


def test_every_broker_replicates_three_times_and_needs_two_in_sync(
    cluster: dict[str, Any],
) -> None:
    found = brokers(cluster)
    count = len(found)
    replicated = (
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_CONFLUENT_LICENSE_TOPIC_REPLICATION_FACTOR",
        "KAFKA_CONFLUENT_BALANCER_TOPIC_REPLICATION_FACTOR",
        "CONFLUENT_METRICS_REPORTER_TOPIC_REPLICAS",
    )
    for name, broker in found.items():
        env = environment(broker)
        for key in replicated:
            assert int(env[key]) == count, f"{name}: {key}={env[key]}, not {count}"
        for key in ("KAFKA_MIN_INSYNC_REPLICAS", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
            assert int(env[key]) == count - 1, f"{name}: {key}={env[key]}, not {count - 1}"
        reporter = set(env["CONFLUENT_METRICS_REPORTER_BOOTSTRAP_SERVERS"].split(","))
        assert reporter == internal_listeners(cluster), name


def run_kafka_init(
    init: dict[str, Any], tmp_path: Path, **fake: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """kafka-init's script against the fake kafka-topics: the result and the create call's words."""
    (tmp_path / "kafka-topics").write_text(FAKE_KAFKA_TOPICS)
    (tmp_path / "kafka-topics").chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**environment(init), "PATH": f"{tmp_path}:{os.environ['PATH']}", "FAKE_LOG": str(log)}
    result = run(["bash", "-c", init["entrypoint"][2]], env={**env, **fake})
    return result, log.read_text().splitlines()[0].split()


def test_kafka_init_creates_the_topic_on_every_broker_with_three_replicas_two_in_sync(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    init = services(cluster)["kafka-init"]
    assert waits_for(init) == set(brokers(cluster)), "a topic of 3 replicas needs 3 brokers"
    result, create = run_kafka_init(init, tmp_path)
    assert result.returncode == 0, result.stderr
    flags = dict(zip(create, create[1:], strict=False))
    assert "--create" in create and "--if-not-exists" in create, create
    assert set(flags["--bootstrap-server"].split(",")) == internal_listeners(cluster)
    assert int(flags["--replication-factor"]) == len(brokers(cluster))
    min_isr = environment(services(cluster)["broker"])["KAFKA_MIN_INSYNC_REPLICAS"]
    assert flags["--config"] == f"min.insync.replicas={min_isr}"


def test_kafka_init_stops_on_a_topic_that_another_topology_created(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    """--if-not-exists keeps a one-replica topic from the base file's single broker."""
    result, _ = run_kafka_init(services(cluster)["kafka-init"], tmp_path, FAKE_REPLICAS="1")
    assert result.returncode != 0
    assert "has 1 replicas, not 3" in result.stderr and "down -v" in result.stderr, result.stderr


def test_the_registry_and_control_center_use_every_broker(cluster: dict[str, Any]) -> None:
    registry = environment(services(cluster)["schema-registry"])
    center = environment(services(cluster)["control-center"])
    every = internal_listeners(cluster)
    assert set(registry["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"].split(",")) == every
    assert set(center["CONTROL_CENTER_BOOTSTRAP_SERVERS"].split(",")) == every
    assert int(registry["SCHEMA_REGISTRY_KAFKASTORE_TOPIC_REPLICATION_FACTOR"]) == len(every)
    assert int(center["CONTROL_CENTER_REPLICATION_FACTOR"]) == len(every)
    assert int(center["CONFLUENT_METRICS_TOPIC_REPLICATION"]) == len(every)


def test_each_broker_advertises_to_the_host_the_port_it_publishes(
    cluster: dict[str, Any],
) -> None:
    published = published_ports(cluster)  # fails on a host port published twice
    for name, broker in brokers(cluster).items():
        host, port = listeners(broker)["PLAINTEXT_HOST"]
        assert host == "localhost" and published[port][0] == name, (name, port)
        bound = environment(broker)["KAFKA_LISTENERS"].split(",")
        assert f"PLAINTEXT_HOST://0.0.0.0:{port}" in bound, f"{name} listens on {bound}"
        assert published[port][2] == port, f"{name}: the container's port must be {port} too"
    for port, (name, host_ip, _) in published.items():
        assert host_ip == "127.0.0.1", f"{name} publishes {port} on {host_ip or 'every address'}"


# ---- The pipeline's settings ----


def test_each_pipeline_setting_has_one_value_in_every_service_that_reads_it(
    cluster: dict[str, Any],
) -> None:
    for variable, readers in CLUSTER_VARIABLES.items():
        values = {n: environment(services(cluster)[n]).get(variable) for n in readers}
        assert None not in values.values(), f"{variable} is missing in {values}"
        assert len(set(values.values())) == 1, f"{variable} differs: {values}"


def test_the_pipeline_settings_describe_the_cluster(cluster: dict[str, Any]) -> None:
    job = environment(services(cluster)["spark-stream"])
    assert set(job["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == internal_listeners(cluster)
    assert int(job["KAFKA_REPLICATION_FACTOR"]) == len(brokers(cluster))
    broker_min_isr = {
        environment(b)["KAFKA_MIN_INSYNC_REPLICAS"] for b in brokers(cluster).values()
    }
    assert {job["KAFKA_MIN_INSYNC_REPLICAS"]} == broker_min_isr
    assert set(job["CASSANDRA_HOST"].split(",")) == set(cassandra_nodes(cluster))
    assert int(job["CASSANDRA_REPLICATION_FACTOR"]) == len(cassandra_nodes(cluster))


def test_the_pipeline_settings_in_the_cluster_are_ones_the_config_reads(
    cluster: dict[str, Any],
) -> None:
    for name in {*KAFKA_READERS, *CASSANDRA_READERS} - {"kafka-init"}:
        env = environment(services(cluster)[name])
        for variable in CLUSTER_VARIABLES:
            if variable in env:
                assert variable in config.DEFAULTS, (
                    f"{variable} is no setting of pipeline/config.py"
                )
        config.load(env)  # every value is one the config accepts


# ---- Spark ----


@pytest.mark.parametrize("workers", [None, "3"])
def test_spark_runs_two_workers_each_with_room_for_the_jobs_executor(workers: str | None) -> None:
    cluster = cluster_with(**({"SPARK_WORKERS": workers} if workers else {}))
    worker = services(cluster)["spark-worker"]
    assert int(worker["deploy"]["replicas"]) == int(workers or 2), ".env's SPARK_WORKERS wins"
    job = environment(services(cluster)["spark-stream"])
    memory = environment(worker)["SPARK_WORKER_MEMORY"]
    assert to_bytes(job["SPARK_EXECUTOR_MEMORY"]) <= to_bytes(memory), "an executor must fit"
    default = services(cluster_with())["spark-worker"]["deploy"]["replicas"]
    assert int(job["SPARK_BATCH_PARTITIONS"]) == int(default), "one writer task per worker"


# ---- Start order, health and memory ----


def test_the_job_and_the_producer_wait_for_every_broker(cluster: dict[str, Any]) -> None:
    every = set(brokers(cluster))
    for name in ("spark-stream", "airflow-scheduler", "schema-registry", "control-center"):
        assert every <= waits_for(services(cluster)[name]), f"{name} must wait for {every}"
    stream = services(cluster)["spark-stream"]
    assert {"kafka-init", "cassandra-init"} <= waits_for(stream, "service_completed_successfully")


def test_one_cluster_up_has_an_order_that_starts_everything(cluster: dict[str, Any]) -> None:
    all_services = services(cluster)
    start_order(all_services)  # fails on a cycle
    for name, service in all_services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            expected = (
                "service_completed_successfully"
                if is_one_shot(all_services[dependency])
                else "service_healthy"
            )
            assert rule == {"condition": expected}, f"{name} -> {dependency}: {expected}"


def test_every_added_service_is_named_health_checked_and_limited(cluster: dict[str, Any]) -> None:
    new = added(cluster)
    assert new, "the cluster file adds no service"
    network = services(cluster)["broker"]["networks"]
    for name, service in new.items():
        assert service.get("hostname") == service.get("container_name") == name, name
        assert service.get("networks") == network, name
        check = service.get("healthcheck") or {}
        assert check.get("test") and check.get("start_period"), f"{name} has no healthcheck"
        limit = to_bytes(service.get("mem_limit") or 0)
        assert limit, f"{name} has no mem_limit"
        heap = jvm_heap(environment(service))
        assert 0 < heap <= 0.75 * limit, f"{name}: heaps {heap >> 20} MiB in {limit >> 20} MiB"


def test_every_memory_limit_in_the_cluster_file_says_what_it_was_sized_from() -> None:
    lines = CLUSTER_FILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip().startswith("mem_limit:"):
            assert lines[number - 1].strip().startswith("#"), f"line {number + 1}: {line.strip()}"


def memory_figures() -> tuple[float, float]:
    """The cluster file's "limits add up to X GiB (Y GiB without Control Center ...)"."""
    text = " ".join(line.lstrip("# ") for line in CLUSTER_FILE.read_text().splitlines())
    match = re.search(r"limits add up to ([\d.]+) GiB \(([\d.]+) GiB without Control Center", text)
    assert match, "docker-compose.cluster.yml no longer says what its memory limits add up to"
    return float(match.group(1)), float(match.group(2))


def test_the_memory_limits_add_up_to_what_the_cluster_file_says(cluster: dict[str, Any]) -> None:
    totals = memory_totals(cluster)
    assert memory_figures() == (
        round(totals["default"] / 1024**3, 1),
        round(totals["small"] / 1024**3, 1),
    ), f"the limits add up to {totals['default'] / 1024**3:.2f} GiB"
    base = memory_totals(compose_with())["default"]
    assert totals["default"] > base, "the cluster must count its added services"
