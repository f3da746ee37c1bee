"""Reading the Docker stack's files the way Docker reads them, for the tests that need no engine.

docker-compose.yml is parsed by PyYAML (merge keys included); what Compose adds on top of YAML,
``${VAR:-default}`` interpolation with .env (from .env.example) and stack/versions.env, and the
merge of an override file (docker-compose.cluster.yml) into it, is done here, as are the readers
of Compose's short syntaxes (ports, volumes, durations, sizes) and of the Dockerfile's ARG and
instruction lines. Tools come from the venv that runs pytest; a missing one fails the test with
the fix.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMPOSE_FILE = REPO / "docker-compose.yml"
CLUSTER_FILE = REPO / "docker-compose.cluster.yml"
DOCKERFILE = REPO / "Dockerfile"
AIRFLOW_DOCKERFILE = REPO / "airflow.Dockerfile"
AIRFLOW_REQUIREMENTS = REPO / "requirements-airflow.txt"
ENV_EXAMPLE = REPO / ".env.example"
VERSIONS_FILE = REPO / "stack" / "versions.env"
SPARK_POM = REPO / "stack" / "spark-jars.pom.xml"
RUN_DOCKER = REPO / "run-docker.sh"
ENTRYPOINT = REPO / "script" / "entrypoint.sh"
DOCKER_DOCS = REPO / "docs" / "docker.md"  # the Docker page of the docs

AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}


# kafka-topics for kafka-init's script: logs its arguments to $FAKE_LOG; --describe reports the
# topic with $FAKE_REPLICAS replicas (default: what the script asked to create).
FAKE_KAFKA_TOPICS = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$FAKE_LOG"
if [[ " $* " == *" --describe "* ]]; then
    printf 'Topic: %s\\tPartitionCount: 3\\tReplicationFactor: %s\\tConfigs: \\n' \\
        "$KAFKA_TOPIC" "${FAKE_REPLICAS:-$KAFKA_REPLICATION_FACTOR}"
fi
"""


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


def compose_text(path: Path = COMPOSE_FILE) -> str:
    """docker-compose.yml (or the Compose file at ``path``) without its comment lines."""
    lines = path.read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def versions() -> dict[str, str]:
    return read_env_file(VERSIONS_FILE)


def compose_env(**overrides: str) -> dict[str, str]:
    """What Compose sees after ./run-docker.sh: .env from .env.example (secrets filled in), and
    nothing from the shell, so the versions are docker-compose.yml's defaults."""
    env = {}
    for key, value in read_env_file(ENV_EXAMPLE).items():
        env[key] = value or f"generated-{key.lower()}"
    env.update(overrides)
    return env


def compose_variables(shell: dict[str, str], dotenv: Path) -> dict[str, str]:
    """The variables Compose interpolates with: .env's, each overridden by the shell's."""
    return {**read_env_file(dotenv), **shell}


def compose_with(**overrides: str) -> dict[str, Any]:
    """docker-compose.yml as Compose resolves it with ``overrides`` set in .env."""
    try:
        return resolve(raw_compose(), compose_env(**overrides))
    except MissingVariable as missing:
        pytest.fail(
            f"docker-compose.yml requires a variable .env.example lacks: {missing}", pytrace=False
        )


def raw_cluster() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_FILE.read_text())


def cluster_with(**overrides: str) -> dict[str, Any]:
    """``docker compose -f docker-compose.yml -f docker-compose.cluster.yml`` as Compose resolves
    it with ``overrides`` set in .env: each file interpolated, then the second merged into the
    first."""
    env = compose_env(**overrides)
    try:
        return merge_compose(resolve(raw_compose(), env), resolve(raw_cluster(), env))
    except MissingVariable as missing:
        pytest.fail(
            f"the Compose files require a variable .env.example lacks: {missing}", pytrace=False
        )


# Compose's merge of a later file into an earlier one (the Compose specification's "Merge and
# override", as compose-go implements it): mappings key by key, the later value winning; other
# sequences appended; the exceptions below, named by their path inside a service.
_REPLACED = {("command",), ("entrypoint",), ("healthcheck", "test")}
# Written as a sequence or a mapping; merged as mappings, key by key.
_KEYED = {
    ("environment",),
    ("labels",),
    ("annotations",),
    ("sysctls",),
    ("build", "args"),
    ("depends_on",),
    ("networks",),
}


def _port_key(entry: Any) -> tuple[str, str, str, str]:
    host_ip, published, target = parse_port(entry)
    protocol = entry.get("protocol", "tcp") if isinstance(entry, dict) else "tcp"
    if isinstance(entry, str) and "/" in entry:
        protocol = entry.rsplit("/", 1)[1]
    return host_ip, str(published or ""), str(target), protocol


