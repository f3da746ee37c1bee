"""The producer against the real local Kafka: topics, exact delivery, keys, counts, pacing, lz4."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import read_topic, topic_end_offsets
from kafka import KafkaAdminClient
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.memory_records import MemoryRecords

from pipeline import config, contract, producer
from pipeline.formatting import Skip, format_user
from standin import StandIn, generate_users


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


def settings_for(kafka_bootstrap: str, topic: str, standin: StandIn, **env: str) -> config.Settings:
    return config.load(
        {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "KAFKA_TOPIC": topic,
            "USERS_API_URL": standin.url,
            "USERS_API_BACKOFF_SECONDS": "0.05",
            **env,
        }
    )


def consume_all(bootstrap: str, topic: str, timeout: float = 60) -> list[Any]:
    """Every message of ``topic``, read up to the end offsets it has now: called once the producer
    has finished, so each message it wrote, a duplicate included, is in the list."""
    return read_topic(bootstrap, topic, topic_end_offsets(bootstrap, topic), timeout)


def partition_count(bootstrap: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
        return len(described["partitions"])
    finally:
        admin.close()


def test_sent_records_arrive_exactly_once_keyed_by_id_as_utf8_json(
    kafka_bootstrap: str, topic: str, standin: StandIn
) -> None:
    settings = settings_for(kafka_bootstrap, topic, standin, KAFKA_TOPIC_PARTITIONS="4")
    assert producer.ensure_topic(settings.kafka) == 4
    assert partition_count(kafka_bootstrap, settings.kafka.topic) == 4
    raw_users = generate_users("kafka-exact", 1, 1500)
    records = []
    for raw in raw_users:
        record = format_user(raw, producer.now_ms())
        assert not isinstance(record, Skip)
        records.append(record)

    kafka_producer = producer.create_producer(settings.kafka)
    try:
        sender = producer.send_records(kafka_producer, settings.kafka, records)
    finally:
        kafka_producer.close()
    assert (sender.queued, sender.delivered, sender.failed) == (1500, 1500, 0)

    messages = consume_all(kafka_bootstrap, settings.kafka.topic)
    assert len(messages) == 1500
    received = {m.key.decode("utf-8"): json.loads(m.value.decode("utf-8")) for m in messages}
    assert received == {r["id"]: r for r in records}  # produced_at included, as sent
    assert len({m.partition for m in messages}) > 1
    non_ascii = next(r for r in records if not r["first_name"].isascii())
    raw_value = next(m.value for m in messages if m.key.decode() == non_ascii["id"])
    assert non_ascii["first_name"].encode("utf-8") in raw_value  # not \u-escaped


def test_invalid_records_are_counted_and_not_sent(
    kafka_bootstrap: str, topic: str, standin: StandIn
) -> None:
    settings = settings_for(kafka_bootstrap, topic, standin)
    producer.ensure_topic(settings.kafka)
    good = format_user(generate_users("invalid", 1, 1)[0], producer.now_ms())
    assert not isinstance(good, Skip)
    bad = {**good, "id": "other", "email": ""}
    kafka_producer = producer.create_producer(settings.kafka)
    try:
        sender = producer.send_records(kafka_producer, settings.kafka, [good, bad])
    finally:
        kafka_producer.close()
    assert sender.delivered == 1
    assert dict(sender.invalid) == {"invalid: missing required field 'email'": 1}
    assert [m.key.decode() for m in consume_all(kafka_bootstrap, settings.kafka.topic)] == [
        good["id"]
    ]


def test_an_unpaced_run_creates_the_topic_and_produces_the_configured_total(
    kafka_bootstrap: str, topic: str, standin: StandIn
) -> None:
    settings = settings_for(
        kafka_bootstrap,
        topic,
        standin,
        USERS_TOTAL="7000",
        USERS_PER_REQUEST="3000",
        USERS_SEED="run-seed",
        USERS_PER_SECOND="0",
        KAFKA_TOPIC_PARTITIONS="3",
    )
    started_ms = producer.now_ms()
    stats = producer.run(settings)
    finished_ms = producer.now_ms()
    assert (stats.fetched, stats.sent, stats.skipped, stats.failed) == (7000, 7000, 0, 0)
    assert (stats.first_page, stats.last_page, stats.partitions) == (1, 3, 3)
    assert stats.as_dict()["rate_per_second"] > 0
    assert stats.as_dict()["paced_per_second"] == 0
    assert partition_count(kafka_bootstrap, settings.kafka.topic) == 3

    expected_raw = [
        *generate_users("run-seed", 1, 3000),
        *generate_users("run-seed", 2, 3000),
        *generate_users("run-seed", 3, 1000),
    ]
    messages = consume_all(kafka_bootstrap, settings.kafka.topic)
    assert len(messages) == 7000
    by_key = {m.key.decode(): json.loads(m.value) for m in messages}
    assert set(by_key) == {u["login"]["uuid"] for u in expected_raw}
    for raw in expected_raw:
        value = by_key[raw["login"]["uuid"]]
        contract.validate(value)
        assert started_ms <= value["produced_at"] <= finished_ms
        assert value == format_user(raw, value["produced_at"])


def test_a_run_whose_api_gives_up_fails_but_keeps_and_counts_what_was_sent(
    kafka_bootstrap: str, topic: str, standin: StandIn
) -> None:
    settings = settings_for(
        kafka_bootstrap,
        topic,
        standin,
        USERS_TOTAL="300",
        USERS_PER_REQUEST="100",
        USERS_SEED="partial",
        USERS_API_MAX_RETRIES="1",
    )
    standin.clear()
    # Page 1 answers normally ({} lets one request through); page 2 fails twice, which spends
    # the budget of one retry.
    standin.add_faults({}, {"status": 503, "count": 2})
    try:
        with pytest.raises(producer.RunFailed) as failure:
            producer.run(settings)
    finally:
        standin.clear()
    message = str(failure.value)
    assert "results=100&seed=partial&page=2" in message and "HTTP 503" in message
    assert "sent 100, skipped 0, failed 0 of 100 fetched" in message
    messages = consume_all(kafka_bootstrap, settings.kafka.topic, timeout=20)
    assert {m.key.decode() for m in messages} == {
        u["login"]["uuid"] for u in generate_users("partial", 1, 100)
    }


def test_a_paced_run_sends_each_record_at_its_due_time_while_the_next_page_is_fetched(
    kafka_bootstrap: str, topic: str, standin: StandIn
) -> None:
    """600 users at 300/s, 200 per page: the sends spread over 2 s like a token bucket's.

    Load can only make sends later, so the bounds below hold on a busy machine; an unpaced
    run (600 users in well under a second, in bursts) breaks both.
    """
    rate, users = 300, 600
    settings = settings_for(
        kafka_bootstrap,
        topic,
        standin,
        USERS_TOTAL=str(users),
        USERS_PER_REQUEST="200",
        USERS_SEED="paced",
        USERS_PER_SECOND=str(rate),
    )
    standin.clear()
    stats = producer.run(settings)
    requests = standin.requests
    assert (stats.sent, stats.failed, stats.paced_per_second) == (users, 0, rate)

    messages = consume_all(kafka_bootstrap, settings.kafka.topic)
    by_key = {m.key.decode(): json.loads(m.value) for m in messages}
    assert len(messages) == len(by_key) == users
    expected_raw = [u for page in (1, 2, 3) for u in generate_users("paced", page, 200)]
    sent_at = [by_key[u["login"]["uuid"]]["produced_at"] for u in expected_raw]
    assert sent_at == sorted(sent_at)  # sent in the order served, each stamped when sent

    # Spread: the 600 sends take about 2 s, not a burst per page.
    assert sent_at[-1] - sent_at[0] >= 1500
    # Never ahead of the rate: sends i..j (stamped in whole ms) fit in their time at `rate`,
    # give or take the pacer's one catch-up burst and its tick.
    pacer = producer.Pacer(rate)
    for i in range(users):
        for j in range(i + 1, users):
            span = (sent_at[j] - sent_at[i] + 1) / 1000 + pacer.tick
            assert j - i <= 1 + pacer.burst + rate * span, (i, j)

    # Fetching ran ahead: each page was requested before the page before it was all sent.
    wall_minus_monotonic_ms = time.time() * 1000 - time.monotonic() * 1000
    requested_ms = [r.started * 1000 + wall_minus_monotonic_ms for r in requests]
    assert [r.query.rsplit("page=", 1)[1] for r in requests] == ["1", "2", "3"]
    for page in (2, 3):
        last_of_previous = sent_at[(page - 1) * 200 - 1]
        assert requested_ms[page - 1] < last_of_previous, page


def test_a_run_s_rate_is_its_sending_the_wait_for_the_first_page_is_set_up(
    kafka_bootstrap: str, topic: str, standin: StandIn
) -> None:
    """A users API that takes 2 s for the first page: that wait is reported on its own, and the
    rate is over the sending only (a cold API must not read as a producer that fell behind)."""
    rate, users = 400, 200
    settings = settings_for(
        kafka_bootstrap,
        topic,
        standin,
        USERS_TOTAL=str(users),
        USERS_SEED="first-page",
        USERS_PER_SECOND=str(rate),
    )
    standin.clear()
    standin.add_faults({"delay": 2.0})
    began = time.monotonic()
    stats = producer.run(settings)
    elapsed = time.monotonic() - began

    messages = consume_all(kafka_bootstrap, topic)
    sent_at = sorted(json.loads(m.value)["produced_at"] for m in messages)
    assert (len(messages), stats.sent) == (users, users)
    # The API's 2 s fall before the sending span, in the wait reported on its own: less the
    # set-up (schema, topic, producer) that overlaps the fetch before the run's clock starts,
    # so bounded by the run, not by a machine's speed.
    assert elapsed - stats.seconds >= 2.0
    assert 0 < stats.first_page_seconds <= elapsed - stats.seconds
    # The sending span holds every send, and the rate is taken over it alone.
    assert stats.seconds >= (sent_at[-1] - sent_at[0] - 1) / 1000
    assert stats.rate == pytest.approx(users / stats.seconds)
    assert stats.as_dict()["first_page_seconds"] == round(stats.first_page_seconds, 3)


def log_segments(bootstrap: str, topic: str) -> list[bytes]:
    """The bytes of each partition's log on the local broker, found through its log dirs."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_log_dirs([topic])
    finally:
        admin.close()
    segments = []
    for broker in described:
        for log_dir in broker["log_dirs"]:
            for described_topic in log_dir["topics"]:
                for partition in described_topic["partitions"]:
                    folder = Path(log_dir["log_dir"]) / f"{topic}-{partition['partition_index']}"
                    segments += [p.read_bytes() for p in sorted(folder.glob("*.log"))]
    return segments


