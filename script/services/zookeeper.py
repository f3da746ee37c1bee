"""ZooKeeper for Kafka: the QuorumPeerMain that ships in Kafka's jars, one node."""

from __future__ import annotations

import socket
from pathlib import Path

from pipeline import config
from script.layout import DATA, JARS, STACK_CONF
from script.procs import spawn
from script.services.base import NO_C2_JVM_OPTIONS, QUIET_JVM_OPTIONS, Service, java, render
from script.services.kafka import kafka_jars


class ZooKeeper(Service):
    name = "zookeeper"
    timeout = 60

    @property
    def port(self) -> int:
        return config.load().stack.zookeeper_port

    def download(self) -> Path:
        return kafka_jars()  # ZooKeeper runs from Kafka's jars

    def start(self) -> None:
        (DATA / "zookeeper").mkdir(parents=True, exist_ok=True)
        cfg = render("zookeeper.properties", zookeeper_port=self.port)
        spawn(
            self.name,
            [
                java(),
                "-Xms128m",
                "-Xmx256m",
                "-XX:+UseG1GC",
                *QUIET_JVM_OPTIONS,
                *NO_C2_JVM_OPTIONS,
                f"-Dlog4j.configuration=file:{STACK_CONF / 'log4j.properties'}",
                "-cp",
                f"{JARS / 'kafka'}/*",
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                str(cfg),
            ],
        )

    def probe(self) -> str | None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"srvr")
                reply = s.recv(4096)
        except OSError as exc:
            return f"no answer on :{self.port} ({exc})"
        return None if b"Mode:" in reply else "not serving yet"
