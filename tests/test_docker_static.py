"""The Docker stack, checked without a Docker engine.

docker-compose.yml is validated against the Compose specification and read the way Compose reads it
(YAML merge keys, ``${VAR:-default}`` interpolation with .env.example and stack/versions.env), then
its wiring is checked against the services that exist in it and against pipeline/config.py.
The Dockerfile and every shell script go through hadolint and shellcheck; run-docker.sh and
script/entrypoint.sh are run for real against stand-in ``docker``/``airflow``/``pip`` commands.
Each tool check also proves, on a deliberately broken file, that the tool does reject.
Tools come from the venv that runs pytest; a missing one fails the test with the fix.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline import config  # noqa: E402

BIN = Path(sys.executable).parent
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
VERSIONS_FILE = REPO / "stack" / "versions.env"
SPARK_POM = REPO / "stack" / "spark-jars.pom.xml"
RUN_DOCKER = REPO / "run-docker.sh"
ENTRYPOINT = REPO / "script" / "entrypoint.sh"

EXPECTED_SERVICES = {
    "zookeeper",
    "broker",
    "kafka-init",
    "schema-registry",
    "control-center",
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
}
AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
SCALABLE = {"spark-worker"}
# Environment variables that Spark's own scripts read, not pipeline/config.py.
SPARK_OWN_VARIABLES = {"SPARK_DRIVER_MEMORY", "SPARK_EXECUTOR_MEMORY"}
PIPELINE_PREFIXES = ("KAFKA_", "CASSANDRA_", "USERS_", "SPARK_")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET")
MEMORY_BUDGET = 8 * 1024**3  # the README advises giving Docker 6-8 GB
# Package registries' hosts, spelled in parts so that this file does not name them either.
REGISTRY_HOSTS = tuple(
    ".".join(parts)
    for parts in (
        ("pypi", "org"),
        ("repo", "maven", "apache", "org"),
        ("registry", "npmjs", "org"),
        ("deb", "debian", "org"),
    )
)


# ---------------------------------------------------------------- reading the files


def tool(name: str) -> str:
    """The venv's copy of ``name``; fails (never skips) when it is not installed."""
    path = BIN / name
    if not path.exists():
        pytest.fail(
            f"{name} is not installed in {BIN}; install the test tools with "
            f"`{BIN / 'pip'} install -r requirements.txt`",
            pytrace=False,
        )
    return str(path)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("cwd", REPO)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file; comments and blank lines ignored."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


class MissingVariable(KeyError):
    pass


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?)(?P<arg>.*))?", re.S)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("plain"):
            return env.get(match.group("plain"), "")
        braced = _BRACED.fullmatch(match.group("braced"))
        assert braced, f"unreadable variable {match.group(0)!r} in {COMPOSE_FILE.name}"
        name, op, arg = braced.group("name", "op", "arg")
        value = env.get(name)
        if op is None:
            return value or ""
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op == ":?" and not value or op == "?" and value is None:
            raise MissingVariable(f"{name}: {arg}")
        return value or ""

    return _VARIABLE.sub(replace, text)


def resolve(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_text() -> str:
    """docker-compose.yml without its comment lines."""
    lines = COMPOSE_FILE.read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def versions() -> dict[str, str]:
    return read_env_file(VERSIONS_FILE)


def compose_env(**overrides: str) -> dict[str, str]:
    """What Compose sees after ./run-docker.sh: versions.env exported, .env from .env.example."""
    env = dict(versions())
    for key, value in read_env_file(ENV_EXAMPLE).items():
        env[key] = value or f"generated-{key.lower()}"
    env.update(overrides)
    return env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    try:
        return resolve(raw_compose(), compose_env())
    except MissingVariable as missing:
        pytest.fail(
            f"docker-compose.yml requires a variable .env.example lacks: {missing}", pytrace=False
        )


def services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return doc["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def is_one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")) == "no"


def long_running(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services(doc).items() if not is_one_shot(s)}


def parse_port(entry: Any) -> tuple[str, int | None, int]:
    """(host_ip, published, target) of a ports entry, short or long syntax."""
    if isinstance(entry, dict):
        published = entry.get("published")
        return (
            str(entry.get("host_ip", "")),
            int(published) if published else None,
            int(entry["target"]),
        )
    spec = str(entry).split("/")[0]
    parts = spec.rsplit(":", 2)
    if len(parts) == 1:
        return "", None, int(parts[0])
    if len(parts) == 2:
        return "", int(parts[0]), int(parts[1])
    return parts[0], int(parts[1]), int(parts[2])


