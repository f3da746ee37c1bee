"""The producer's preparing child (``pipeline.preparer``): what it makes of a page, and the
child process itself against the bundled stand-in. No broker needed; the whole run through
Kafka is in ``test_producer_faults.py`` and ``test_producer_kafka.py``."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from pipeline import config, preparer
from pipeline.formatting import Skip, format_user
from pipeline.randomuser import Batch, FetchError, decode_json
from standin import StandIn, generate_users, response_body
from standin.render import edit_body


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


def api_for(standin: StandIn, **env: str) -> config.ApiSettings:
    return config.load(
        {"USERS_API_URL": standin.url, "USERS_API_BACKOFF_SECONDS": "0.05", **env}
    ).api


def page_body(seed: str, results: int, edits: list[dict[str, Any]] | None = None) -> bytes:
    body = response_body({"results": [str(results)], "seed": [seed], "page": ["1"]})
    return edit_body(body, edits) if edits else body


def test_a_prepared_record_stamped_is_the_record_as_sent() -> None:
    users = generate_users("stamp", 1, 500)  # every nationality: Arabic, Cyrillic, accents
    prepared = preparer.prepare(Batch("stamp", 1, users))
    assert prepared.fetched == 500 and not prepared.skips
    for produced_at in (0, 7, 1_764_000_000_123):
        records = [format_user(raw, produced_at) for raw in users]
        assert [
            (key, preparer.stamp(head, tail, produced_at)) for key, head, tail in prepared.records
        ] == [(preparer.encode_key(r), preparer.encode_value(r)) for r in records]
        assert [
            msgspec.json.decode(preparer.stamp(h, t, produced_at)) for _, h, t in prepared.records
        ] == records


# Odd values where the page keeps its shape (a leaf of any type), and odd shapes (an entry or
# an object replaced) and a lone surrogate's escape, which the trimmed parse refuses and the
# whole parse takes.
LEAF_EDITS = [
    {"user": 0, "set": "phone", "value": 7},
    {"user": 1, "set": "name.first", "value": None},
    {"user": 2, "set": "location.postcode", "value": 12345},
    {"user": 3, "drop": "email"},
    {"user": 5, "set": "location.street.number", "value": True},
    {"user": 6, "set": "dob.date", "value": {"nested": [1]}},
]
SHAPE_EDITS = [
    *LEAF_EDITS,
    {"user": 4, "surrogate": "name.last"},
    {"user": 7, "replace": None},
    {"user": 8, "set": "name", "value": "Ann"},
    {"user": 9, "set": "location.street", "value": [1, 2]},
]


@pytest.mark.parametrize("edits", [None, LEAF_EDITS, SHAPE_EDITS], ids=["plain", "leaf", "shape"])
def test_the_trimmed_page_gives_each_entry_the_verdict_of_the_whole_page(
    edits: list[dict[str, Any]] | None,
) -> None:
    body = page_body("trim", 40, edits)
    trimmed, whole = preparer.decode_page(body)["results"], decode_json(body)["results"]
    verdicts = [format_user(raw, 1) for raw in trimmed]
    assert verdicts == [format_user(raw, 1) for raw in whole]
    if edits:
        assert {v.reason for v in verdicts if isinstance(v, Skip)} >= {
            "non-string (int) phone",
            "missing name.first",
            "missing email",
        }
    if edits is not SHAPE_EDITS:  # trimmed: the secrets and the rest were never built
        assert set(trimmed[10]["login"]) == {"uuid", "username"}
        assert "cell" not in trimmed[10] and "password" in whole[10]["login"]


def test_the_child_prepares_each_page_in_order_and_forwards_its_log(
    standin: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    standin.clear()
    standin.add_faults({"status": 503, "count": 1})  # page 1 is retried once
    api = api_for(standin, USERS_TOTAL="2500", USERS_PER_REQUEST="1000")
    with preparer.Preparer(api, "child") as pages:
        prepared = list(pages)
    assert [(p.page, p.fetched) for p in prepared] == [(1, 1000), (2, 1000), (3, 500)]
    for p in prepared:
        users = generate_users("child", p.page, p.fetched)
        assert [preparer.stamp(h, t, 5) for _, h, t in p.records] == [
            preparer.encode_value(format_user(raw, 5)) for raw in users
        ]
    assert 2 <= pages.most_held <= 2 + preparer.PAGES_AHEAD
    retried = [r for r in caplog.records if r.name == "pipeline.randomuser"]
    assert retried and "HTTP 503" in retried[0].getMessage()
    assert retried[0].levelno == logging.WARNING


def test_the_apis_refusal_in_the_child_is_a_fetch_error_here(standin: StandIn) -> None:
    standin.clear()
    standin.add_faults({"status": 404})
    api = api_for(standin, USERS_TOTAL="100")
    with preparer.Preparer(api, "refused") as pages, pytest.raises(FetchError, match="HTTP 404"):
        list(pages)


def test_a_child_that_vanishes_fails_the_iteration_saying_so(standin: StandIn) -> None:
    standin.clear()
    standin.add_faults({"delay": 5})  # the child is waiting for page 1 when it is killed
    api = api_for(standin, USERS_TOTAL="100")
    with preparer.Preparer(api, "killed") as pages:
        os.kill(pages.pid, signal.SIGKILL)
        with pytest.raises(preparer.PreparerFailed, match=r"pipeline.preparer.*exit code -9"):
            list(pages)
    standin.clear()
