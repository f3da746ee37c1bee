"""Kafka 3.9 in ZooKeeper mode: one broker per address of KAFKA_BOOTSTRAP_SERVERS (one, or three
in the cluster topology); the last broker's set-up creates the pipeline's topic."""

from __future__ import annotations

from pathlib import Path

from pipeline import config
from script.jars import resolve_service_jars
from script.layout import DATA, JARS, LOGS, STACK_CONF, StackError, say, versions
from script.procs import spawn
from script.services.base import QUIET_JVM_OPTIONS, Service, address, java, render


def kafka_jars() -> Path:
    """Kafka's jars (the broker's and ZooKeeper's), resolved once into .stack/jars/kafka."""
    v = versions()
    artifact = f"kafka_{v['KAFKA_SCALA_VERSION']}"
    return resolve_service_jars(
        "kafka", "org.apache.kafka", artifact, v["KAFKA_VERSION"], pom="kafka-jars.pom.xml"
    )


class Kafka(Service):
    timeout = 120

    def __init__(self, broker: int = 1) -> None:
        self.broker = broker  # its place in KAFKA_BOOTSTRAP_SERVERS; its broker.id is one less
        self.name = "kafka" if broker == 1 else f"kafka-{broker}"

    @property
    def address(self) -> tuple[str, int]:
        """Its entry of KAFKA_BOOTSTRAP_SERVERS: (host as clients name it, port)."""
        return config.load().kafka.brokers[self.broker - 1]

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def host(self) -> str:  # type: ignore[override]
        return address(self.address[0])

    def download(self) -> Path:
        return kafka_jars()

    def start(self) -> None:
        (DATA / self.name).mkdir(parents=True, exist_ok=True)
        settings = config.load()
        kafka = settings.kafka
        cfg = render(
            "kafka-server.properties",
            f"{self.name}.properties",
            broker_id=self.broker - 1,
            listen_host=self.host,
            advertised_host=self.address[0],
            kafka_port=self.port,
            zookeeper_port=settings.stack.zookeeper_port,
            log_dir=DATA / self.name,
            # The internal topics' replicas: as many as the pipeline's topic, within the brokers.
            replication_factor=min(kafka.replication_factor, len(kafka.brokers)),
            min_insync_replicas=kafka.min_insync_replicas,
        )
        heap = settings.stack.kafka_heap
        spawn(
            self.name,
            [
                java(),
                f"-Xms{heap}",
                f"-Xmx{heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                *QUIET_JVM_OPTIONS,
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

        host, port = self.address
        try:
            admin = KafkaAdminClient(bootstrap_servers=f"{host}:{port}", request_timeout_ms=3000)
        except (KafkaError, OSError) as exc:
            return f"no metadata from {host}:{port} ({exc.__class__.__name__})"
        try:
            brokers = admin.describe_cluster().get("brokers", [])
        except (KafkaError, OSError) as exc:
            return f"metadata request failed ({exc.__class__.__name__})"
        finally:
            admin.close()
        ids = {b.get("broker_id") for b in brokers}
        return None if self.broker - 1 in ids else f"broker {self.broker - 1} not registered yet"

    def set_up(self) -> None:
        """The last broker's: the pipeline's topic (KAFKA_TOPIC), with KAFKA_TOPIC_PARTITIONS
        partitions, KAFKA_REPLICATION_FACTOR replicas and KAFKA_MIN_INSYNC_REPLICAS if new."""
        from kafka.errors import KafkaError

        if self.broker != len(config.load().kafka.brokers):
            return
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
        say(
            f"  kafka: topic {kafka.topic} is there ({partitions} partition(s), "
            f"{kafka.replication_factor} replica(s), min.insync.replicas "
            f"{kafka.min_insync_replicas})"
        )