def published_ports(doc: dict[str, Any]) -> dict[int, tuple[str, str, int]]:
    """host port -> (service, host_ip, container port)."""
    found: dict[int, tuple[str, str, int]] = {}
    for name, service in services(doc).items():
        for entry in service.get("ports") or []:
            host_ip, published, target = parse_port(entry)
            if published is not None:
                assert published not in found, f"host port {published} is published twice"
                found[published] = (name, host_ip, target)
    return found


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume entry."""
    result = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            result.append((str(entry.get("source", "")), str(entry["target"])))
        else:
            source, target = str(entry).split(":")[:2]
            result.append((source, target))
    return result


def is_named_volume(source: str) -> bool:
    return bool(source) and not source.startswith((".", "/", "~"))


def to_bytes(size: str | int) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"(\d+)\s*([bkmg]?)b?", str(size).strip().lower())
    assert match, f"unreadable size {size!r}"
    return (
        int(match.group(1)) * {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2)]
    )


def dockerfile_args() -> dict[str, str]:
    """ARG NAME=default lines (the first default wins, as the global ARGs come first)."""
    args: dict[str, str] = {}
    for match in re.finditer(r"^ARG\s+([A-Z0-9_]+)=(\S+)\s*$", DOCKERFILE.read_text(), re.M):
        args.setdefault(match.group(1), match.group(2))
    return args


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def requirement_pin(package: str) -> str:
    for line in (REPO / "requirements.txt").read_text().splitlines():
        match = re.match(rf"^{re.escape(package)}==(\S+)", line.strip(), re.I)
        if match:
            return match.group(1)
    pytest.fail(f"requirements.txt does not pin {package}", pytrace=False)


# ---------------------------------------------------------------- the tools, and proof they bite


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    result = run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_check_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        "services:\n  app:\n    image: [not, a, string]\n    depends_on:\n"
        "      db:\n        condition: when_it_feels_like_it\n"
    )
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken)])
    assert result.returncode != 0, "check-jsonschema accepted a broken compose file"


def test_compose_file_has_no_obsolete_version_key() -> None:
    assert "version" not in raw_compose(), "the top-level `version:` key is obsolete in Compose v2"


def test_dockerfile_passes_hadolint() -> None:
    result = run([tool("hadolint"), str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN cd /tmp && apt-get install curl\n")
    result = run([tool("hadolint"), str(bad)])
    assert result.returncode != 0, "hadolint accepted a Dockerfile with :latest and no -y"


def shell_scripts() -> list[str]:
    """Every *.sh in the repo (tracked or untracked, not ignored) plus the extension-less ones."""
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"])
    assert listed.returncode == 0, listed.stderr
    found = {
        path
        for path in listed.stdout.splitlines()
        if path.endswith(".sh") and (REPO / path).is_file()
    }
    found |= {path for path in ("run.sh", "run-docker.sh", ".ci/run") if (REPO / path).is_file()}
    return sorted(found)


def test_every_shell_script_passes_shellcheck() -> None:
    scripts = shell_scripts()
    assert {"run-docker.sh", "script/entrypoint.sh"} <= set(scripts), scripts
    result = run([tool("shellcheck"), *scripts])
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_rejects_a_bad_script(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nfor f in $(ls $1); do rm $f; done\n")
    result = run([tool("shellcheck"), str(bad)])
    assert result.returncode != 0, "shellcheck accepted unquoted expansions"


def test_every_shell_script_stops_on_errors() -> None:
    missing = [p for p in shell_scripts() if "set -euo pipefail" not in (REPO / p).read_text()]
    assert not missing, f"these scripts lack `set -euo pipefail`: {missing}"


# ---------------------------------------------------------------- services, order, health


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
    graph = {name: set(s.get("depends_on") or {}) for name, s in services(compose).items()}
    started: list[str] = []
    while graph:
        ready = sorted(name for name, deps in graph.items() if deps <= set(started))
        assert ready, f"depends_on has a cycle among {sorted(graph)}"
        started += ready
        for name in ready:
            del graph[name]
    expectations = {
        "broker": {"zookeeper"},
        "schema-registry": {"broker"},
        "control-center": {"broker", "schema-registry"},
        "spark-worker": {"spark-master"},
        "kafka-init": {"broker"},
        "spark-stream": {"spark-master", "spark-worker", "broker", "kafka-init", "cassandra"},
        "airflow-init": {"postgres"},
        "airflow-scheduler": {"postgres", "airflow-init", "broker", "kafka-init"},
    }
    for name, needed in expectations.items():
        assert needed <= set(services(compose)[name].get("depends_on") or {}), (
            f"{name} must wait for {needed}"
        )


# ---------------------------------------------------------------- the topic, the job's restarts


def seconds(duration: str) -> float:
    """A Compose duration (``40s``, ``1m30s``, ``500ms``) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), duration
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    return sum(float(n) * unit[u] for n, u in parts)


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


