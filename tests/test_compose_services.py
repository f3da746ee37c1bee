"""docker-compose.yml's services, checked without a Docker engine: which services exist, how one
`compose up` orders and health-checks them, the one-shot inits, Airflow's components, Cassandra's
authentication, images, memory limits and volumes.

The file is validated against the Compose specification, then read the way Compose reads it
(tests/compose_helpers.py); the scripts it embeds run for real against stand-in commands.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_helpers import (
    AIRFLOW_COMPONENTS,
    COMPOSE_FILE,
    DOCKER_DOCS,
    ENV_EXAMPLE,
    FAKE_KAFKA_TOPICS,
    REPO,
    cluster_with,
    compose_env,
    compose_text,
    compose_with,
    dockerfile_args,
    environment,
    is_named_volume,
    is_one_shot,
    jvm_heap,
    long_running,
    memory_totals,
    mounts,
    parse_port,
    published_ports,
    raw_compose,
    run,
    seconds,
    services,
    start_order,
    to_bytes,
    tool,
    versions,
)

from pipeline import config

EXPECTED_SERVICES = {
    "zookeeper",
    "broker",
    "kafka-init",
    "schema-registry",
    "control-center",
    "monitor",
    "postgres",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "spark-master",
    "spark-worker",
    "spark-stream",
    "cassandra",
    "cassandra-init",
}
SCALABLE = {"spark-worker"}
MEMORY_BUDGET = 8 * 1024**3  # the docs advise 6-8 GB for Docker without Control Center


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    result = run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_has_no_obsolete_version_key() -> None:
    assert "version" not in raw_compose(), "the top-level `version:` key is obsolete in Compose v2"


def test_compose_defines_every_service_of_the_stack(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == EXPECTED_SERVICES


def test_all_services_share_one_network(compose: dict[str, Any]) -> None:
    networks = {
        name: tuple(s.get("networks") or ("default",)) for name, s in services(compose).items()
    }
    assert len(set(networks.values())) == 1 and len(next(iter(networks.values()))) == 1, networks


def test_services_are_reachable_by_their_service_name(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if name in SCALABLE:
            continue
        assert service.get("hostname") == name, f"{name}: hostname must equal the service name"
        assert service.get("container_name") == name, (
            f"{name}: container_name must equal the service name"
        )


def test_spark_workers_can_be_scaled(compose: dict[str, Any]) -> None:
    worker = services(compose)["spark-worker"]
    assert "container_name" not in worker, "a fixed container_name stops --scale spark-worker=N"
    assert not any(parse_port(p)[1] for p in worker.get("ports") or []), (
        "a fixed host port stops --scale"
    )


def test_every_long_running_service_has_a_healthcheck_with_a_start_period(
    compose: dict[str, Any],
) -> None:
    for name, service in long_running(compose).items():
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check.get("start_period"), f"{name}'s healthcheck has no start_period"


def test_dependencies_wait_for_health_or_for_the_init_to_finish(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    for name, service in all_services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a bare list"
        for dependency, rule in depends.items():
            assert dependency in all_services, f"{name} depends on unknown service {dependency}"
            expected = (
                "service_completed_successfully"
                if is_one_shot(all_services[dependency])
                else "service_healthy"
            )
            assert rule.get("condition") == expected, (
                f"{name} -> {dependency} must wait for {expected}"
            )


def test_one_compose_up_has_an_order_that_starts_everything(compose: dict[str, Any]) -> None:
    start_order(services(compose))  # fails on a cycle
    expectations = {
        "broker": {"zookeeper"},
        "schema-registry": {"broker"},
        "control-center": {"broker", "schema-registry"},
        "monitor": {"broker", "schema-registry", "cassandra-init"},
        "spark-worker": {"spark-master"},
        "kafka-init": {"broker"},
        "spark-stream": {"spark-master", "spark-worker", "broker", "kafka-init", "cassandra-init"},
        "cassandra-init": {"cassandra"},
        "airflow-init": {"postgres"},
        "airflow-scheduler": {"postgres", "airflow-init", "broker", "kafka-init"},
    }
    for name, needed in expectations.items():
        assert needed <= set(services(compose)[name].get("depends_on") or {}), (
            f"{name} must wait for {needed}"
        )


def test_kafka_init_creates_the_topic_before_anyone_produces_or_consumes(
    compose: dict[str, Any],
) -> None:
    all_services = services(compose)
    init = all_services["kafka-init"]
    assert is_one_shot(init), 'kafka-init runs once: restart must be "no"'
    assert init["depends_on"] == {"broker": {"condition": "service_healthy"}}
    for name in ("airflow-scheduler", "spark-stream"):  # the DAG's producer runs in the scheduler
        assert all_services[name]["depends_on"]["kafka-init"] == {
            "condition": "service_completed_successfully"
        }, name
        for key in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPIC", "KAFKA_TOPIC_PARTITIONS"):
            assert environment(all_services[name])[key] == environment(init)[key], (name, key)


@pytest.mark.parametrize("partitions", [None, "6"])
def test_kafka_init_runs_kafka_topics_create_if_not_exists_with_the_partitions(
    tmp_path: Path, partitions: str | None
) -> None:
    overrides = {"KAFKA_TOPIC_PARTITIONS": partitions} if partitions else {}
    init = services(compose_with(**overrides))["kafka-init"]
    assert init["entrypoint"][:2] == ["bash", "-c"], init["entrypoint"]
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "kafka-topics").write_text(FAKE_KAFKA_TOPICS)
    (fake_bin / "kafka-topics").chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**environment(init), "PATH": f"{fake_bin}:{os.environ['PATH']}", "FAKE_LOG": str(log)}
    result = run(["bash", "-c", init["entrypoint"][2]], env=env)
    assert result.returncode == 0, result.stderr
    create = log.read_text().splitlines()[0].split()
    flags = dict(zip(create, create[1:], strict=False))  # each word -> the word after it
    assert "--create" in create and "--if-not-exists" in create, create
    assert flags["--bootstrap-server"] == "broker:29092"
    assert flags["--topic"] == config.DEFAULTS["KAFKA_TOPIC"]
    assert flags["--partitions"] == (partitions or config.DEFAULTS["KAFKA_TOPIC_PARTITIONS"])
    assert flags["--replication-factor"] == "1"


def test_cassandra_init_sets_up_schema_and_role_as_the_admin_before_the_job_starts(
    compose: dict[str, Any],
) -> None:
    all_services = services(compose)
    init, stream = all_services["cassandra-init"], all_services["spark-stream"]
    assert is_one_shot(init), 'cassandra-init runs once: restart must be "no"'
    assert init["depends_on"] == {"cassandra": {"condition": "service_healthy"}}
    assert stream["depends_on"]["cassandra-init"] == {"condition": "service_completed_successfully"}
    # The local stack's set-up code, from the job's own image (which copies pipeline/).
    assert init["command"] == ["python", "-m", "pipeline.cassandra_schema"]
    assert init["image"] == stream["image"]
    init_env, job_env = environment(init), environment(stream)
    cassandra_env = environment(all_services["cassandra"])
    # The admin the image's superuser becomes, and the role the job logs in as.
    admin = config.load(init_env).cassandra_admin
    assert (admin.username, admin.password) == (
        cassandra_env["CASSANDRA_ADMIN_USERNAME"],
        cassandra_env["CASSANDRA_ADMIN_PASSWORD"],
    )
    assert config.load(init_env).cassandra == config.load(job_env).cassandra
    assert config.load(job_env).cassandra.username != admin.username
    assert not [key for key in job_env if key.startswith("CASSANDRA_ADMIN_")], (
        "the stream job must not get the admin login"
    )


def test_no_airflow_service_has_a_cassandra_login(compose: dict[str, Any]) -> None:
    """The DAG only produces to Kafka: no Airflow container holds a Cassandra login."""
    for name, service in services(compose).items():
        if name.startswith("airflow"):
            cassandra = [key for key in environment(service) if key.startswith("CASSANDRA")]
            assert cassandra == [], f"{name} has {cassandra}"


FAKE_CQLSH = """#!/usr/bin/env bash
# Logs in when -u and -p are the one login the fake node knows ($KNOWN, "user:password").
while [[ $# -gt 0 ]]; do
    case "$1" in -u) user="$2"; shift ;; -p) password="$2"; shift ;; esac
    shift
