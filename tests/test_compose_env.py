"""docker-compose.yml's wiring, checked without a Docker engine: the environment each service
gets (as Compose resolves it with .env from .env.example) reaches the broker, the services and
the settings of pipeline/config.py; secrets have no default; ports bind to localhost.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from compose_helpers import (
    AIRFLOW_COMPONENTS,
    ENV_EXAMPLE,
    compose_text,
    compose_with,
    environment,
    parse_port,
    published_ports,
    raw_compose,
    read_env_file,
    resolve,
    run,
    services,
    versions,
)

from pipeline import config

# Environment variables that Spark's own scripts read, not pipeline/config.py.
SPARK_OWN_VARIABLES = {"SPARK_DRIVER_MEMORY", "SPARK_EXECUTOR_MEMORY"}
PIPELINE_PREFIXES = ("KAFKA_", "CASSANDRA_", "USERS_", "SPARK_", "SCHEMA_")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET")


def broker_listeners(compose: dict[str, Any]) -> dict[str, tuple[str, int]]:
    advertised = environment(services(compose)["broker"])["KAFKA_ADVERTISED_LISTENERS"]
    result = {}
    for item in advertised.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        result[name] = (host, int(port))
    return result


def test_broker_advertises_broker_29092_inside_and_localhost_9092_to_the_host(
    compose: dict[str, Any],
) -> None:
    advertised = set(broker_listeners(compose).values())
    assert advertised == {("broker", 29092), ("localhost", 9092)}, advertised
    _, _, target = published_ports(compose)[9092][0:3]
    assert published_ports(compose)[9092][0] == "broker" and target == 9092


def test_every_kafka_client_in_compose_uses_the_brokers_internal_listener(
    compose: dict[str, Any],
) -> None:
    internal = {f"{h}:{p}" for h, p in broker_listeners(compose).values() if h in services(compose)}
    assert internal == {"broker:29092"}, internal
    clients = {
        name: environment(s)["KAFKA_BOOTSTRAP_SERVERS"]
        for name, s in services(compose).items()
        if "KAFKA_BOOTSTRAP_SERVERS" in environment(s)
    }
    assert {"spark-stream", *AIRFLOW_COMPONENTS} <= set(clients), clients
    env = lambda name: environment(services(compose)[name])  # noqa: E731
    clients["schema-registry"] = env("schema-registry")[
        "SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"
    ]
    clients["control-center"] = env("control-center")["CONTROL_CENTER_BOOTSTRAP_SERVERS"]
    clients["metrics reporter"] = env("broker")["CONFLUENT_METRICS_REPORTER_BOOTSTRAP_SERVERS"]
    for client, servers in clients.items():
        assert set(servers.split(",")) <= internal, (
            f"{client} bootstraps from {servers}, not {internal}"
        )


def test_urls_between_services_name_services_that_exist(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    for name, service in all_services.items():
        for key, value in environment(service).items():
            for host, _port in re.findall(r"(?:https?|spark)://([a-z][a-z0-9-]*):(\d+)", value):
                if host in ("localhost", "0.0.0.0"):
                    continue
                assert host in all_services, f"{name}: {key} points at {host}, which is no service"
    zookeeper = environment(all_services["broker"])["KAFKA_ZOOKEEPER_CONNECT"]
    assert (
        zookeeper == f"zookeeper:{environment(all_services['zookeeper'])['ZOOKEEPER_CLIENT_PORT']}"
    )


def test_spark_job_and_workers_use_the_master_service(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    master = all_services["spark-master"]["command"]
    url = f"spark://{master[master.index('--host') + 1]}:{master[master.index('--port') + 1]}"
    assert url == "spark://spark-master:7077"
    assert environment(all_services["spark-stream"])["SPARK_MASTER"] == url
    assert all_services["spark-worker"]["command"][-1] == url


def test_the_spark_job_reaches_cassandra_by_service_name_and_port(compose: dict[str, Any]) -> None:
    env = environment(services(compose)["spark-stream"])
    assert env["CASSANDRA_HOST"] == "cassandra" and "cassandra" in services(compose)
    cassandra_ports = {parse_port(p)[2] for p in services(compose)["cassandra"]["ports"]}
    assert int(env["CASSANDRA_PORT"]) in cassandra_ports
    # The role cassandra-init creates, with the password the job logs in with.
    init = environment(services(compose)["cassandra-init"])
    assert (env["CASSANDRA_USERNAME"], env["CASSANDRA_PASSWORD"]) == (
        init["CASSANDRA_USERNAME"],
        init["CASSANDRA_PASSWORD"],
    )


OVERRIDDEN = {
    "KAFKA_TOPIC": "users_renamed",
    "KAFKA_TOPIC_PARTITIONS": "7",
    "CASSANDRA_KEYSPACE": "renamed_keyspace",
    "CASSANDRA_TABLE": "renamed_users",
    "CASSANDRA_DEAD_LETTER_TABLE": "renamed_dead_letters",
}


@pytest.mark.parametrize("overrides", [{}, OVERRIDDEN], ids=["defaults", "set in .env"])
def test_producer_topic_creator_and_consumer_follow_one_topic_keyspace_and_table(
    overrides: dict[str, str],
) -> None:
    """What .env sets reaches every side: a value written into one service would not."""
    all_services = services(compose_with(**overrides))
    expected = config.load(overrides)  # config.py's defaults, or what .env set
    producers = [*AIRFLOW_COMPONENTS, "airflow-init"]  # the DAG's task runs in the scheduler
    for name in [*producers, "spark-stream"]:
        kafka = config.load(environment(all_services[name])).kafka
        assert (kafka.topic, kafka.partitions) == (
            expected.kafka.topic,
            expected.kafka.partitions,
        ), name
    creator = environment(all_services["kafka-init"])
    assert (creator["KAFKA_TOPIC"], creator["KAFKA_TOPIC_PARTITIONS"]) == (
        expected.kafka.topic,
        str(expected.kafka.partitions),
    )
    sink = config.load(environment(all_services["spark-stream"])).cassandra
    assert (sink.keyspace, sink.table, sink.dead_letter_table) == (
        expected.cassandra.keyspace,
        expected.cassandra.table,
        expected.cassandra.dead_letter_table,
    )


def test_compose_defaults_equal_the_pipeline_config_defaults() -> None:
    text = compose_text()
    for name, default in re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", text):
        if name in config.DEFAULTS:
            assert default == config.DEFAULTS[name], (
                f"{name}: compose default {default!r} != config's"
            )


def test_pipeline_variables_in_compose_are_ones_the_config_reads(compose: dict[str, Any]) -> None:
    for name in [*AIRFLOW_COMPONENTS, "spark-stream"]:
        for key in environment(services(compose)[name]):
            if key.startswith(PIPELINE_PREFIXES) and key not in SPARK_OWN_VARIABLES:
                assert key in config.DEFAULTS, (
                    f"{name}: {key} is not a setting of pipeline/config.py"
                )
        config.load(environment(services(compose)[name]))  # every value is one the config accepts


def test_compose_airflow_is_as_quiet_as_the_local_stacks(compose: dict[str, Any]) -> None:
    from script.services.airflow import QUIET

    for name in AIRFLOW_COMPONENTS:
        env = environment(services(compose)[name])
        differ = {k: (v, env.get(k)) for k, v in QUIET.items() if env.get(k) != v}
        assert not differ, f"{name}: (local stack's, Compose's) values differ: {differ}"


def test_host_ports_bind_to_localhost_by_default() -> None:
    secrets_only = {k: f"x-{k}" for k, v in read_env_file(ENV_EXAMPLE).items() if not v}
    doc = resolve(raw_compose(), {**versions(), **secrets_only, "CASSANDRA_ADMIN_PASSWORD": "x"})
    ports = published_ports(doc)
    assert ports, "no port is published"
    for port, (name, host_ip, _) in ports.items():
        assert host_ip == "127.0.0.1", f"{name} publishes {port} on {host_ip or 'every address'}"


def test_secrets_have_no_default_and_are_all_in_env_example() -> None:
    text = compose_text()
    example = read_env_file(ENV_EXAMPLE)
    for name, op in re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)(:?[-?]?)", text):
        if SECRET_NAME.search(name):
            assert op == ":?", f"{name} is a secret: write ${{{name}:?...}}, never a default"
        if op in (":?", "?"):
            assert name in example, (
                f"{name} is required by docker-compose.yml but missing from .env.example"
            )


def test_env_is_ignored_and_env_example_is_not() -> None:
    assert run(["git", "check-ignore", "-q", ".env"]).returncode == 0, ".env must be git-ignored"
    assert run(["git", "check-ignore", "-q", ".env.example"]).returncode == 1, (
        ".env.example must be committed"
    )