FAKE_KAFKA_TOPICS = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$FAKE_LOG"
"""


@pytest.mark.parametrize("partitions", [None, "6"])
def test_kafka_init_runs_kafka_topics_create_if_not_exists_with_the_partitions(
    tmp_path: Path, partitions: str | None
) -> None:
    overrides = {"KAFKA_TOPIC_PARTITIONS": partitions} if partitions else {}
    init = services(resolve(raw_compose(), compose_env(**overrides)))["kafka-init"]
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


def test_the_stream_job_is_restarted_and_given_time_to_stop(compose: dict[str, Any]) -> None:
    stream = services(compose)["spark-stream"]
    assert stream.get("restart") in ("on-failure", "unless-stopped"), stream.get("restart")
    assert seconds(stream["stop_grace_period"]) >= 35, "the job may take 30 s to stop"
    assert "command" not in stream and "entrypoint" not in stream, "the image's CMD runs the job"


def test_compose_duration_reader() -> None:
    assert [seconds(d) for d in ("40s", "1m30s", "500ms", "2h")] == [40, 90, 0.5, 7200]


# ---------------------------------------------------------------- Airflow


def test_airflow_services_run_their_components_through_the_entrypoint(
    compose: dict[str, Any],
) -> None:
    all_services = services(compose)
    for name, component in {**AIRFLOW_COMPONENTS, "airflow-init": "init"}.items():
        service = all_services[name]
        assert service["command"] == [component], f"{name} must run `{component}`"
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


def test_the_containers_that_run_tasks_install_the_requirements(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    scheduler = environment(all_services["airflow-scheduler"])  # LocalExecutor runs tasks here
    assert scheduler["AIRFLOW_INSTALL_REQUIREMENTS"] == "true"
    targets = {target for _, target in mounts(all_services["airflow-scheduler"])}
    assert scheduler["AIRFLOW_REQUIREMENTS_FILE"] in targets, "the requirements file is not mounted"
    for name in ("airflow-init", "airflow-apiserver", "airflow-dag-processor", "airflow-triggerer"):
        assert environment(all_services[name])["AIRFLOW_INSTALL_REQUIREMENTS"] == "false", name


# ---------------------------------------------------------------- the pipeline's wiring


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
    assert (
        env["CASSANDRA_PASSWORD"]
        == environment(services(compose)["cassandra"])["CASSANDRA_PASSWORD"]
    )


def test_producer_and_consumer_agree_on_topic_keyspace_and_table(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    topics = {
        name: environment(all_services[name]).get("KAFKA_TOPIC")
        for name in [*AIRFLOW_COMPONENTS, "spark-stream"]
    }
    assert set(topics.values()) == {config.DEFAULTS["KAFKA_TOPIC"]}, topics
    stream = config.load(environment(all_services["spark-stream"]))
    assert stream.cassandra.keyspace == config.DEFAULTS["CASSANDRA_KEYSPACE"] == "spark_streams"
    assert stream.cassandra.table == config.DEFAULTS["CASSANDRA_TABLE"] == "created_users"
    assert stream.kafka.topic == "users_created"


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


# ---------------------------------------------------------------- Cassandra authentication


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


@pytest.mark.parametrize(
    "original",
    [
        "# - AllowAllAuthenticator performs no checks\nauthenticator: AllowAllAuthenticator\n"
        "authorizer: AllowAllAuthorizer\n",
        "# - AllowAllAuthenticator performs no checks\nauthenticator:\n"
        "  class_name : org.apache.cassandra.auth.AllowAllAuthenticator\n"
        "authorizer:\n  class_name: AllowAllAuthorizer\n",
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


def test_cassandra_refuses_to_start_when_it_cannot_switch_auth_on(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    conf = tmp_path / "cassandra.yaml"
    conf.write_text("cluster_name: x\n")
    result = run(["bash", "-c", cassandra_start_script(compose, conf)])
    assert result.returncode != 0 and "authenticator" in result.stderr


def test_readme_cqlsh_command_matches_the_cassandra_service(compose: dict[str, Any]) -> None:
    cassandra = services(compose)["cassandra"]
    env = compose_env()
    # docker exec -it cassandra cqlsh -u cassandra -p cassandra localhost 9042
    assert cassandra["container_name"] == "cassandra"
    assert env["CASSANDRA_USERNAME"] == env["CASSANDRA_PASSWORD"] == "cassandra"
    assert 9042 in {parse_port(p)[2] for p in cassandra["ports"]}


# ---------------------------------------------------------------- images, memory, ports, secrets


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
    airflow = f"apache/airflow:{pinned['AIRFLOW_VERSION']}-python{pinned['PYTHON_VERSION']}"
    assert {images[name] for name in [*AIRFLOW_COMPONENTS, "airflow-init"]} == {airflow}
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


def jvm_heap(service_name: str, env: dict[str, str]) -> int:
    heap = 0
    for key, value in env.items():
        if key.endswith("HEAP_OPTS"):
            match = re.search(r"-Xmx(\d+[kmg])", value, re.I)
            heap += to_bytes(match.group(1)) if match else 0
    for key in (
        "MAX_HEAP_SIZE",
        "SPARK_DAEMON_MEMORY",
        "SPARK_WORKER_MEMORY",
        "SPARK_DRIVER_MEMORY",
    ):
        if key in env:
            heap += to_bytes(env[key])
    return heap


def test_memory_limits_fit_the_readmes_docker_memory_advice(compose: dict[str, Any]) -> None:
    total = 0
    for name, service in long_running(compose).items():
        assert service.get("mem_limit"), f"{name} has no mem_limit"
        limit = to_bytes(service["mem_limit"])
        total += limit
        heap = jvm_heap(name, environment(service))
        assert heap <= 0.75 * limit, (
            f"{name}: JVM heaps {heap >> 20} MiB leave too little of {limit >> 20} MiB"
        )
    assert total <= MEMORY_BUDGET, (
        f"the limits add up to {total / 1024**3:.2f} GiB, more than 8 GiB"
    )
    worker = environment(services(compose)["spark-worker"])
    executor = environment(services(compose)["spark-stream"])["SPARK_EXECUTOR_MEMORY"]
    assert to_bytes(executor) <= to_bytes(worker["SPARK_WORKER_MEMORY"]), (
        "an executor must fit in a worker"
    )


def test_host_ports_bind_to_localhost_by_default() -> None:
    secrets_only = {k: f"x-{k}" for k, v in read_env_file(ENV_EXAMPLE).items() if not v}
    doc = resolve(raw_compose(), {**versions(), **secrets_only, "CASSANDRA_PASSWORD": "x"})
    ports = published_ports(doc)
    assert ports, "no port is published"
    for port, (name, host_ip, _) in ports.items():
        assert host_ip == "127.0.0.1", f"{name} publishes {port} on {host_ip or 'every address'}"


def readme_ports(text: str) -> set[int]:
    """The numbers in the "Port" column(s) of every markdown table whose header names one.

    A row whose "Docker" column says "no" is a local-stack-only port and is left out.
    """
    lines = text.splitlines()
    ports: set[int] = set()
    for i, line in enumerate(lines[:-1]):
        if not line.strip().startswith("|") or not re.match(r"^\s*\|?\s*:?-{3,}", lines[i + 1]):
            continue
        header = [cell.strip() for cell in line.strip().strip("|").split("|")]
        columns = [k for k, cell in enumerate(header) if re.search(r"\bports?\b", cell, re.I)]
        docker = [k for k, cell in enumerate(header) if cell.lower() == "docker"]
        for row in lines[i + 2 :]:
            if not row.strip().startswith("|"):
                break
            cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
            if any(k < len(cells) and cells[k].lower() == "no" for k in docker):
                continue
            for k in columns:
                if k < len(cells):
                    ports |= {int(p) for p in re.findall(r"\b\d{2,5}\b", cells[k])}
    return ports


def test_readme_port_table_parser_reads_the_port_column() -> None:
    table = (
        "| Service | Port | URL |\n|---|---|---|\n"
        "| Airflow UI | 8080 | http://localhost:8080 |\n| Kafka | 9092 | |\n"
    )
    assert readme_ports("intro\n\n" + table + "\nafter 1234\n") == {8080, 9092}
    local_only = (
        "| Service | Port | Docker |\n|---|---|---|\n| UI | 8080 | yes |\n| X | 8765 | no |\n"
    )
    assert readme_ports(local_only) == {8080}


def test_every_port_in_the_readme_port_table_is_published(compose: dict[str, Any]) -> None:
    readme = REPO / "README.md"
    if not readme.is_file():
        pytest.fail(
            "README.md does not exist yet: merge docs-docker-section.md and its port table into it",
            pytrace=False,
        )
    ports = readme_ports(readme.read_text())
    assert ports, "README.md has no markdown table with a 'Port' column"
    missing = sorted(ports - set(published_ports(compose)))
    assert not missing, f"README.md lists ports that docker-compose.yml does not publish: {missing}"


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


def test_docker_files_name_no_package_registry_host() -> None:
    files = [COMPOSE_FILE, DOCKERFILE, ENV_EXAMPLE, RUN_DOCKER, ENTRYPOINT, REPO / ".dockerignore"]
    files += [Path(__file__)] + [p for p in [REPO / "docs-docker-section.md"] if p.is_file()]
    for path in files:
        text = path.read_text()
        for host in REGISTRY_HOSTS:
            assert host not in text, f"{path.name} names {host}"


# ---------------------------------------------------------------- the Spark image


def test_dockerfile_versions_equal_versions_env() -> None:
    args, pinned = dockerfile_args(), versions()
    for name in (
        "SPARK_VERSION",
        "SCALA_BINARY_VERSION_DOCKER",
        "SPARK_CASSANDRA_CONNECTOR_VERSION",
    ):
        assert name in args, f"the Dockerfile has no ARG {name}"
    for name, default in args.items():
        if name in pinned:
            assert default == pinned[name], (
                f"Dockerfile ARG {name}={default} but versions.env says {pinned[name]}"
            )


# The stream job's Python packages in the image, each pinned by an ARG equal to requirements.txt.
IMAGE_PACKAGES = {
    "cassandra-driver": "CASSANDRA_DRIVER_VERSION",
    "pyarrow": "PYARROW_VERSION",
    "msgspec": "MSGSPEC_VERSION",
    "pandas": "PANDAS_VERSION",
}


@pytest.mark.parametrize("package", sorted(IMAGE_PACKAGES))
def test_dockerfile_python_packages_equal_requirements(package: str) -> None:
    arg = IMAGE_PACKAGES[package]
    assert dockerfile_args()[arg] == requirement_pin(package)
    text = " ".join(rest for _, rest in dockerfile_instructions())
    assert f'"{package}==${{{arg}}}"' in text, f"the image does not install {package}==${{{arg}}}"


def test_the_image_installs_the_jobs_packages_and_nothing_the_job_does_not_use() -> None:
    installs = [
        rest for word, rest in dockerfile_instructions() if word == "RUN" and "pip install" in rest
    ]
    assert len(installs) == 1, installs
    installed = set(re.findall(r'"([A-Za-z0-9_.-]+)==', installs[0]))
    assert installed == set(IMAGE_PACKAGES), installed  # kafka-python is the producer's only


def test_connector_coordinates_match_the_spark_build_in_the_image() -> None:
    args = dockerfile_args()
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())

    def expand(value: str) -> str:
        return re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: args[m.group(1)], value)

    tarball = re.search(r'name="(spark-\$\{SPARK_VERSION\}-bin-hadoop3-scala[^"]+)"', text)
    assert tarball, "the Dockerfile does not download a spark-<version>-bin-hadoop3-scala<x> build"
    spark_build = expand(tarball.group(1))
    spark_version, spark_scala = re.fullmatch(
        r"spark-(\S+)-bin-hadoop3-scala(\S+)", spark_build
    ).groups()
    properties = {
        key: expand(value) for key, value in re.findall(r'-D([a-z.]+)="?([^"\s]+)"?', text)
    }
    pom = SPARK_POM.read_text()
    coordinates = {}
    for artifact, version in re.findall(
        r"<artifactId>([^<]+)</artifactId>\s*<version>([^<]+)</version>", pom
    ):
        if artifact == "spark-jars":
            continue
        resolve_prop = lambda v: re.sub(r"\$\{([a-z.]+)\}", lambda m: properties[m.group(1)], v)  # noqa: E731
        coordinates[resolve_prop(artifact)] = resolve_prop(version)
    assert coordinates == {
        f"spark-sql-kafka-0-10_{spark_scala}": spark_version,
        f"spark-cassandra-connector_{spark_scala}": args["SPARK_CASSANDRA_CONNECTOR_VERSION"],
    }, coordinates
    assert spark_scala == versions()["SCALA_BINARY_VERSION_DOCKER"] == "2.13"


def test_dockerfile_builds_the_documented_spark_image() -> None:
    instructions = dockerfile_instructions()
    text = " ".join(f"{word} {rest}" for word, rest in instructions)
    base = [rest for word, rest in instructions if word == "FROM"][-1]
    assert re.fullmatch(r"eclipse-temurin:17-jdk(-\w+)?", base), base
    assert "https://archive.apache.org/dist/spark" in text
    assert "sha512sum --check" in text, "the Spark download must be checked against its SHA-512"
    assert "cassandra-driver==" in text and '"python${PYTHON_VERSION}" -m venv' in text
    assert dockerfile_args()["PYTHON_VERSION"] == versions()["PYTHON_VERSION"]
    user = [rest for word, rest in instructions if word == "USER"][-1]
    assert user.split(":")[0] not in ("0", "root"), "the image must not run as root"
    assert ("COPY", "spark_stream.py /opt/app/spark_stream.py") in instructions
    command = [rest for word, rest in instructions if word == "CMD"][-1]
    assert "spark-submit" in command and "/opt/app/spark_stream.py" in command
    assert "--packages" not in text, (
        "the jars are baked in; nothing is downloaded when the job starts"
    )


def test_dockerignore_lets_in_everything_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            glob = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, glob) or path.startswith(glob + "/"):
                keep = negate
        return keep

    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from" not in rest:
            for source in rest.split()[:-1]:
                assert included(source), (
                    f".dockerignore hides {source}, which the Dockerfile copies"
                )
    assert not included(".env") and not included(".stack/venv"), (
        ".dockerignore must keep secrets and the venv out"
    )


# ---------------------------------------------------------------- run-docker.sh, for real


FAKE_DOCKER = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$FAKE_DOCKER_LOG"
if [[ -n "${FAKE_DOCKER_FAIL_ON:-}" && "$*" == *"$FAKE_DOCKER_FAIL_ON"* ]]; then
    echo "Cannot connect to the Docker daemon" >&2
    exit 1
fi
exit 0
"""


