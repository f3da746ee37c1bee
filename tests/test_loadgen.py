"""The benchmark's load generator against the real Kafka: what it sends is what the bench counts.

Its records must be the producer's records (valid by the contract, keyed by a unique id, with a
send time), each delivered once, spread over the topic's partitions, and a generator that cannot
send must say so rather than report a rate it never reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import read_topic, topic_end_offsets

from pipeline import config, parsing, producer

REPO = Path(__file__).resolve().parents[1]


def loadgen(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "script", "worker", "loadgen", *args],
        cwd=REPO,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_record_arrives_once_valid_keyed_by_its_id_round_the_partitions(
    kafka_bootstrap: str, topic: str
) -> None:
    kafka = config.load(
        {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "KAFKA_TOPIC": topic,
            "KAFKA_TOPIC_PARTITIONS": "3",
        }
    ).kafka
    assert producer.ensure_topic(kafka) == 3

    done = loadgen(kafka_bootstrap, "--topic", topic, "--rate", "0", "--count", "3000")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    started, last = lines[0], lines[-1]
    report = json.loads(last)
    assert (report["sent"], report["failed"], report["errors"]) == (3000, 0, [])

    messages = read_topic(kafka_bootstrap, topic, topic_end_offsets(kafka_bootstrap, topic))
    assert len(messages) == 3000
    ids = [m.key for m in messages]
    assert len(set(ids)) == 3000
    assert Counter(m.partition for m in messages) == {0: 1000, 1: 1000, 2: 1000}
    start_ms = int(started.split()[1])
    for m in messages[::97]:
        record, reason = parsing.message_verdict(m.value)
        assert reason is None, m.value
        assert record is not None
        assert record["id"].encode() == m.key and m.key.startswith(b"bench-")
        assert start_ms <= record["produced_at"] <= report["end_ms"]


def test_a_topic_that_does_not_exist_is_an_error_that_names_it(
    kafka_bootstrap: str, topic: str
) -> None:
    done = loadgen(kafka_bootstrap, "--topic", topic, "--rate", "0", "--count", "10")
    assert done.returncode != 0
    assert f"topic {topic} has no partitions" in done.stderr
    assert "started" not in done.stdout
