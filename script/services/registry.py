"""The schema registry: Apicurio Registry (Confluent-compatible REST API), in-memory, one node.

It holds the record's JSON Schema (`pipeline.registry`); its set-up publishes it on every `up`,
so in-memory storage loses nothing that set-up does not restore. Apicurio 3 is a Quarkus app
that needs Java 21 or newer (`SCHEMA_REGISTRY_JAVA_HOME`); it serves on 127.0.0.1 only.
"""

from __future__ import annotations

import os
from pathlib import Path

import requests

from pipeline import config
from script.jars import resolve_archive
from script.layout import StackError, say, versions
from script.procs import spawn
from script.services.base import NO_C2_JVM_OPTIONS, QUIET_JVM_OPTIONS, Service

MIN_JAVA = 21


def app() -> Path:
    """Apicurio Registry's app (`quarkus-run.jar` and its libs), unpacked once."""
    version = versions()["APICURIO_REGISTRY_VERSION"]
    return resolve_archive(
        "apicurio-registry", f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
    )


def java_feature(home: Path) -> int | None:
    """The Java feature release of the JDK at ``home`` (from its `release` file), None if none."""
    try:
        text = (home / "release").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("JAVA_VERSION="):
            number = line.partition("=")[2].strip('"').split(".")[0]
            return int(number) if number.isdigit() else None
    return None


def find_java(setting: str, java_home: str, jvm_dir: Path = Path("/usr/lib/jvm")) -> Path:
    """The `java` to run the registry with: SCHEMA_REGISTRY_JAVA_HOME, else JAVA_HOME if it is
    21+, else the newest JDK 21+ under ``jvm_dir``; StackError naming the fix if there is none."""
    if setting:
        home = Path(setting)
        if (java_feature(home) or 0) < MIN_JAVA or not (home / "bin" / "java").exists():
            raise StackError(
                f"SCHEMA_REGISTRY_JAVA_HOME={setting} is not a Java {MIN_JAVA}+ JDK (no bin/java "
                "or a `release` file with an older JAVA_VERSION): point it at one"
            )
        return home / "bin" / "java"
    candidates = [Path(java_home)] if java_home else []
    if jvm_dir.is_dir():
        candidates += sorted(jvm_dir.iterdir(), key=lambda h: java_feature(h) or 0, reverse=True)
    for home in candidates:
        if (java_feature(home) or 0) >= MIN_JAVA and (home / "bin" / "java").exists():
            return home / "bin" / "java"
    raise StackError(
        f"the schema registry (Apicurio) needs Java {MIN_JAVA} or newer, and none was found "
        f"(JAVA_HOME={java_home or '(empty)'}, {jvm_dir}): install one (e.g. a Temurin 21 JDK) "
        "and set SCHEMA_REGISTRY_JAVA_HOME to its folder"
    )


class SchemaRegistry(Service):
    name = "schema-registry"
    timeout = 90

    @property
    def port(self) -> int:
        return config.load().stack.registry_port

    def download(self) -> Path:
        return app()

    def start(self) -> None:
        settings = config.load().stack
        java = find_java(settings.registry_java_home, settings.java_home)
        home = app()
        env = {**os.environ, "JAVA_HOME": str(java.parent.parent)}
        spawn(
            self.name,
            [
                str(java),
                f"-Xmx{settings.registry_heap}",
                "-XX:+UseSerialGC",  # one small heap: the fewest GC threads and the least memory
                *QUIET_JVM_OPTIONS,
                *NO_C2_JVM_OPTIONS,
                f"-Dquarkus.http.port={self.port}",
                "-Dquarkus.http.host=127.0.0.1",
                # Quarkus' management interface (health, metrics; unused here) would listen on
                # 0.0.0.0:9000: loopback, on a port the system picks
                "-Dquarkus.management.host=127.0.0.1",
                "-Dquarkus.management.port=0",
                "-jar",
                str(home / "quarkus-run.jar"),
            ],
            env=env,
        )

    def probe(self) -> str | None:
        url = config.load().registry.url
        try:
            reply = requests.get(f"{url}/subjects", timeout=3)
        except requests.RequestException as exc:
            return f"no answer on :{self.port} ({exc.__class__.__name__})"
        return None if reply.status_code == 200 else f"{url}/subjects: HTTP {reply.status_code}"

    def set_up(self) -> None:
        """The record's schema under `<KAFKA_TOPIC>-value`, with SCHEMA_COMPATIBILITY."""
        from pipeline import registry

        settings = config.load()
        try:
            schema_id = registry.publish(settings)
        except registry.RegistryError as exc:
            raise StackError(f"schema-registry: {exc}") from exc
        name = registry.subject(settings.kafka.topic)
        say(
            f"  schema-registry: {name} is schema id {schema_id} "
            f"({settings.registry.compatibility})"
        )
