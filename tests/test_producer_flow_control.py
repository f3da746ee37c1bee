"""Pacing and the in-flight bound, with a fake clock and a fake broker.

These test our ``Pacer`` and ``Sender``, not Kafka: the fake producer hands out kafka-python's
own futures and resolves them as slowly as the test says, or never. The real-broker behaviour
(paced runs, lz4) is in ``test_producer_kafka.py``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kafka.future import Future

from pipeline import config, preparer, producer
from pipeline.formatting import Skip, format_user
from standin import generate_users


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps or the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_pacer_spaces_calls_one_interval_apart() -> None:
    clock = FakeClock()
    pacer = producer.Pacer(100, clock=clock, sleep=clock.sleep)
    returned = []
    for _ in range(50):
        pacer.wait()
        returned.append(clock.now)
    gaps = [b - a for a, b in zip(returned, returned[1:], strict=False)]
    assert gaps == pytest.approx([0.01] * 49)


def test_a_late_caller_catches_up_at_most_one_burst_then_is_paced_again() -> None:
    clock = FakeClock()  # binary fractions below, so the fake times add up exactly
    pacer = producer.Pacer(64, catch_up=0.125, clock=clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += 2.0  # a stall: 128 sends were due meanwhile
    returned = []
    for _ in range(30):
        pacer.wait()
        returned.append(clock.now)
    at_once = sum(1 for t in returned if t == returned[0])
    assert at_once == pacer.burst + 1 == 9  # the missed 0.125 s' worth, then the one due now
    later = returned[at_once - 1 :]
    gaps = [b - a for a, b in zip(later, later[1:], strict=False)]
    assert gaps == [1 / 64] * len(gaps)


def test_sends_due_within_a_tick_go_at_once_and_the_rate_holds_over_any_span() -> None:
    clock = FakeClock()
    rate, tick = 2048, 1 / 256  # binary fractions: eight sends a tick
    pacer = producer.Pacer(rate, tick=tick, clock=clock, sleep=clock.sleep)
    returned = []
    for _ in range(4096):
        pacer.wait()
        returned.append(clock.now)
    assert returned[-1] - returned[0] == pytest.approx(4095 / rate, abs=tick)
    assert len(clock.sleeps) <= 4096 / 8 + 1  # one sleep a tick, not one a send
    # Never more than a tick early: sends i..j fit in their span at `rate`, plus one tick.
    for i in range(0, 4096, 97):
        for j in range(i + 1, 4096, 13):
            assert j - i <= 1 + rate * (returned[j] - returned[i] + tick), (i, j)


def test_an_unpaced_pacer_never_sleeps() -> None:
    clock = FakeClock()
    pacer = producer.Pacer(0, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        pacer.wait()
    assert clock.sleeps == []


class FakeBroker:
    """A stand-in for ``KafkaProducer``: keeps every send and resolves the oldest on request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.unresolved: deque[Future] = deque()
        self.most_unresolved = 0

    def send(self, topic: str, key: bytes, value: bytes, headers: Any = None) -> Future:
        future = Future()
        with self.lock:
            self.sent.append((topic, key, value))
            self.unresolved.append(future)
            self.most_unresolved = max(self.most_unresolved, len(self.unresolved))
        return future

    def resolve_oldest(self, error: Exception | None = None) -> bool:
        with self.lock:
            if not self.unresolved:
                return False
            future = self.unresolved.popleft()
        # Outside the lock, like kafka-python's sender thread, which runs the callbacks.
        if error is None:
            future.success(None)
        else:
            future.failure(error)
        return True

    def flush(self, timeout: float | None = None) -> None:
        """Block until every send is answered, as ``KafkaProducer.flush`` does."""
        while True:
            with self.lock:
                if not self.unresolved:
                    return
            time.sleep(0.001)


@contextmanager
def answering(broker: FakeBroker, error: Exception | None = None) -> Iterator[None]:
    """While in the block, the broker resolves its oldest send once a millisecond (slowly)."""
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            broker.resolve_oldest(error)
            time.sleep(0.001)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def records(count: int) -> list[dict[str, Any]]:
    out = []
    for raw in generate_users("flow-control", 1, count):
        record = format_user(raw, producer.now_ms())
        assert not isinstance(record, Skip)
        out.append(record)
    return out


def kafka_settings(limit: int) -> config.KafkaSettings:
    return config.load(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "broker.invalid:9092",
            "KAFKA_TOPIC": "flow",
            "KAFKA_MAX_IN_FLIGHT_RECORDS": str(limit),
        }
    ).kafka