def test_lz4_batches_are_stored_compressed_and_read_back_by_a_consumer(
    kafka_bootstrap: str, topic: str, standin: StandIn
) -> None:
    settings = settings_for(kafka_bootstrap, topic, standin, KAFKA_COMPRESSION="lz4")
    producer.ensure_topic(settings.kafka)
    records = [format_user(raw, producer.now_ms()) for raw in generate_users("lz4", 1, 1000)]
    kafka_producer = producer.create_producer(settings.kafka)
    try:
        sender = producer.send_records(kafka_producer, settings.kafka, records)
    finally:
        kafka_producer.close()
    assert sender.delivered == 1000

    batches = []
    for segment in log_segments(kafka_bootstrap, settings.kafka.topic):
        stored = MemoryRecords(segment)
        while (batch := stored.next_batch()) is not None:
            batches.append(batch)
    assert sum(len(list(batch)) for batch in batches) == 1000
    assert {batch.compression_type for batch in batches} == {DefaultRecordBatch.CODEC_LZ4}
    payload = sum(len(producer.encode_value(r)) for r in records)
    assert sum(len(segment) for segment in log_segments(kafka_bootstrap, topic)) < 0.6 * payload

    messages = consume_all(kafka_bootstrap, settings.kafka.topic)
    received = {m.key.decode(): json.loads(m.value) for m in messages}
    assert len(messages) == 1000
    assert received == {r["id"]: r for r in records}
