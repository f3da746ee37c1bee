"""What the docs and run-docker.sh's greeting tell a user about the Docker stack is what
docker-compose.yml does: the ports in the port table (docs/configuration.md) are exactly the ones
published, each URL the Docker page (docs/docker.md) and the greeting give reaches a service's
HTTP port, and every `docker exec ... cqlsh` command of the README, the docs and the greeting
logs in to the Cassandra container with the login Compose gives it (.env from .env.example).
"""

from __future__ import annotations

import re
from typing import Any

from compose_helpers import (
    DOCKER_DOCS,
    RUN_DOCKER,
    container_ports,
    environment,
    published_ports,
    services,
)
from docs_pages import name, page, pages


def markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Each markdown table of ``text`` as a list of rows, a row as {header: cell}."""
    lines = text.splitlines()
    tables = []
    for i, line in enumerate(lines[:-1]):
        if not line.strip().startswith("|") or not re.match(r"^\s*\|?\s*:?-{3,}", lines[i + 1]):
            continue
        header = [cell.strip().lower() for cell in line.strip().strip("|").split("|")]
        rows = []
        for row in lines[i + 2 :]:
            if not row.strip().startswith("|"):
                break
            cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
            rows.append(dict(zip(header, cells, strict=False)))
        tables.append(rows)
    return tables


def docs_docker_ports() -> dict[int, str]:
    """Port -> service, from each table of docs/configuration.md with a "Port" column; a row
    whose "Docker" column says "no" is a local-stack-only port and is left out."""
    ports: dict[int, str] = {}
    for table in markdown_tables(page("configuration").read_text()):
        for row in table:
            if "port" not in row or row.get("docker", "").lower() == "no":
                continue
            for port in re.findall(r"\b\d{2,5}\b", row["port"]):
                ports[int(port)] = next(iter(row.values()))
    return ports


def greeting() -> str:
    """What run-docker.sh prints once the stack is healthy."""
    match = re.search(r"^print_urls\(\) \{$(.*?)^\}$", RUN_DOCKER.read_text(), re.M | re.S)
    assert match, "run-docker.sh has no print_urls function"
    return match.group(1)


def test_every_port_in_the_docs_port_table_is_published(compose: dict[str, Any]) -> None:
    ports = docs_docker_ports()
    assert ports, "docs/configuration.md has no markdown table with a 'Port' column"
    missing = sorted(set(ports) - set(published_ports(compose)))
    assert not missing, f"the port table lists ports docker-compose.yml does not publish: {missing}"


def test_every_published_port_is_in_the_docs_port_table(compose: dict[str, Any]) -> None:
    undocumented = {
        port: service
        for port, (service, _, _) in published_ports(compose).items()
        if port not in docs_docker_ports()
    }
    assert not undocumented, f"docker-compose.yml publishes ports the table omits: {undocumented}"


def test_every_url_the_docker_docs_and_run_docker_give_reaches_a_services_http_port(
    compose: dict[str, Any],
) -> None:
    published = published_ports(compose)
    for where, text in (("docs/docker.md", DOCKER_DOCS.read_text()), ("run-docker.sh", greeting())):
        urls = set(re.findall(r"http://localhost:(\d+)", text))
        assert len(urls) >= 4, f"{where} gives no Airflow, Control Center and Spark URLs: {urls}"
        for port in sorted(map(int, urls)):
            assert port in published, f"{where}: http://localhost:{port} is not published"
            name, _, target = published[port]
            probe = " ".join(map(str, services(compose)[name]["healthcheck"]["test"]))
            assert f"http://localhost:{target}/" in probe, (
                f"{where}: http://localhost:{port} is {name}'s port {target}, "
                "which its healthcheck does not probe over HTTP"
            )


CQLSH = re.compile(
    r"docker exec -it (?P<container>\S+) cqlsh -u (?P<user>\S+) -p (?P<password>\S+) "
    r"(?P<host>\S+) (?P<port>\d+)"
)


def test_the_cqlsh_commands_log_in_to_the_cassandra_container(compose: dict[str, Any]) -> None:
    texts = {name(path): " ".join(path.read_text().split()) for path in pages()}
    texts["run-docker.sh"] = greeting()
    commands = {where: [m.groupdict() for m in CQLSH.finditer(t)] for where, t in texts.items()}
    for where in ("README.md", "docs/docker.md", "run-docker.sh"):
        assert commands[where], f"no `docker exec ... cqlsh` command in {where}"
    by_container = {s.get("container_name"): s for s in services(compose).values()}
    for where, found in commands.items():
        for command in found:
            service = by_container.get(command["container"])
            assert service, f"{where}: no service has container_name {command['container']}"
            assert service["image"].startswith("cassandra:"), (where, service["image"])
            env = environment(service)  # as Compose sets it from .env.example
            assert (command["user"], command["password"]) == (
                env["CASSANDRA_ADMIN_USERNAME"],
                env["CASSANDRA_ADMIN_PASSWORD"],
            ), f"{where}: cqlsh logs in as {command['user']}, Compose sets another admin login"
            assert command["host"] == "localhost", where  # run inside the container
            assert int(command["port"]) in container_ports(service), (where, command["port"])
