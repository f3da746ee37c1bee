"""The benchmark's idle part counts only spans in which no user reached the topic: the DAG's
daily run (midnight UTC) once fell into an idle run, and the stack's "idle" median read 6.9 %
with a max of 134 %. Real Kafka; the spans are short, and the figures are not asserted."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from script.benchmark import parts
from script.layout import StackError


@pytest.fixture
def users_topic(topic: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh topic of one partition, made the users' topic of the benchmark's settings."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    monkeypatch.setenv("KAFKA_TOPIC", topic)
    return topic


def measure_and_send(
    monkeypatch: pytest.MonkeyPatch, bootstrap: str, topic: str, sends: list[int]
) -> list[dict[str, float]]:
    """Make each idle span (the real measurement, 0.5 s) end with ``sends[i]`` messages sent
    to ``topic`` and acknowledged; return what each span measured."""
    measured: list[dict[str, float]] = []
    measure = parts.idle_cpu

    def span(_seconds: float) -> dict[str, float]:
        cpu = measure(0.5)
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        try:
            for _ in range(sends[min(len(measured), len(sends) - 1)]):
                producer.send(topic, b"{}").get(timeout=30)
        finally:
            producer.close()
        measured.append(cpu)
        return cpu

    monkeypatch.setattr(parts, "idle_cpu", span)
    return measured


def test_a_span_in_which_users_flowed_is_said_and_measured_again(
    users_topic: str,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    measured = measure_and_send(monkeypatch, kafka_bootstrap, users_topic, [3, 0])
    result = parts.quiet_cpu(60)
    assert len(measured) == 2
    assert result is measured[1]
    assert f"not idle: 3 messages reached {users_topic}" in capsys.readouterr().out


def test_users_flowing_through_every_span_stop_the_part_with_what_to_do(
    users_topic: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured = measure_and_send(monkeypatch, kafka_bootstrap, users_topic, [1])
    with pytest.raises(StackError, match="pause user_automation"):
        parts.quiet_cpu(60)
    assert len(measured) == parts.IDLE_ATTEMPTS
