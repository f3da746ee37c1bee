"""A producer run survives odd users, resumes after a failure and fails in bounded time and
memory when the broker stops answering: real stand-in, real Kafka, a topic per test."""

from __future__ import annotations

import json
import logging
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import read_topic, topic_end_offsets

from pipeline import config, preparer, producer
from pipeline.formatting import Skip, format_user
from pipeline.randomuser import seed_for_run
from standin import StandIn, generate_users


@pytest.fixture(scope="module")
def server() -> Iterator[StandIn]:
    with StandIn() as standin:
        yield standin


@pytest.fixture
def standin(server: StandIn) -> Iterator[StandIn]:
    server.clear()
    yield server
    server.clear()


def settings_for(bootstrap: str, topic: str, standin: StandIn, **env: str) -> config.Settings:
    return config.load(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_TOPIC": topic,
            "USERS_API_URL": standin.url,
            "USERS_API_BACKOFF_SECONDS": "0.05",
            "USERS_PER_SECOND": "0",
            "SCHEMA_REGISTRY_URL": config.load().registry.url,  # the `schema_registry` fixture's
            **env,
        }
    )


def messages_by_key(bootstrap: str, topic: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """(how many messages ``topic`` holds, the last value of each key)."""
    messages = read_topic(bootstrap, topic, topic_end_offsets(bootstrap, topic))
    return len(messages), {m.key.decode(): json.loads(m.value) for m in messages}


# Page 1's odd entries, each with the skip reason it must be counted under (None: still a user).
PAGE_1_EDITS: list[tuple[dict[str, Any], str | None]] = [
    ({"user": 0, "replace": None}, "entry is null, not an object"),
    ({"user": 1, "replace": "Ann"}, "entry is a string, not an object"),
    ({"user": 2, "replace": 7}, "entry is a number, not an object"),
    ({"user": 3, "replace": [{"gender": "female"}]}, "entry is an array, not an object"),
    (
        {"user": 4, "surrogate": "name.first"},
        "invalid: field 'first_name' is not UTF-8 (a lone surrogate)",
    ),
    ({"user": 5, "surrogate": "login.uuid"}, "invalid: field 'id' is not UTF-8 (a lone surrogate)"),
    ({"user": 6, "surrogate": "cell"}, None),  # not a field of the record
    ({"user": 7, "drop": "email"}, "missing email"),
    ({"user": 8, "set": "name.last", "value": 5}, "non-string (int) name.last"),
    ({"user": 9, "set": "location.city", "value": {"a": 1}}, "non-string (dict) location.city"),
    ({"user": 10, "set": "phone", "value": None}, "missing phone"),
    ({"user": 11, "set": "dob.date", "value": 1.5}, "non-string (float) dob.date"),
    ({"user": 12, "set": "location.postcode", "value": 12345}, None),  # served so by some
]
PAGE_2_EDITS: list[tuple[dict[str, Any], str | None]] = [
    ({"user": 0, "replace": None}, "entry is null, not an object"),
    ({"user": 199, "drop": "login"}, "missing login.uuid"),
]


def test_odd_entries_are_counted_skips_and_exactly_the_valid_users_are_sent(
    kafka_bootstrap: str, topic: str, standin: StandIn
) -> None:
    standin.add_faults(
        {"edits": [edit for edit, _ in PAGE_1_EDITS]},
        {"edits": [edit for edit, _ in PAGE_2_EDITS]},
    )
    settings = settings_for(
        kafka_bootstrap, topic, standin, USERS_TOTAL="400", USERS_PER_REQUEST="200"
    )
    stats = producer.run(settings, run_id="manual__odd")

    expected_reasons: dict[str, int] = {}
    skipped: set[tuple[int, int]] = set()
    for page, edits in ((1, PAGE_1_EDITS), (2, PAGE_2_EDITS)):
        for edit, reason in edits:
            if reason is not None:
                expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
                skipped.add((page, edit["user"]))
    assert dict(stats.skip_reasons) == expected_reasons
    assert (stats.fetched, stats.skipped, stats.failed) == (400, len(skipped), 0)
    assert stats.sent + stats.skipped == stats.fetched

    count, received = messages_by_key(kafka_bootstrap, topic)
    served = {1: generate_users(stats.seed, 1, 200), 2: generate_users(stats.seed, 2, 200)}
    valid = [
        (page, index, raw)
        for page, users in served.items()
        for index, raw in enumerate(users)
        if (page, index) not in skipped
    ]
    assert count == len(received) == len(valid) == stats.sent
    assert set(received) == {raw["login"]["uuid"] for _, _, raw in valid}
    for page, index, raw in valid:
        value = received[raw["login"]["uuid"]]
        expected = format_user(raw, value["produced_at"])
        assert not isinstance(expected, Skip)
        if (page, index) == (1, 12):
            expected["post_code"] = "12345"
        assert value == expected, (page, index)


def test_api_faults_the_client_retries_cost_no_user_and_odd_entries_on_retried_pages_count(
    kafka_bootstrap: str, topic: str, standin: StandIn
) -> None:
    """One run meets each fault the client retries, a page each, then a page of odd entries."""
    standin.add_faults(
        {"status": 500},
        {},
        {"status": 429, "retry_after": "0"},
        {},
        {"delay": 3},  # past the read timeout below
        {},
        {"truncate": 0.5},
        {},
        {"error_body": True},
        {"edits": [{"user": 5, "replace": None}, {"user": 6, "surrogate": "location.city"}]},
    )
    settings = settings_for(
        kafka_bootstrap,
        topic,
        standin,
        USERS_TOTAL="500",
        USERS_PER_REQUEST="100",
        USERS_SEED="api-faults",
        USERS_API_READ_TIMEOUT="1",
    )
    stats = producer.run(settings)
    assert len(standin.requests) == 10 and standin.pending_faults == 0
    assert dict(stats.skip_reasons) == {
        "entry is null, not an object": 1,
        "invalid: field 'address' is not UTF-8 (a lone surrogate)": 1,
    }
    assert (stats.fetched, stats.sent, stats.skipped, stats.failed) == (500, 498, 2, 0)

    count, received = messages_by_key(kafka_bootstrap, topic)
    served = [
        (page, index, raw)
        for page in range(1, 6)
        for index, raw in enumerate(generate_users("api-faults", page, 100))
    ]
    valid = [raw for page, index, raw in served if not (page == 5 and index in (5, 6))]
    assert count == len(received) == len(valid)
    assert set(received) == {raw["login"]["uuid"] for raw in valid}
    for raw in valid:
        value = received[raw["login"]["uuid"]]
        assert value == format_user(raw, value["produced_at"])


def test_a_failed_run_retried_with_the_same_run_id_ends_with_exactly_the_users_asked_for(
    kafka_bootstrap: str, topic: str, standin: StandIn
) -> None:
    """What an Airflow retry does: the first attempt fails on page 3, the second sends all."""
    settings = settings_for(
        kafka_bootstrap,
        topic,
        standin,
        USERS_TOTAL="1000",
        USERS_PER_REQUEST="250",
        USERS_SEED="",
        USERS_API_MAX_RETRIES="1",
    )
    run_id = "scheduled__2026-11-27T00:00:00+00:00"
    standin.add_faults({"count": 2}, {"status": 503, "count": 2})  # pages 1, 2; then page 3 fails
    with pytest.raises(producer.RunFailed) as failure:
        producer.run(settings, run_id=run_id)
    first = failure.value.stats
    assert first is not None and (first.sent, first.fetched, first.last_page) == (500, 500, 2)
    assert "sent 500, skipped 0, failed 0 of 500 fetched" in str(failure.value)

    second = producer.run(settings, run_id=run_id)  # the retry: no faults left
    seed = seed_for_run(run_id)
    assert first.seed == second.seed == seed
    assert (second.sent, second.fetched) == (1000, 1000)

    count, received = messages_by_key(kafka_bootstrap, topic)
    asked_for = [u for page in (1, 2, 3, 4) for u in generate_users(seed, page, 250)]
    assert set(received) == {u["login"]["uuid"] for u in asked_for}  # as Cassandra's rows
    assert count == 1500  # pages 1 and 2 twice: upserts of the same ids


class StallingProxy:
    """A TCP proxy in front of one Kafka broker that can stop answering, as a hung broker does.

    The broker's metadata names it as ``localhost:<port>``; the proxy rewrites that to itself
    (same length: ``127.0.0.1``), so the producer talks to the broker only through the proxy.
    After ``stall()`` nothing more is forwarded either way and new connections are accepted
    and never answered; no connection is closed.
    """

    def __init__(self, broker: str) -> None:
        host, _, port = broker.rpartition(":")
        self.broker = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.advertised = b"localhost" + struct.pack(">i", int(port))
        self.replaced = b"127.0.0.1" + struct.pack(">i", self.port)
        self.stalled = threading.Event()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stall(self) -> None:
        self.stalled.set()

    def close(self) -> None:
        self.closed.set()
        for sock in self.sockets:
            sock.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.stalled.is_set():
                continue  # accepted, never answered
            upstream = socket.create_connection(self.broker)
            self.sockets.append(upstream)
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client), daemon=True).start()

    def _park_if_stalled(self) -> bool:
        if self.stalled.is_set():
            self.closed.wait()
            return True
        return False

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                if self._park_if_stalled():
                    return
                upstream.sendall(data)
        except OSError:
            return

    def _responses(self, upstream: socket.socket, client: socket.socket) -> None:
        def read(size: int) -> bytes:
            chunks = b""
            while len(chunks) < size:
                chunk = upstream.recv(size - len(chunks))
                if not chunk:
                    raise OSError("broker closed")
                chunks += chunk
            return chunks

        try:
            while True:
                header = read(4)
                frame = read(struct.unpack(">i", header)[0])
                if self._park_if_stalled():
                    return
                client.sendall(header + frame.replace(self.advertised, self.replaced))
        except OSError:
            return