def _mount_target(entry: Any) -> str:
    return str(entry["target"]) if isinstance(entry, dict) else str(entry).split(":")[1]


# Sequences whose entries are unique by a key: a later entry with the same key replaces the
# earlier one in place.
_UNIQUE = {
    ("ports",): _port_key,
    ("volumes",): _mount_target,
    ("secrets",): _mount_target,
    ("configs",): _mount_target,
}


def _as_mapping(value: Any, where: tuple[str, ...]) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if where == ("depends_on",):  # the short syntax: started, not healthy
        return {name: {"condition": "service_started"} for name in value}
    if where == ("networks",):
        return {name: None for name in value}
    result: dict[str, Any] = {}
    for item in value:
        key, sep, rest = str(item).partition("=")
        result[key] = rest if sep else None
    return result


def merge_compose(base: Any, later: Any, path: tuple[str, ...] = ()) -> Any:
    """``later`` merged into ``base`` the way Compose merges its ``-f`` files (neither changed)."""
    where = path[2:] if path[:1] == ("services",) and len(path) >= 2 else None
    if later is None:
        return base
    if where in _REPLACED:
        return later
    if where in _KEYED:
        base, later = _as_mapping(base, where), _as_mapping(later, where)
    if isinstance(base, dict) and isinstance(later, dict):
        merged = dict(base)
        for key, value in later.items():
            merged[key] = merge_compose(base[key], value, (*path, key)) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(later, list):
        if where not in _UNIQUE:
            return base + later
        entries: dict[Any, Any] = {}
        for entry in base + later:
            entries[_UNIQUE[where](entry)] = entry  # a dict keeps the first key's position
        return list(entries.values())
    return later


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


def memory_totals(doc: dict[str, Any]) -> dict[str, int]:
    """The long-running services' limits (times their replicas) added up: "default" as
    `docker compose up` starts them, "small" without Control Center (CONTROL_CENTER_REPLICAS=0)."""
    totals = {"default": 0, "small": 0}
    for name, service in long_running(doc).items():
        assert service.get("mem_limit"), f"{name} has no mem_limit"
        limit = to_bytes(service["mem_limit"]) * int(
            (service.get("deploy") or {}).get("replicas", 1)
        )
        totals["default"] += limit
        if name != "control-center":
            totals["small"] += limit
    return totals


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


def container_ports(service: dict[str, Any]) -> set[int]:
    return {parse_port(p)[2] for p in service.get("ports") or []}


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


def jvm_heap(env: dict[str, str]) -> int:
    """The bytes of the JVM heaps a service's environment sets (``*_HEAP_OPTS`` -Xmx, Cassandra's
    MAX_HEAP_SIZE, Spark's daemon, worker and driver memory)."""
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


def seconds(duration: str) -> float:
    """A Compose duration (``40s``, ``1m30s``, ``500ms``) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), duration
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    return sum(float(n) * unit[u] for n, u in parts)


def dockerfile_args(path: Path = DOCKERFILE) -> dict[str, str]:
    """ARG NAME=default lines (the first default wins, as the global ARGs come first)."""
    args: dict[str, str] = {}
    for match in re.finditer(r"^ARG\s+([A-Z0-9_]+)=(\S+)\s*$", path.read_text(), re.M):
        args.setdefault(match.group(1), match.group(2))
    return args


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def requirement_lines(path: Path = REPO / "requirements.txt") -> list[str]:
    """The requirement lines of ``path`` and of the files it includes with ``-r``, as pip reads
    them (comments and blank lines dropped)."""
    lines = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            lines += requirement_lines(path.parent / line[3:].strip())
        elif line:
            lines.append(line)
    return lines


def requirement_name(line: str) -> str:
    """The distribution a requirement line names, normalised (``kafka-python[lz4]==x`` ->
    ``kafka-python``)."""
    name = re.match(r"[A-Za-z0-9_.-]+", line).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pin(package: str) -> str:
    for line in requirement_lines():
        match = re.match(rf"^{re.escape(package)}(\[[^]]*\])?==(\S+)", line, re.I)
        if match:
            return match.group(2)
    pytest.fail(f"requirements.txt does not pin {package}", pytrace=False)


def start_order(all_services: dict[str, dict[str, Any]]) -> list[str]:
    """The services in an order `up` can start them (each after its depends_on); the test fails
    on a cycle."""
    graph = {name: set(s.get("depends_on") or {}) for name, s in all_services.items()}
    started: list[str] = []
    while graph:
        ready = sorted(name for name, deps in graph.items() if deps <= set(started))
        assert ready, f"depends_on has a cycle among {sorted(graph)}"
        started += ready
        for name in ready:
            del graph[name]
    return started
