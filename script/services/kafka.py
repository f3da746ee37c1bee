"""Kafka 3.9, one broker (ZooKeeper mode); its set-up creates the pipeline's topic."""

from __future__ import annotations

from pathlib import Path

from pipeline import config
from script.jars import resolve_service_jars
from script.layout import DATA, JARS, LOGS, STACK_CONF, StackError, say, versions
from script.procs import spawn
from script.services.base import Service, java, render


def kafka_jars() -> Path:
    """Kafka's jars (the broker's and ZooKeeper's), resolved once into .stack/jars/kafka."""
    v = versions()
    artifact = f"kafka_{v['KAFKA_SCALA_VERSION']}"
    return resolve_service_jars(
        "kafka", "org.apache.kafka", artifact, v["KAFKA_VERSION"], pom="kafka-jars.pom.xml"
    )


class Kafka(Service):
    name = "kafka"
    timeout = 120

    @property
    def port(self) -> int:
        """The listener's: the port of KAFKA_BOOTSTRAP_SERVERS' first broker."""
        return int(config.load().kafka.bootstrap_servers.split(",")[0].rpartition(":")[2])

    def download(self) -> Path:
        return kafka_jars()

    def start(self) -> None:
        (DATA / "kafka").mkdir(parents=True, exist_ok=True)
        settings = config.load().stack
        cfg = render(
            "kafka-server.properties", kafka_port=self.port, zookeeper_port=settings.zookeeper_port
        )
        heap = settings.kafka_heap
        spawn(
            self.name,
            [
                java(),
                f"-Xms{heap}",
                f"-Xmx{heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{STACK_CONF / 'log4j.properties'}",
                f"-Dkafka.logs.dir={LOGS}",
                "-cp",
                f"{JARS / 'kafka'}/*",
                "kafka.Kafka",
                str(cfg),
            ],
        )

    def probe(self) -> str | None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=config.load().kafka.bootstrap_servers, request_timeout_ms=3000
            )
        except (KafkaError, OSError) as exc:
            return f"no metadata from :{self.port} ({exc.__class__.__name__})"
        try:
            brokers = admin.describe_cluster().get("brokers", [])
        except (KafkaError, OSError) as exc:
            return f"metadata request failed ({exc.__class__.__name__})"
        finally:
            admin.close()
        return None if brokers else "no broker registered yet"

    def set_up(self) -> None:
        """The pipeline's topic (KAFKA_TOPIC), with KAFKA_TOPIC_PARTITIONS partitions if new."""
        from kafka.errors import KafkaError

        from pipeline.producer import RunFailed, ensure_topic

        kafka = config.load().kafka
        try:
            partitions = ensure_topic(kafka)  # leaves an existing topic as it is
        except (RunFailed, KafkaError) as exc:
            raise StackError(
                f"kafka: could not create topic {kafka.topic} (KAFKA_TOPIC, "
                f"KAFKA_TOPIC_PARTITIONS={kafka.partitions}, KAFKA_REPLICATION_FACTOR="
                f"{kafka.replication_factor}) at {kafka.bootstrap_servers}: {exc}"
            ) from exc
        say(f"  kafka: topic {kafka.topic} is there ({partitions} partition(s))")
