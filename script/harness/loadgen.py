"""A load generator: valid user records into a Kafka topic at a steady rate, in its own process.

``./run.sh worker loadgen --topic T --rate 1000 --seconds 60`` (``--rate 0``: as fast
as it can; ``--count N``: stop after N records). It runs apart from the benchmark so that it has
a GIL of its own, and it prepares everything before the clock starts: a pool of records from
the bundled stand-in's users, formatted by ``pipeline.formatting.format_user`` and encoded like
the producer encodes them, split around ``id`` and ``produced_at``. A send then only joins bytes:
a unique id (``--tag`` and a sequence number, so no two records upsert the same row) and the
send time in epoch milliseconds. It is keyed by that id like the producer's, but put on the
topic's partitions in turn rather than by the key's hash.

It sends through librdkafka (``confluent-kafka``), with the producer's settings (acks=all,
idempotent, the same compression, linger and batch size), not through the producer's
kafka-python: the generator shares the machine with the job it measures, and kafka-python
builds each record in Python: 54 % of a core at 35,000 records/s on a 2-core development
machine, where librdkafka takes 16 % (``docs/benchmark.md``). The producer's own rate is
the bench's ``producer`` part.

Sending happens in time slices (``--slice-ms``): at each slice it sends what the rate says is
due by now and sleeps until the next slice, so it holds the rate without spinning. It prints
one line ``started <epoch ms>`` when the first slice goes out, and at the end (after the
duration, the count, or SIGTERM) flushes and prints one JSON line with what it actually sent.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from pipeline import config, producer
from pipeline.config import KafkaSettings
from pipeline.formatting import Skip, format_user

ID_MARK = "@ID@"  # placeholder ids and times, replaced by the split below
_TIME_TAIL = b"0}"


@dataclass(frozen=True)
class Template:
    """One encoded record cut in two around its id; ``produced_at`` (last field) goes at the end."""

    before_id: bytes  # b'{"id":"'
    after_id: bytes  # b'","first_name":...,"produced_at":'


def make_template(record: dict[str, Any]) -> Template:
    """Cut ``record``'s producer encoding around ``id`` and ``produced_at``.

    The record must have ``id`` first and ``produced_at`` last, as ``format_user`` builds it.
    """
    encoded = producer.encode_value({**record, "id": ID_MARK, "produced_at": 0})
    before, mark, after = encoded.partition(ID_MARK.encode())
    if not mark or not after.endswith(b'"produced_at":' + _TIME_TAIL):
        raise ValueError("a record must start with id and end with produced_at")
    return Template(before, after[: -len(_TIME_TAIL)])


def message(template: Template, record_id: bytes, produced_at_ms: int) -> bytes:
    """The message value of one record: the template with its id and send time filled in."""
    return b"%s%s%s%d}" % (template.before_id, record_id, template.after_id, produced_at_ms)


def record_id(tag: str, seq: int) -> bytes:
    """A unique id per benchmark record: ``<tag>-<12-digit sequence>``."""
    return b"%s-%012d" % (tag.encode(), seq)


def templates(pool: int) -> list[Template]:
    """``pool`` templates from the stand-in's users, formatted as the producer formats them."""
    from standin import generate_users

    out = []
    for raw in generate_users("benchmark", 1, pool):
        record = format_user(raw, 0)
        if not isinstance(record, Skip):
            out.append(make_template(record))
    return out


def due(rate: float, elapsed: float) -> int:
    """How many records a steady ``rate`` has due after ``elapsed`` seconds."""
    return int(rate * elapsed)


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """librdkafka's names for the producer's settings (``producer.producer_config``)."""
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": f"{producer.CLIENT_ID}-loadgen",
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": kafka.compression,
        "linger.ms": kafka.linger_ms,
        "batch.size": kafka.batch_size,
        "message.timeout.ms": int(kafka.delivery_timeout_seconds * 1000),
        "allow.auto.create.topics": False,
    }