done
[[ "$user:$password" == "$KNOWN" ]]
"""


@pytest.mark.parametrize(
    ("known", "healthy"),
    [
        ("admin:s3cret", True),  # set up: the configured admin
        ("cassandra:cassandra", True),  # a fresh node, before cassandra-init
        ("admin:another", False),  # neither: the admin's password was changed elsewhere
    ],
    ids=["admin", "fresh node", "neither"],
)
def test_cassandras_healthcheck_takes_the_admin_or_a_fresh_nodes_default(
    tmp_path: Path, known: str, healthy: bool
) -> None:
    cassandra = services(
        compose_with(CASSANDRA_ADMIN_USERNAME="admin", CASSANDRA_ADMIN_PASSWORD="s3cret")
    )["cassandra"]
    kind, script = cassandra["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    (tmp_path / "cqlsh").write_text(FAKE_CQLSH)
    (tmp_path / "cqlsh").chmod(0o755)
    env = {
        **environment(cassandra),
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "KNOWN": known,
    }
    # Compose turns $$ into $ before the shell sees it.
    result = run(["bash", "-c", script.replace("$$", "$")], env=env)
    assert (result.returncode == 0) == healthy, result.stderr


@pytest.mark.parametrize("topology", ["single", "cluster"])
def test_every_service_but_the_one_shot_inits_comes_back_by_itself(
    topology: str, compose: dict[str, Any]
) -> None:
    """`./run.sh chaos`'s promise in Compose: a killed container is started again by Docker,
    as the local stack's supervisor starts a killed process again."""
    doc = compose if topology == "single" else cluster_with()
    for name, service in services(doc).items():
        if name.endswith("-init"):
            assert is_one_shot(service), name
        else:
            assert service.get("restart") == "unless-stopped", (name, service.get("restart"))