def test_a_slow_broker_never_has_more_than_the_limit_in_flight_and_gets_every_record() -> None:
    broker = FakeBroker()
    sender = producer.Sender(broker, kafka_settings(50), stall_seconds=30)  # type: ignore[arg-type]
    sent = records(500)
    with answering(broker):
        for record in sent:
            assert sender.send(record)
        sender.flush()
    assert broker.most_unresolved == 50  # reached, never passed
    assert (sender.queued, sender.delivered, sender.failed) == (500, 500, 0)
    assert [value for _, _, value in broker.sent] == [producer.encode_value(r) for r in sent]


def test_failed_sends_make_room_and_are_counted() -> None:
    broker = FakeBroker()
    sender = producer.Sender(broker, kafka_settings(10), stall_seconds=30)  # type: ignore[arg-type]
    with answering(broker, RuntimeError("broken")):
        for record in records(40):
            sender.send(record)
        sender.flush()
    assert broker.most_unresolved == 10
    assert (sender.queued, sender.delivered, sender.failed) == (40, 0, 40)
    assert dict(sender.errors) == {"RuntimeError: broken": 40}


def test_a_broker_that_acknowledges_nothing_fails_the_run_naming_it_and_the_counts() -> None:
    broker = FakeBroker()
    sender = producer.Sender(broker, kafka_settings(20), stall_seconds=0.3)  # type: ignore[arg-type]
    batch = records(25)
    for record in batch[:20]:
        sender.send(record)
    with pytest.raises(producer.RunFailed) as failure:
        sender.send(batch[20])
    message = str(failure.value)
    assert "KAFKA_BOOTSTRAP_SERVERS=broker.invalid:9092" in message
    assert "resolved none of 20 in-flight send(s) to flow" in message
    assert "KAFKA_MAX_IN_FLIGHT_RECORDS=20; queued 20, delivered 0, failed 0" in message
    assert len(broker.sent) == 20 and sender.queued == 20  # nothing dropped, nothing over
    broker.resolve_oldest()
    assert sender.send(batch[20])  # room again: the send goes through
    assert (len(broker.sent), sender.delivered) == (21, 1)


def test_a_compression_whose_library_is_missing_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(producer._CODECS, "lz4", lambda: False)
    with pytest.raises(producer.RunFailed, match="KAFKA_COMPRESSION=lz4 needs a library"):
        producer.create_producer(kafka_settings(1))


def test_none_compression_sends_uncompressed_batches() -> None:
    kafka = config.load({"KAFKA_COMPRESSION": "none"}).kafka
    assert producer.producer_config(kafka)["compression_type"] is None
    assert producer.producer_config(config.load({}).kafka)["compression_type"] == "lz4"


def test_pages_are_fetched_at_most_one_ahead_of_a_slow_sender_and_all_arrive_in_order() -> None:
    fetched: list[int] = []
    ahead_when_fetched: list[int] = []
    taken: list[int] = []

    def pages() -> Iterator[int]:
        for page in range(1, 11):
            ahead_when_fetched.append(page - len(taken))  # fetched, not yet finished by the caller
            fetched.append(page)
            yield page

    prefetcher = preparer.Prefetcher(pages(), ahead=1)
    for page in prefetcher:
        time.sleep(0.02)  # a slow sender: the fetcher would run far ahead if it could
        taken.append(page)
    assert taken == fetched == list(range(1, 11))
    assert prefetcher.most_held == 2
    assert max(ahead_when_fetched) == 2  # the page being sent and the one fetched ahead


def test_a_caller_that_stops_early_stops_the_fetching() -> None:
    fetched: list[int] = []

    def pages() -> Iterator[int]:
        for page in range(1, 1000):
            fetched.append(page)
            yield page

    prefetcher = preparer.Prefetcher(pages(), ahead=1)
    for page in prefetcher:
        if page == 3:
            break
    time.sleep(0.2)  # time for a runaway fetcher to show itself
    assert fetched == [1, 2, 3, 4]


def test_a_fetch_error_reaches_the_caller_where_its_page_would_have_come() -> None:
    def pages() -> Iterator[int]:
        yield 1
        raise RuntimeError("page 2 failed")

    taken = []
    with pytest.raises(RuntimeError, match="page 2 failed"):
        for page in preparer.Prefetcher(pages()):
            taken.append(page)
    assert taken == [1]