def topic_partitions(client: Producer, topic: str, timeout: float) -> list[int]:
    """The topic's partition numbers; a loud error when it does not exist."""
    try:
        meta = client.list_topics(topic, timeout=timeout).topics[topic]
    except KafkaException as exc:
        raise SystemExit(f"loadgen: no answer from Kafka about topic {topic}: {exc}") from exc
    if meta.error is not None or not meta.partitions:
        raise SystemExit(f"loadgen: topic {topic} has no partitions ({meta.error}): create it")
    return sorted(meta.partitions)


def run(args: argparse.Namespace) -> dict[str, Any]:
    kafka = config.load(
        {
            **os.environ,
            "KAFKA_TOPIC": args.topic,
            "KAFKA_COMPRESSION": args.compression,
            "KAFKA_LINGER_MS": str(args.linger_ms),
        }
    ).kafka
    pool = templates(args.pool)
    client = Producer(client_config(kafka))
    # Records go round the partitions in turn (the key's hash costs CPU the measured job lacks).
    partitions = topic_partitions(client, args.topic, kafka.delivery_timeout_seconds)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    failed_count = [0]
    errors: list[str] = []

    def delivered(err: KafkaError | None, _msg: Any) -> None:  # runs in poll() and flush()
        if err is not None:
            failed_count[0] += 1
            if len(errors) < 5:
                errors.append(str(err))

    def send(value: bytes, key: bytes, partition: int) -> None:
        while True:
            try:
                client.produce(args.topic, value, key, partition, on_delivery=delivered)
                return
            except BufferError:  # librdkafka's queue is full: let it deliver some first
                client.poll(0.01)

    limit = args.count or None
    slice_s = args.slice_ms / 1000
    per_second: list[int] = []
    sent = 0
    start_ms = time.time_ns() // 1_000_000
    started = time.monotonic()
    print(f"started {start_ms}", flush=True)
    while not stop.is_set():
        elapsed = time.monotonic() - started
        if args.seconds and elapsed >= args.seconds:
            break
        target = due(args.rate, elapsed + slice_s) if args.rate else sent + 2000
        if limit is not None:
            target = min(target, limit)
        now_ms = time.time_ns() // 1_000_000
        second = int(elapsed)
        while len(per_second) <= second:
            per_second.append(0)
        for seq in range(sent, target):
            rid = record_id(args.tag, seq)
            value = message(pool[seq % len(pool)], rid, now_ms)
            partition = partitions[seq % len(partitions)]
            send(value, rid, partition)
        client.poll(0)  # delivery reports
        per_second[second] += max(0, target - sent)
        sent = max(sent, target)
        if limit is not None and sent >= limit:
            break
        if args.rate:
            # Sleep to the next slice boundary; a late slice catches up on the next one.
            next_at = started + (int(elapsed / slice_s) + 1) * slice_s
            stop.wait(max(0.0, next_at - time.monotonic()))
    send_seconds = time.monotonic() - started
    end_ms = time.time_ns() // 1_000_000
    undelivered = client.flush(kafka.delivery_timeout_seconds)
    if undelivered:
        failed_count[0] += undelivered
        errors.append(f"{undelivered} not delivered within KAFKA_DELIVERY_TIMEOUT_SECONDS")
    return {
        "topic": args.topic,
        "target_rate": args.rate,
        "sent": sent,
        "failed": failed_count[0],
        "errors": errors,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "seconds": round(send_seconds, 3),
        "achieved_rate": round(sent / send_seconds, 1) if send_seconds > 0 else 0.0,
        "flush_seconds": round(time.monotonic() - started - send_seconds, 3),
        "per_second": per_second,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./run.sh worker loadgen")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s; 0: unpaced")
    parser.add_argument("--seconds", type=float, default=0.0, help="0: until --count or SIGTERM")
    parser.add_argument("--count", type=int, default=0, help="0: no count limit")
    parser.add_argument("--tag", default="bench", help="id prefix, unique per benchmark topic")
    parser.add_argument("--pool", type=int, default=2000, help="distinct users to cycle through")
    parser.add_argument("--slice-ms", type=float, default=5.0)
    parser.add_argument("--compression", default="lz4")
    parser.add_argument("--linger-ms", type=int, default=5)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    report = run(parse_args(argv))
    print(json.dumps(report), flush=True)
    return 0