@pytest.fixture
def docker_project(tmp_path: Path) -> Path:
    """A copy of the files run-docker.sh uses, so the real repo's .env is never touched."""
    project = tmp_path / "project"
    (project / "stack").mkdir(parents=True)
    for name in ("run-docker.sh", ".env.example", "docker-compose.yml", "Dockerfile"):
        shutil.copy2(REPO / name, project / name)
    shutil.copy2(VERSIONS_FILE, project / "stack" / "versions.env")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "docker").write_text(FAKE_DOCKER)
    (fake_bin / "docker").chmod(0o755)
    return project


def run_docker_script(
    project: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = project.parent / "docker.log"
    log.write_text("")
    environ = {
        **os.environ,
        "PATH": f"{project.parent / 'bin'}:{os.environ['PATH']}",
        "FAKE_DOCKER_LOG": str(log),
    }
    environ.update(env)
    result = run(["bash", str(project / "run-docker.sh"), *args], cwd=project, env=environ)
    return result, log.read_text().splitlines()


def test_run_docker_without_a_docker_engine_says_so_and_changes_nothing(
    docker_project: Path,
) -> None:
    result, calls = run_docker_script(docker_project, "up", FAKE_DOCKER_FAIL_ON="info")
    assert result.returncode != 0
    assert "docker info" in result.stderr and "./run.sh" in result.stderr, result.stderr
    assert not (docker_project / ".env").exists()
    assert not any(call.startswith("compose") and "up" in call.split() for call in calls)


def test_run_docker_without_docker_installed_says_so(docker_project: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    for command in ("dirname",):
        (bare / command).symlink_to(shutil.which(command))
    result = run(
        [shutil.which("bash"), str(docker_project / "run-docker.sh")], env={"PATH": str(bare)}
    )
    assert result.returncode != 0 and "docker is not installed" in result.stderr, result.stderr


def test_run_docker_up_creates_env_builds_with_pinned_versions_and_waits_for_health(
    docker_project: Path,
) -> None:
    result, calls = run_docker_script(docker_project, "up")
    assert result.returncode == 0, result.stderr

    env_file = docker_project / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    generated = read_env_file(env_file)
    secrets = {k: generated[k] for k, v in read_env_file(ENV_EXAMPLE).items() if not v}
    assert secrets and all(len(v) >= 32 for v in secrets.values()), secrets
    assert len(set(secrets.values())) == len(secrets), "every secret must be different"
    assert len(base64.urlsafe_b64decode(generated["AIRFLOW_FERNET_KEY"])) == 32
    resolve(raw_compose(), {**versions(), **generated})  # no required variable is left empty

    build = next(call.split() for call in calls if " build " in f" {call} ")
    passed = dict(
        build[i + 1].split("=", 1) for i, word in enumerate(build) if word == "--build-arg"
    )
    expected = {k: v for k, v in versions().items() if k in dockerfile_args()}
    assert passed == expected, passed
    up = next(call for call in calls if " up " in f" {call} ")
    assert "--wait" in up.split() and "--detach" in up.split() and "spark-worker=1" in up

    for text in (
        "http://localhost:8080",
        "http://localhost:9021",
        "http://localhost:9090",
        "http://localhost:4040",
        "docker exec -it cassandra cqlsh -u cassandra -p cassandra localhost 9042",
    ):
        assert text in result.stdout, f"run-docker.sh up does not print {text}"


def test_run_docker_up_keeps_an_existing_env(docker_project: Path) -> None:
    run_docker_script(docker_project, "up")
    before = (docker_project / ".env").read_text()
    result, _ = run_docker_script(docker_project, "up")
    assert result.returncode == 0 and (docker_project / ".env").read_text() == before


def test_run_docker_scales_the_spark_workers(docker_project: Path) -> None:
    result, calls = run_docker_script(docker_project, "up", SPARK_WORKERS="3")
    assert result.returncode == 0 and any("--scale spark-worker=3" in call for call in calls), calls


def test_run_docker_reports_a_stack_that_does_not_become_healthy(docker_project: Path) -> None:
    result, calls = run_docker_script(docker_project, "up", FAKE_DOCKER_FAIL_ON="--wait")
    assert result.returncode != 0 and "./run-docker.sh logs" in result.stderr, result.stderr
    assert any(call.endswith("ps --all") for call in calls), "the services' state should be shown"


def test_run_docker_down_and_logs_do_what_they_say(docker_project: Path) -> None:
    run_docker_script(docker_project, "up")
    result, calls = run_docker_script(docker_project, "down", "-v")
    assert result.returncode == 0 and calls[-1].endswith("down -v"), calls
    result, calls = run_docker_script(docker_project, "logs", "spark-stream")
    assert result.returncode == 0 and calls[-1].endswith("logs --follow --tail 200 spark-stream"), (
        calls
    )
    result, _ = run_docker_script(docker_project, "sideways")
    assert result.returncode != 0 and "unknown command" in result.stderr


# ---------------------------------------------------------------- script/entrypoint.sh, for real


FAKE_AIRFLOW = """#!/usr/bin/env bash
printf 'airflow %s\\n' "$*" >> "$FAKE_LOG"
if [[ "$*" == "db check" ]]; then
    count=$(( $(cat "$FAKE_STATE" 2>/dev/null || echo 0) + 1 ))
    echo "$count" > "$FAKE_STATE"
    (( count > ${FAKE_DB_FAILURES:-0} ))
fi
"""
FAKE_PIP = """#!/usr/bin/env bash
printf 'pip %s\\n' "$*" >> "$FAKE_LOG"
"""


@pytest.fixture
def airflow_container(tmp_path: Path) -> dict[str, str]:
    """An environment like an Airflow container's, with stand-in `airflow` and `pip` commands."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name, body in (("airflow", FAKE_AIRFLOW), ("pip", FAKE_PIP)):
        (fake_bin / name).write_text(body)
        (fake_bin / name).chmod(0o755)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("kafka-python==3.0.12\n")
    (tmp_path / "home").mkdir()
    return {
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_STATE": str(tmp_path / "db-checks"),
        "AIRFLOW_REQUIREMENTS_FILE": str(requirements),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
            tmp_path / "auth" / "passwords.json"
        ),
        "POSTGRES_WAIT_INTERVAL": "0.1",
    }


def entrypoint(
    env: dict[str, str], *args: str, **extra: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = Path(env["FAKE_LOG"])
    log.write_text("")
    Path(env["FAKE_STATE"]).unlink(missing_ok=True)
    result = run(["bash", str(ENTRYPOINT), *args], env={**env, **extra})
    return result, log.read_text().splitlines()


@pytest.mark.parametrize("component", sorted(AIRFLOW_COMPONENTS.values()))
def test_entrypoint_runs_the_component_once_postgres_answers(
    airflow_container: dict[str, str], component: str
) -> None:
    result, calls = entrypoint(airflow_container, component, "--flag", FAKE_DB_FAILURES="2")
    assert result.returncode == 0, result.stderr
    assert calls == ["airflow db check"] * 3 + [f"airflow {component} --flag"], calls


def test_entrypoint_gives_up_on_postgres_with_the_fix(airflow_container: dict[str, str]) -> None:
    result, calls = entrypoint(
        airflow_container, "scheduler", FAKE_DB_FAILURES="100000", POSTGRES_WAIT_SECONDS="1"
    )
    assert result.returncode != 0
    assert "Postgres" in result.stderr and "POSTGRES_PASSWORD" in result.stderr, result.stderr
    assert "airflow scheduler" not in calls


def test_entrypoint_installs_requirements_only_when_asked_and_only_once(
    airflow_container: dict[str, str],
) -> None:
    _, calls = entrypoint(airflow_container, "scheduler")
    assert not any(call.startswith("pip") for call in calls), "installed without being asked"

    asked = {**airflow_container, "AIRFLOW_INSTALL_REQUIREMENTS": "true"}
    _, calls = entrypoint(asked, "scheduler")
    installs = [call for call in calls if call.startswith("pip install")]
    assert (
        len(installs) == 1 and f"-r {airflow_container['AIRFLOW_REQUIREMENTS_FILE']}" in installs[0]
    )
    assert calls.index(installs[0]) < calls.index("airflow scheduler")

    _, calls = entrypoint(asked, "scheduler")
    assert not any(call.startswith("pip") for call in calls), (
        "a restart reinstalled unchanged requirements"
    )

    Path(airflow_container["AIRFLOW_REQUIREMENTS_FILE"]).write_text(
        "kafka-python==3.0.12\nrequests\n"
    )
    _, calls = entrypoint(asked, "scheduler")
    assert any(call.startswith("pip install") for call in calls), (
        "changed requirements were not installed"
    )


def test_entrypoint_fails_clearly_when_asked_to_install_a_missing_file(
    airflow_container: dict[str, str],
) -> None:
    result, _ = entrypoint(
        airflow_container,
        "scheduler",
        AIRFLOW_INSTALL_REQUIREMENTS="true",
        AIRFLOW_REQUIREMENTS_FILE="/nope.txt",
    )
    assert result.returncode != 0 and "/nope.txt" in result.stderr


def test_entrypoint_init_writes_the_admin_password_and_migrates(
    airflow_container: dict[str, str],
) -> None:
    password = "p@ss \"quoted\" \\ $HOME 'x'"
    for _ in range(2):  # idempotent: a second run gives the same result
        result, calls = entrypoint(
            airflow_container,
            "init",
            AIRFLOW_ADMIN_USERNAME="admin",
            AIRFLOW_ADMIN_PASSWORD=password,
        )
        assert result.returncode == 0, result.stderr
        assert calls[-1] == "airflow db migrate", calls
    passwords = Path(airflow_container["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert json.loads(passwords.read_text()) == {"admin": password}
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600


def test_entrypoint_init_without_an_admin_password_stops_before_migrating(
    airflow_container: dict[str, str],
) -> None:
    result, calls = entrypoint(airflow_container, "init", AIRFLOW_ADMIN_USERNAME="admin")
    assert result.returncode != 0 and "AIRFLOW_ADMIN_PASSWORD" in result.stderr
    assert "airflow db migrate" not in calls


def test_entrypoint_without_a_component_prints_usage(airflow_container: dict[str, str]) -> None:
    result, calls = entrypoint(airflow_container)
    assert result.returncode != 0 and "usage" in result.stderr and calls == []