def test_the_stream_job_is_restarted_and_given_time_to_stop(compose: dict[str, Any]) -> None:
    stream = services(compose)["spark-stream"]
    assert stream.get("restart") in ("on-failure", "unless-stopped"), stream.get("restart")
    assert seconds(stream["stop_grace_period"]) >= 35, "the job may take 30 s to stop"
    assert "command" not in stream and "entrypoint" not in stream, "the image's CMD runs the job"


def test_compose_duration_reader() -> None:
    assert [seconds(d) for d in ("40s", "1m30s", "500ms", "2h")] == [40, 90, 0.5, 7200]


def test_airflow_services_run_their_components_through_the_entrypoint(
    compose: dict[str, Any],
) -> None:
    all_services = services(compose)
    for name, component in {**AIRFLOW_COMPONENTS, "airflow-init": "init"}.items():
        service = all_services[name]
        assert service["command"][0] == component, f"{name} must run `{component}`"
        assert service["entrypoint"][-1] == "/opt/airflow/script/entrypoint.sh", name
        assert ("./script", "/opt/airflow/script") in mounts(service), f"{name} must mount ./script"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert (
                service["depends_on"]["airflow-init"]["condition"]
                == "service_completed_successfully"
            )


def test_airflow_init_creates_the_admin_that_the_api_server_reads(compose: dict[str, Any]) -> None:
    init, api = services(compose)["airflow-init"], services(compose)["airflow-apiserver"]
    init_env, api_env = environment(init), environment(api)
    assert init_env["AIRFLOW_ADMIN_PASSWORD"] == compose_env()["AIRFLOW_ADMIN_PASSWORD"]
    assert (
        api_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
        == f"{init_env['AIRFLOW_ADMIN_USERNAME']}:admin"
    )
    password_dir = str(Path(init_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).parent)
    assert (
        api_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
        == init_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    )
    init_volume = dict((t, s) for s, t in mounts(init)).get(password_dir)
    api_volume = dict((t, s) for s, t in mounts(api)).get(password_dir)
    assert init_volume and is_named_volume(init_volume) and init_volume == api_volume, (
        "the passwords file must be on a named volume shared by airflow-init and airflow-apiserver"
    )
    assert "AIRFLOW_ADMIN_PASSWORD" not in api_env, "only the init service needs the plain password"