def test_a_broker_that_stops_answering_fails_the_run_in_bounded_time_and_memory_with_counts(
    kafka_bootstrap: str, topic: str, standin: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.producer")
    proxy = StallingProxy(kafka_bootstrap)
    limit, delivery_timeout = 300, 4
    settings = settings_for(
        proxy.bootstrap,
        topic,
        standin,
        USERS_TOTAL="50000",
        USERS_PER_REQUEST="1000",
        USERS_SEED="stall",
        KAFKA_MAX_IN_FLIGHT_RECORDS=str(limit),
        KAFKA_DELIVERY_TIMEOUT_SECONDS=str(delivery_timeout),
    )

    def stall_once_page_1_is_in_kafka() -> None:
        # Then at most `limit` of its 1000 users lack an acknowledgement: at least 1000 - limit
        # were sent, whatever the run fetched ahead.
        while not proxy.closed.is_set():
            try:
                if sum(topic_end_offsets(kafka_bootstrap, topic).values()) >= 1000:
                    break
            except AssertionError:  # the run has not created the topic yet
                pass
            time.sleep(0.02)
        proxy.stall()

    threading.Thread(target=stall_once_page_1_is_in_kafka, daemon=True).start()
    try:
        with pytest.raises(producer.RunFailed) as failure:  # it ends: no wait without a bound
            producer.run(settings)
    finally:
        proxy.close()

    stats = failure.value.stats
    assert stats is not None
    # Bounded memory: never more sends awaiting the broker than the limit, never more pages than
    # the one being sent, the one prepared next and the one fetched ahead; fetching stopped
    # with the sends.
    assert 0 < stats.most_in_flight <= limit
    assert stats.most_pages_held <= 2 + preparer.PAGES_AHEAD
    assert stats.fetched <= 4 * 1000
    # The counts: in the exception and in the log.
    message = str(failure.value) + "\n".join(getattr(failure.value, "__notes__", []))
    counts = re.search(r"sent (\d+), skipped 0, failed (\d+) of (\d+) fetched", message)
    assert counts is not None, message
    sent, failed, fetched = map(int, counts.groups())
    assert (sent, failed, fetched) == (stats.sent, stats.failed, stats.fetched)
    assert sent >= 1000 - limit
    assert any(counts.group(0) in r.getMessage() for r in caplog.records)
    # Every user reported sent is in Kafka; nothing but served users is.
    _, received = messages_by_key(kafka_bootstrap, topic)
    served = {
        u["login"]["uuid"] for page in range(1, 5) for u in generate_users("stall", page, 1000)
    }
    assert sent <= len(received) and set(received) <= served
