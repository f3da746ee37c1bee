"""Produce formatted users to Kafka: topic creation, producer settings, one full producer run.

``run(settings)`` is what the Airflow task calls (and ``python -m pipeline.producer``, for the
benchmark and offline runs): a child process fetches the pages, formats each user, validates it
against the contract and encodes it (``pipeline.preparer``), while this process stamps each
record with its send time and sends it keyed by its id, until the run's budget is spent; then
it flushes, logs and returns the counts. Sends are paced at ``USERS_PER_SECOND`` (``Pacer``)
and never more than ``KAFKA_MAX_IN_FLIGHT_RECORDS`` await the broker (``Sender``); the child
prepares one page ahead and fetches one more: together they bound the run's memory. A served
entry that cannot become a record is a skip counted by its reason, never an error; a send that
fails, or a broker that stops answering, stops the run, which fails with its counts.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer, codec
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError

from pipeline import config, contract, registry
from pipeline.config import KafkaSettings, Settings
from pipeline.preparer import Preparer, encode_key, encode_value, stamp
from pipeline.randomuser import FetchError, run_seed

log = logging.getLogger(__name__)

CLIENT_ID = config.DAG_ID  # the Kafka client id names the DAG that produces
_LOGGED_PROBLEMS = 10  # log the first few skips/failures one by one, then only count them
# kafka-python's request timeout, unless the delivery timeout is shorter.
REQUEST_TIMEOUT_MS = 30_000
# A paced run that fell behind (while it takes the next page from the child, on a busy machine)
# sends the records it missed at once, but only this many seconds' worth: a longer stall is not
# made up for, so it never ends in a flood.
PACE_CATCH_UP_SECONDS = 0.1
# A paced send due within this many seconds goes at once instead of after a sleep of its own:
# at 2,000 users/s one sleep (and wake-up) per few sends instead of one per send: the
# producer's process took 26 % of a core instead of 31 % on a slow 2-core machine (20 s runs,
# 15,000 context switches instead of 51,000). Well below the producer's linger
# (KAFKA_LINGER_MS), which a send waits anyway for its batch to go.
PACE_TICK_SECONDS = 0.002
# KAFKA_COMPRESSION -> whether kafka-python finds the codec's library.
_CODECS = {
    "none": lambda: True,
    "gzip": codec.has_gzip,
    "lz4": codec.has_lz4,
    "snappy": codec.has_snappy,
    "zstd": codec.has_zstd,
}


class RunFailed(RuntimeError):
    """The run did not deliver what it should have; the message carries the counts.

    ``stats`` is the failed run's ``RunStats`` once ``run`` is done with it.
    """

    def __init__(self, message: str, stats: RunStats | None = None) -> None:
        super().__init__(message)
        self.stats = stats


def _servers(kafka: KafkaSettings) -> list[str]:
    return [s.strip() for s in kafka.bootstrap_servers.split(",") if s.strip()]


def _unreachable(kafka: KafkaSettings, exc: Exception) -> RunFailed:
    return RunFailed(
        f"Kafka is not reachable at KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap_servers} ({exc}); "
        "start the local stack with `./run.sh up` or point the variable at a running broker"
    )


def producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """The kafka-python producer settings: durable (acks=all, idempotent), batched, compressed.

    No wait is longer than ``KAFKA_DELIVERY_TIMEOUT_SECONDS``: a send's whole delivery, one
    request (kafka-python wants it below the delivery timeout less the linger) and a ``send()``
    blocked on the topic's metadata.
    """
    delivery_ms = int(kafka.delivery_timeout_seconds * 1000)
    return {
        "bootstrap_servers": _servers(kafka),
        "client_id": CLIENT_ID,
        "acks": "all",
        "enable_idempotence": True,
        "delivery_timeout_ms": delivery_ms,
        "request_timeout_ms": max(1, min(REQUEST_TIMEOUT_MS, delivery_ms - kafka.linger_ms)),
        "max_block_ms": delivery_ms,
        "compression_type": None if kafka.compression == "none" else kafka.compression,
        "linger_ms": kafka.linger_ms,
        "batch_size": kafka.batch_size,
        "max_request_size": max(1_048_576, kafka.batch_size),
        # ensure_topic() creates the topic with the configured partitions; never let a send
        # auto-create it with the broker's default instead.
        "allow_auto_create_topics": False,
    }


def create_producer(kafka: KafkaSettings) -> KafkaProducer:
    """A connected producer, or ``RunFailed`` naming the bootstrap servers or missing codec."""
    if not _CODECS[kafka.compression]():
        raise RunFailed(
            f"KAFKA_COMPRESSION={kafka.compression} needs a library kafka-python does not find; "
            "install requirements.txt into this environment or choose another compression"
        )
    try:
        return KafkaProducer(**producer_config(kafka))
    except KafkaTimeoutError as exc:  # "Unable to bootstrap from [...]"
        raise _unreachable(kafka, exc) from exc


def ensure_topic(kafka: KafkaSettings) -> int:
    """Create ``kafka.topic`` if missing (``kafka.partitions`` partitions); return its partitions.

    An existing topic is left as it is; a partition count different from the setting is logged.
    """
    try:
        admin = KafkaAdminClient(bootstrap_servers=_servers(kafka), client_id=f"{CLIENT_ID}-admin")
    except KafkaTimeoutError as exc:  # "Unable to bootstrap from [...]"
        raise _unreachable(kafka, exc) from exc
    try:
        spec = {
            "num_partitions": kafka.partitions,
            "replication_factor": kafka.replication_factor,
            # acks=all: a write is acknowledged once this many replicas have it.
            "configs": {"min.insync.replicas": str(kafka.min_insync_replicas)},
        }
        try:
            admin.create_topics({kafka.topic: spec}, wait_for_metadata=True)
            log.info("created topic %s with %d partition(s)", kafka.topic, kafka.partitions)
        except TopicAlreadyExistsError:
            log.info("topic %s exists", kafka.topic)
        partitions = _partition_count(admin, kafka.topic)
    finally:
        admin.close()
    if partitions != kafka.partitions:
        log.warning(
            "topic %s has %d partition(s) but KAFKA_TOPIC_PARTITIONS=%d; left unchanged",
            kafka.topic,
            partitions,
            kafka.partitions,
        )
    return partitions


def _partition_count(admin: KafkaAdminClient, topic: str, timeout: float = 15) -> int:
    """Partitions of ``topic``, once the broker reports them (a new topic's take a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        (described,) = admin.describe_topics([topic])
        partitions = described.get("partitions") or []
        if partitions or time.monotonic() > deadline:
            return len(partitions)
        time.sleep(0.2)


class Sender:
    """Validates and sends records; counts every send's outcome through its future.

    At most ``kafka.max_in_flight_records`` sends are unresolved at once: kafka-python has no
    ``buffer_memory`` bound, so without this a stalled broker would let a run queue every page
    in memory. At the limit ``send`` waits until the broker resolves some (each acknowledgement
    or failure makes room), and raises ``RunFailed`` when none resolves for ``stall_seconds``
    (default: the delivery timeout). ``most_in_flight`` is the most that were ever unresolved.
    With a ``schema_id`` (the registry's id of the contract) each record carries it in the
    ``schema-id`` header, as decimal text.
    """

    def __init__(
        self,
        producer: KafkaProducer,
        kafka: KafkaSettings,
        *,
        stall_seconds: float | None = None,
        schema_id: int | None = None,
    ) -> None:
        self.producer = producer
        self.headers = (
            None if schema_id is None else [(contract.SCHEMA_ID_HEADER, str(schema_id).encode())]
        )
        self.kafka = kafka
        self.topic = kafka.topic
        self.stall_seconds = (
            kafka.delivery_timeout_seconds if stall_seconds is None else stall_seconds
        )
        self.most_in_flight = 0
        self.queued = 0
        self.delivered = 0
        self.failed = 0
        self.invalid: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._resolved = threading.Condition()

    @property
    def in_flight(self) -> int:
        """Sends queued but not yet acknowledged or failed."""
        with self._resolved:
            return self.queued - self.delivered - self.failed

    def wait_for_room(self) -> None:
        """Return once fewer than ``max_in_flight_records`` sends are unresolved.

        ``RunFailed`` (naming the brokers and the counts) when nothing resolves for
        ``stall_seconds``; nothing is dropped, the queued sends stay counted.
        """
        limit = self.kafka.max_in_flight_records
        if self.queued - self.delivered - self.failed < limit:
            return  # most calls: room without taking the lock (only this thread adds sends)
        with self._resolved:
            resolved = self.delivered + self.failed
            give_up = time.monotonic() + self.stall_seconds
            while self.queued - (self.delivered + self.failed) >= limit:
                if self.delivered + self.failed != resolved:  # progress: wait afresh
                    resolved = self.delivered + self.failed
                    give_up = time.monotonic() + self.stall_seconds
                left = give_up - time.monotonic()
                if left <= 0:
                    raise RunFailed(
                        f"Kafka at KAFKA_BOOTSTRAP_SERVERS={self.kafka.bootstrap_servers} "
                        f"resolved none of {self.queued - resolved} in-flight send(s) to "
                        f"{self.topic} for {self.stall_seconds:g}s "
                        f"(KAFKA_MAX_IN_FLIGHT_RECORDS={limit}; queued {self.queued}, "
                        f"delivered {self.delivered}, failed {self.failed}); "
                        "check the broker with `./run.sh status` and its log"
                    )
                self._resolved.wait(left)

    def send(self, record: Mapping[str, Any], room: bool = False) -> bool:
        """Queue ``record`` unless it breaks the contract (then count it and return False).

        Waits first while ``max_in_flight_records`` sends are unresolved (see ``wait_for_room``),
        unless the caller has just done so (``room``).
        """
        try:
            contract.validate(record)
        except contract.InvalidRecord as exc:
            reason = f"invalid: {exc}"
            self.invalid[reason] += 1
            if sum(self.invalid.values()) <= _LOGGED_PROBLEMS:
                log.warning(
                    "not sending record %r: %s",
                    record.get(contract.PRIMARY_KEY),
                    reason,
                )
            return False
        if not room:
            self.wait_for_room()
        self.send_encoded(encode_key(record), encode_value(record))
        return True

    def send_encoded(self, key: bytes, value: bytes) -> None:
        """Queue a record already validated and encoded; the caller has made room for it."""
        future = self.producer.send(self.topic, key=key, value=value, headers=self.headers)
        # Only the sending thread adds sends; the broker's thread counts their outcomes.
        self.queued += 1
        in_flight = self.queued - self.delivered - self.failed
        if in_flight > self.most_in_flight:
            self.most_in_flight = in_flight
        future.add_both(self._on_resolved)

    def _on_resolved(self, outcome: Any) -> None:
        if isinstance(outcome, BaseException):
            self._on_failed(outcome)
        else:
            self._on_delivered(outcome)

    def _on_delivered(self, _metadata: Any) -> None:
        with self._resolved:
            self.delivered += 1
            self._resolved.notify()

    def _on_failed(self, exc: BaseException) -> None:
        with self._resolved:
            self.failed += 1
            self.errors[f"{type(exc).__name__}: {exc}"] += 1
            self._resolved.notify()
            if self.failed <= _LOGGED_PROBLEMS:
                log.error("send to %s failed: %s", self.topic, exc)

    def flush(self) -> None:
        """Wait for every queued send; then every future has been counted as delivered or failed.

        Each send should resolve within the delivery timeout (and a linger); ``RunFailed`` if
        some did not by then: after a broker stall kafka-python may leave a send in flight
        unresolved for good.
        """
        try:
            self.producer.flush(timeout=self.kafka.delivery_timeout_seconds + 1)
        except KafkaTimeoutError:
            pass  # counted below
        unresolved = self.in_flight
        if unresolved:
            raise RunFailed(
                f"{unresolved} send(s) to {self.topic} still unresolved after waiting "
                f"KAFKA_DELIVERY_TIMEOUT_SECONDS={self.kafka.delivery_timeout_seconds:g} for them "
                f"(queued {self.queued}, delivered {self.delivered}, failed {self.failed}); "
                "check the broker with `./run.sh status` and its log"
            )


def stall_bound_seconds(kafka: KafkaSettings) -> float:
    """The longest a run takes to fail once the broker stops answering (README says so).

    A send waits for room at most one delivery timeout (or the first send fails, which stops
    the run), the flush waits for the rest at most another and a second, closing at most
    another; 10 s more cover set-up, the page being fetched and a busy machine.
    """
    return 3 * kafka.delivery_timeout_seconds + 10


def send_records(
    producer: KafkaProducer,
    kafka: KafkaSettings,
    records: Iterable[Mapping[str, Any]],
    schema_id: int | None = None,
) -> Sender:
    """Send ``records`` (validated, keyed by id), flush, return the ``Sender`` with its counts."""
    sender = Sender(producer, kafka, schema_id=schema_id)
    for record in records:
        sender.send(record)
    sender.flush()
    return sender


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Pacer:
    """Spaces calls to ``wait`` ``1/rate`` seconds apart, a token bucket; rate 0 never waits.

    Each call returns when the next send is due, or up to ``tick`` seconds before (then without
    sleeping), so a send happens at its due time, not in a burst per page. A caller that falls
    behind gets the sends it missed at once, but at most ``catch_up`` seconds' worth (``burst``
    sends): over any ``w`` seconds at most ``1 + burst + rate * (w + tick)`` calls return.
    """

    def __init__(
        self,
        rate: float,
        catch_up: float = PACE_CATCH_UP_SECONDS,
        *,
        tick: float = PACE_TICK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = rate * catch_up
        self.tick = tick
        self._catch_up = catch_up
        self._clock = clock
        self._sleep = sleep
        self._due: float | None = None  # when the next call may return

    def wait(self) -> None:
        if self.rate <= 0:
            return
        now = self._clock()
        due = now if self._due is None else max(self._due, now - self._catch_up)
        if due > now + self.tick:
            self._sleep(due - now)
        self._due = due + 1 / self.rate


@dataclass
class RunStats:
    """What one producer run did; ``as_dict()`` is small enough for an Airflow XCom."""

    topic: str
    seed: str
    first_page: int
    api_url: str = ""  # USERS_API_URL of the run
    paced_per_second: float = 0.0  # USERS_PER_SECOND of the run; 0: unpaced
    max_in_flight: int = 0  # KAFKA_MAX_IN_FLIGHT_RECORDS: the bound of most_in_flight
    last_page: int = 0
    partitions: int = 0
    fetched: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    # Sending: from the first page in hand to the last send resolved; the rate's span. Waiting
    # for the first page (a cold users API may take a second) is set-up, like the topic's.
    seconds: float = 0.0
    first_page_seconds: float = 0.0
    most_in_flight: int = 0  # the most sends that awaited the broker at once
    most_pages_held: int = 0  # the most pages in memory at once (being sent or fetched ahead)
    skip_reasons: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        """Users sent per second."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "api_url": self.api_url,
            "seed": self.seed,
            "first_page": self.first_page,
            "last_page": self.last_page,
            "partitions": self.partitions,
            "fetched": self.fetched,
            "sent": self.sent,
            "skipped": self.skipped,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "first_page_seconds": round(self.first_page_seconds, 3),
            "rate_per_second": round(self.rate, 1),
            "paced_per_second": self.paced_per_second,
            "max_in_flight": self.max_in_flight,
            "most_in_flight": self.most_in_flight,
            "most_pages_held": self.most_pages_held,
            "skip_reasons": dict(self.skip_reasons),
            "errors": dict(self.errors.most_common(5)),
        }

    def summary(self) -> str:
        pace = f", paced at {self.paced_per_second:g}/s" if self.paced_per_second else ""
        return (
            f"sent {self.sent}, skipped {self.skipped}, failed {self.failed} of {self.fetched} "
            f"fetched, sent in {self.seconds:.1f}s ({self.rate:.0f} users/s{pace}; the first page "
            f"came {self.first_page_seconds:.1f}s after the start) to {self.topic}; "
            f"at most {self.most_in_flight} in flight (limit {self.max_in_flight}) and "
            f"{self.most_pages_held} page(s) held; "
            f"replay with USERS_SEED={self.seed} USERS_START_PAGE={self.first_page}"
        )


def run(settings: Settings, run_id: str | None = None) -> RunStats:
    """One producer pass: fetch -> format -> validate -> send until the budget is spent.

    The seed is ``USERS_SEED``, else derived from ``run_id`` (the Airflow DAG run's, so a
    retry fetches the same users), else random. Sends are paced at ``USERS_PER_SECOND`` and
    each record's ``produced_at`` is taken when it is sent, after any wait. Every served entry
    ends as a send or as a skip counted by its reason (``skip_reasons``). Raises ``RunFailed``
    (after flushing, with the counts) when the API gave up, when a send failed (the run stops
    there), when the broker stalled or when nothing was sent, and before sending anything when
    the schema registry refuses the contract (``publish_schema``); records already sent stay sent
    and are counted. Any exception leaving the run carries the counts as a note.
    """
    api, kafka = settings.api, settings.kafka
    seed = run_seed(api, run_id)
    stats = RunStats(
        topic=kafka.topic,
        seed=seed,
        first_page=api.start_page,
        api_url=api.url,
        paced_per_second=api.per_second,
        max_in_flight=kafka.max_in_flight_records,
    )
    budget = f"{api.total} users" if api.total else f"{api.run_seconds:g}s"
    pace = f"{api.per_second:g} users/s" if api.per_second else "unpaced"
    log.info(
        "run: %s (%s) from %s, seed %s from page %d", budget, pace, api.url, seed, api.start_page
    )
    # The child fetching and preparing the users starts first: it reaches the API while the
    # schema, the topic and the producer are set up here.
    pages = Preparer(api, seed)
    try:
        schema_id = publish_schema(settings)
        stats.partitions = ensure_topic(kafka)
        producer = create_producer(kafka)
    except BaseException:
        pages.close()
        raise
    sender = Sender(producer, kafka, schema_id=schema_id)
    clock = Clock()
    try:
        fetch_error = _produce(pages, sender, Pacer(api.per_second), stats, clock)
        sender.flush()
    except BaseException as exc:
        _finish(stats, producer, sender, pages, clock)
        exc.add_note(f"producer counts: {stats.summary()}")
        if isinstance(exc, RunFailed):
            exc.stats = stats
        raise
    _finish(stats, producer, sender, pages, clock)
    if fetch_error is not None:
        raise RunFailed(f"{fetch_error} -- {stats.summary()}", stats) from fetch_error
    if stats.failed:
        raise RunFailed(
            f"{stats.failed} send(s) failed ({dict(stats.errors)}); the run stopped there -- "
            f"{stats.summary()}",
            stats,
        )
    if stats.sent == 0:
        raise RunFailed(f"nothing was sent -- {stats.summary()}", stats)
    return stats


def publish_schema(settings: Settings) -> int:
    """The registry's id of the contract, registered if new; ``RunFailed`` when the registry
    refuses it as incompatible (the producer does not run) or cannot be reached."""
    try:
        schema_id = registry.publish(settings)
    except registry.RegistryError as exc:
        raise RunFailed(f"the producer does not run: {exc}") from exc
    log.info(
        "schema: id %d under %s at %s",
        schema_id,
        registry.subject(settings.kafka.topic),
        settings.registry.url,
    )
    return schema_id


class Clock:
    """When a run started, and when its first page was in hand (``sending``: None before)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.sending: float | None = None

    def first_page(self) -> None:
        if self.sending is None:
            self.sending = time.monotonic()


def _produce(
    pages: Preparer, sender: Sender, pacer: Pacer, stats: RunStats, clock: Clock
) -> FetchError | None:
    """Send each prepared record of ``pages``, stamped with its send time, and count each skip;
    stop at the first failed send. Returns the ``FetchError`` that ended the pages early, if
    one did."""
    try:
        for page in pages:
            clock.first_page()
            stats.fetched += page.fetched
            stats.last_page = page.page
            for reason, uuid in page.skips:
                _count_skip(stats, reason, uuid, page.page)
            for key, head, tail in page.records:
                pacer.wait()
                sender.wait_for_room()  # so that produced_at is the time of the send
                if sender.failed:
                    return None  # a send failed for good: the run fails, see run()
                sender.send_encoded(key, stamp(head, tail, now_ms()))
    except FetchError as exc:
        return exc
    return None


def _finish(
    stats: RunStats, producer: KafkaProducer, sender: Sender, pages: Preparer, clock: Clock
) -> None:
    """Stop the child; close the producer (bounded: after a stall, queued sends may never
    resolve); count; log."""
    pages.close()
    try:
        producer.close(timeout=sender.kafka.delivery_timeout_seconds)
    except KafkaTimeoutError as exc:  # sends still unresolved: counted, and the run fails
        log.warning("the producer closed with sends unresolved: %s", exc)
    finally:
        ended = time.monotonic()
        sending = ended if clock.sending is None else clock.sending
        stats.first_page_seconds = sending - clock.started
        stats.seconds = ended - sending
        stats.sent = sender.delivered
        stats.failed = sender.failed
        stats.errors = sender.errors
        stats.skip_reasons.update(sender.invalid)
        stats.skipped = sum(stats.skip_reasons.values())
        stats.most_in_flight = sender.most_in_flight
        stats.most_pages_held = pages.most_held
        log.info("%s", stats.summary())
        if stats.skip_reasons:
            log.warning("skip reasons: %s", dict(stats.skip_reasons))


def _count_skip(stats: RunStats, reason: str, uuid: str, page: int) -> None:
    """Count a served entry that is not a record; log the first few by their ``login.uuid``
    (``uuid`` is its repr), never the entry itself."""
    stats.skip_reasons[reason] += 1
    if sum(stats.skip_reasons.values()) <= _LOGGED_PROBLEMS:
        log.warning("skipped user %s on page %d: %s", uuid, page, reason)


def main() -> int:
    """``python -m pipeline.producer``: one run configured from the environment; prints counts."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stats = run(config.load())
    print(json.dumps(stats.as_dict(), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