def test_airflow_components_share_secrets_and_find_the_api_server(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    shared = (
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    )
    for key in shared:
        values = {
            environment(all_services[name]).get(key)
            for name in [*AIRFLOW_COMPONENTS, "airflow-init"]
        }
        assert len(values) == 1 and None not in values, (
            f"{key} differs between the Airflow services"
        )
    url = environment(all_services["airflow-scheduler"])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    match = re.fullmatch(r"http://([a-z-]+):(\d+)/execution/", url)
    assert match and match.group(1) == "airflow-apiserver", url
    assert int(match.group(2)) in {
        parse_port(p)[2] for p in all_services["airflow-apiserver"]["ports"]
    }
    conn = environment(all_services["airflow-scheduler"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert re.search(r"@postgres:5432/", conn) and "postgres" in all_services, conn
    assert compose_env()["POSTGRES_PASSWORD"] in conn
    assert (
        environment(all_services["postgres"])["POSTGRES_PASSWORD"]
        == compose_env()["POSTGRES_PASSWORD"]
    )


def test_airflow_can_import_the_pipeline_package_and_the_dags(compose: dict[str, Any]) -> None:
    for name in AIRFLOW_COMPONENTS:
        service = services(compose)[name]
        targets = {source: target for source, target in mounts(service)}
        assert targets.get("./dags") == "/opt/airflow/dags", f"{name} must mount ./dags"
        assert "./pipeline" in targets, f"{name} must mount ./pipeline"
        python_path = environment(service).get("PYTHONPATH", "").split(":")
        assert str(Path(targets["./pipeline"]).parent) in python_path, (
            f"{name}: pipeline/ not importable"
        )


def test_every_airflow_container_runs_the_one_built_airflow_image(compose: dict[str, Any]) -> None:
    """The DAG's packages are in the image; nothing is mounted or installed at start."""
    airflow = {name: services(compose)[name] for name in [*AIRFLOW_COMPONENTS, "airflow-init"]}
    assert {s["image"] for s in airflow.values()} == {
        f"e2e-data-pipeline/airflow:{versions()['AIRFLOW_VERSION']}-python"
        f"{versions()['PYTHON_VERSION']}"
    }
    for name, service in airflow.items():
        assert service["build"] == {
            "context": ".",
            "dockerfile": "airflow.Dockerfile",
            "args": {k: versions()[k] for k in ("AIRFLOW_VERSION", "PYTHON_VERSION")},
        }, name
        assert not [t for _, t in mounts(service) if "requirements" in t], name
        assert not [k for k in environment(service) if "REQUIREMENTS" in k], name


def test_triggerer_and_scheduler_run_without_a_log_server(compose: dict[str, Any]) -> None:
    """As in the local stack: the API server reads task logs from the shared volume."""
    all_services = services(compose)
    for name in ("airflow-scheduler", "airflow-triggerer"):
        assert "--skip-serve-logs" in all_services[name]["command"], name
        logs = dict((t, s) for s, t in mounts(all_services[name]))["/opt/airflow/logs"]
        assert (
            logs
            == dict((t, s) for s, t in mounts(all_services["airflow-apiserver"]))[
                "/opt/airflow/logs"
            ]
        )


def test_the_checkpoint_survives_a_restart_on_a_named_volume(compose: dict[str, Any]) -> None:
    stream = services(compose)["spark-stream"]
    checkpoint = environment(stream)["SPARK_CHECKPOINT_DIR"]
    holders = [
        s
        for s, t in mounts(stream)
        if checkpoint == t or checkpoint.startswith(t.rstrip("/") + "/")
    ]
    assert holders and is_named_volume(holders[0]), f"{checkpoint} is not on a named volume"
    assert holders[0] in compose["volumes"]


def test_stateful_services_keep_their_data_in_named_volumes(compose: dict[str, Any]) -> None:
    data_dirs = {
        "postgres": "/var/lib/postgresql/data",
        "cassandra": "/var/lib/cassandra",
        "broker": "/var/lib/kafka/data",
        "zookeeper": "/var/lib/zookeeper/data",
    }
    for name, path in data_dirs.items():
        sources = {t: s for s, t in mounts(services(compose)[name])}
        assert is_named_volume(sources.get(path, "")), f"{name} must keep {path} on a named volume"
    for name, service in services(compose).items():
        for source, _ in mounts(service):
            if is_named_volume(source):
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"


def cassandra_start_script(compose: dict[str, Any], conf: Path) -> str:
    entrypoint = services(compose)["cassandra"]["entrypoint"]
    assert entrypoint[:2] == ["bash", "-c"], entrypoint
    script = entrypoint[2]
    assert (
        "/etc/cassandra/cassandra.yaml" in script
        and "exec docker-entrypoint.sh cassandra -f" in script
    )
    return script.replace("/etc/cassandra/cassandra.yaml", str(conf)).replace(
        "exec docker-entrypoint.sh cassandra -f", "echo started"
    )


# The image's batch size limits (its cassandra.yaml's defaults).
STOCK_BATCH_LIMITS = "batch_size_warn_threshold: 5KiB\nbatch_size_fail_threshold: 50KiB\n"


@pytest.mark.parametrize(
    "original",
    [
        "# - AllowAllAuthenticator performs no checks\nauthenticator: AllowAllAuthenticator\n"
        "authorizer: AllowAllAuthorizer\n" + STOCK_BATCH_LIMITS,
        "# - AllowAllAuthenticator performs no checks\nauthenticator:\n"
        "  class_name : org.apache.cassandra.auth.AllowAllAuthenticator\n"
        "authorizer:\n  class_name: AllowAllAuthorizer\n" + STOCK_BATCH_LIMITS,
    ],
    ids=["cassandra-4-style", "cassandra-5-style"],
)
def test_cassandra_starts_with_password_authentication(
    compose: dict[str, Any], tmp_path: Path, original: str
) -> None:
    conf = tmp_path / "cassandra.yaml"
    conf.write_text(original)
    script = cassandra_start_script(compose, conf)
    for _ in range(2):  # a restarted container runs it again
        result = run(["bash", "-c", script])
        assert result.returncode == 0 and result.stdout.strip() == "started", result.stderr
    settings = yaml.safe_load(conf.read_text())
    authenticator, authorizer = settings["authenticator"], settings["authorizer"]
    if isinstance(authenticator, dict):
        authenticator, authorizer = authenticator["class_name"], authorizer["class_name"]
    assert authenticator.endswith("PasswordAuthenticator")
    assert authorizer.endswith("CassandraAuthorizer")
    assert conf.read_text().splitlines()[0] == original.splitlines()[0], (
        "comments must stay as they were"
    )


def test_cassandra_takes_the_stream_jobs_batches_as_the_local_stacks_does(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """The image refuses a batch over 50 KiB; the job's are 65-90 KiB as Cassandra counts them
    (a Cassandra with those limits refused them: "Batch too large", retried for ever)."""
    conf = tmp_path / "cassandra.yaml"
    conf.write_text("authenticator: AllowAllAuthenticator\n" + STOCK_BATCH_LIMITS)
    result = run(["bash", "-c", cassandra_start_script(compose, conf)])
    assert result.returncode == 0 and result.stdout.strip() == "started", result.stderr
    local = yaml.safe_load((REPO / "stack" / "cassandra.yaml").read_text())
    limits = ("batch_size_warn_threshold", "batch_size_fail_threshold")
    assert {k: yaml.safe_load(conf.read_text())[k] for k in limits} == {k: local[k] for k in limits}


@pytest.mark.parametrize(
    ("conf_text", "named"),
    [
        ("cluster_name: x\n" + STOCK_BATCH_LIMITS, "authenticator"),
        ("authenticator: AllowAllAuthenticator\n", "batch_size_fail_threshold"),
    ],
    ids=["no-authenticator", "no-batch-limit"],
)
def test_cassandra_refuses_to_start_when_it_cannot_set_a_key(
    compose: dict[str, Any], tmp_path: Path, conf_text: str, named: str
) -> None:
    conf = tmp_path / "cassandra.yaml"
    conf.write_text(conf_text)
    result = run(["bash", "-c", cassandra_start_script(compose, conf)])
    assert result.returncode != 0 and named in result.stderr


def test_image_versions_come_from_versions_env() -> None:
    pinned = versions()
    for name, service in raw_compose()["services"].items():
        image = service.get("image") or raw_compose()["x-airflow-common"]["image"]
        if image.startswith("e2e-data-pipeline/"):
            continue
        tags = re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", image)
        assert tags, f"{name}: image {image} is not pinned through stack/versions.env"
        for variable, default in tags:
            assert pinned.get(variable) == default, (
                f"{name}: {variable} default {default} != versions.env"
            )


def test_every_version_default_in_compose_is_versions_envs() -> None:
    """Image tags and build args alike: .env may change a version, the default is the pin."""
    pinned = versions()
    found = re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", compose_text())
    checked = {name for name, _ in found if name in pinned}
    assert {"AIRFLOW_VERSION", "SPARK_VERSION", "CONFLUENT_VERSION"} <= checked, checked
    for name, default in found:
        if name in pinned:
            assert default == pinned[name], f"{name}: compose default {default} != versions.env"


def test_confluent_images_share_one_pinned_version_that_supports_zookeeper(
    compose: dict[str, Any],
) -> None:
    tags = {
        s["image"].split(":")[1]
        for s in services(compose).values()
        if s["image"].startswith("confluentinc/")
    }
    assert tags == {versions()["CONFLUENT_VERSION"]}, tags
    assert versions()["CONFLUENT_VERSION"].startswith("7."), "Confluent 8 dropped ZooKeeper"
    assert services(compose)["zookeeper"]["image"].startswith("confluentinc/cp-zookeeper:")


def test_images_are_the_documented_ones(compose: dict[str, Any]) -> None:
    pinned = versions()
    images = {name: s["image"] for name, s in services(compose).items()}
    assert images["cassandra"] == f"cassandra:{pinned['CASSANDRA_VERSION']}"
    assert images["postgres"] == f"postgres:{pinned['POSTGRES_MAJOR']}"
    spark = {
        name: services(compose)[name] for name in ("spark-master", "spark-worker", "spark-stream")
    }
    assert len({s["image"] for s in spark.values()}) == 1, (
        "master, workers and job must share one image"
    )
    for service in spark.values():
        assert (
            service["build"]["context"] == "."
            and service["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
        )
        assert service["build"]["args"] == {
            k: pinned[k] for k in dockerfile_args() if k in pinned
        }, "the Spark image's build args are stack/versions.env's"


def docs_memory_figures() -> tuple[float, float]:
    """docs/docker.md's "limits add up to X GiB (Y GiB without Control Center ...)"."""
    text = " ".join(DOCKER_DOCS.read_text().split())
    match = re.search(r"limits add up to ([\d.]+) GiB \(([\d.]+) GiB without Control Center", text)
    assert match, "docs/docker.md no longer says what the memory limits add up to"
    return float(match.group(1)), float(match.group(2))


def test_memory_limits_fit_the_docs_docker_memory_advice(compose: dict[str, Any]) -> None:
    for name, service in long_running(compose).items():
        limit = to_bytes(service["mem_limit"])
        heap = jvm_heap(environment(service))
        assert heap <= 0.75 * limit, (
            f"{name}: JVM heaps {heap >> 20} MiB leave too little of {limit >> 20} MiB"
        )
    totals = memory_totals(compose)
    assert totals["small"] <= MEMORY_BUDGET, (
        f"without Control Center the limits add up to {totals['small'] / 1024**3:.2f} GiB, "
        "more than 8 GiB"
    )
    assert docs_memory_figures() == (
        round(totals["default"] / 1024**3, 1),
        round(totals["small"] / 1024**3, 1),
    ), "docs/docker.md's memory figures are not what the limits add up to"
    worker = environment(services(compose)["spark-worker"])
    executor = environment(services(compose)["spark-stream"])["SPARK_EXECUTOR_MEMORY"]
    assert to_bytes(executor) <= to_bytes(worker["SPARK_WORKER_MEMORY"]), (
        "an executor must fit in a worker"
    )


def test_control_center_starts_by_default_and_a_setting_leaves_it_out() -> None:
    center = services(compose_with())["control-center"]
    assert not center.get("profiles"), "`docker compose up` must start Control Center"
    assert int(center["deploy"]["replicas"]) == 1
    assert published_ports(compose_with())[9021][0] == "control-center"
    assert (
        int(
            services(compose_with(CONTROL_CENTER_REPLICAS="0"))["control-center"]["deploy"][
                "replicas"
            ]
        )
        == 0
    )
    assert "CONTROL_CENTER_REPLICAS=0" in ENV_EXAMPLE.read_text()


def test_the_pipeline_page_runs_on_9022_with_no_airflow_secret(compose: dict[str, Any]) -> None:
    monitor = services(compose)["monitor"]
    env = environment(monitor)
    assert env["MONITOR_PORT"] == "9022"
    assert published_ports(compose)[9022][0] == "monitor"
    assert monitor["entrypoint"][-2:] == ["--host", "0.0.0.0"]  # the container's own network
    assert monitor["image"] == services(compose)["airflow-apiserver"]["image"]
    assert not {k for k in env if k.startswith("AIRFLOW__")}, "no Airflow secret or setting"
    assert {"POSTGRES_PASSWORD", "CASSANDRA_ADMIN_PASSWORD"}.isdisjoint(env)
    assert all(mode == "ro" for _, mode in [m.rsplit(":", 1) for m in monitor["volumes"]])
    config.load(env)  # every value is one the config accepts


def test_the_triggerer_and_dag_processor_limits_hold_their_healthcheck() -> None:
    """Each says what it was sized from: the measured process plus the healthcheck beside it."""
    text = COMPOSE_FILE.read_text()
    for name in ("airflow-triggerer", "airflow-dag-processor"):
        block = re.search(rf"^  {name}:\n(.*?)(?=^  [a-z])", text, re.M | re.S).group(1)
        comment = " ".join(re.findall(r"^\s*# ?(.*)$", block.split("mem_limit:")[0], re.M)[-3:])
        figures = [int(n) for n in re.findall(r"(\d+) MB", comment)]
        limit = to_bytes(re.search(r"mem_limit: (\S+)", block).group(1))
        assert len(figures) >= 2 and "jobs check" in comment, f"{name}: {comment!r}"
        assert sum(figures[:2]) * 1024**2 <= 0.75 * limit, (name, figures, limit >> 20)
