"""The API client against the stand-in: batching, paging, and each fault kind with retries."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from pipeline import config
from pipeline.randomuser import (
    FetchError,
    RandomUserClient,
    backoff_seconds,
    iter_batches,
    parse_retry_after,
    run_seed,
    seed_for_run,
    whole_pages,
)
from standin import StandIn, generate_users


@pytest.fixture(scope="module")
def server() -> Iterator[StandIn]:
    with StandIn() as standin:
        yield standin


@pytest.fixture
def standin(server: StandIn) -> StandIn:
    server.clear()
    return server


class Sleeps(list[float]):
    """Records the client's waits instead of sleeping through them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(
    standin: StandIn, sleeps: Sleeps | None = None, **env: str
) -> tuple[RandomUserClient, Sleeps]:
    defaults = {
        "USERS_API_URL": standin.url,
        "USERS_API_MAX_RETRIES": "3",
        "USERS_API_BACKOFF_SECONDS": "0.2",
        "USERS_API_CONNECT_TIMEOUT": "2",
        "USERS_API_READ_TIMEOUT": "5",
    }
    sleeps = Sleeps() if sleeps is None else sleeps
    api = config.load({**defaults, **env}).api
    return RandomUserClient(api, sleep=sleeps, rng=random.Random(1)), sleeps


def test_fetch_returns_the_requested_page_of_users(standin: StandIn) -> None:
    client, sleeps = make_client(standin)
    assert client.fetch(250, "seed-a", 3) == generate_users("seed-a", 3, 250)
    assert sleeps == []
    (request,) = standin.requests
    assert request.query == "results=250&seed=seed-a&page=3"


def test_iter_batches_pages_through_one_seed_until_the_user_total(standin: StandIn) -> None:
    client, _ = make_client(standin, USERS_TOTAL="2300", USERS_PER_REQUEST="1000")
    batches = list(iter_batches(client, "total"))
    assert [(b.page, len(b.users)) for b in batches] == [(1, 1000), (2, 1000), (3, 300)]
    assert [r.query for r in standin.requests][-1] == "results=300&seed=total&page=3"
    ids = [u["login"]["uuid"] for b in batches for u in b.users]
    assert len(set(ids)) == 2300


def test_iter_batches_starts_at_the_configured_page(standin: StandIn) -> None:
    client, _ = make_client(standin, USERS_TOTAL="20", USERS_PER_REQUEST="10", USERS_START_PAGE="5")
    batches = list(iter_batches(client, "paged"))
    assert [b.page for b in batches] == [5, 6]
    assert batches[0].users == generate_users("paged", 5, 10)


def test_iter_batches_stops_when_the_run_seconds_are_spent(standin: StandIn) -> None:
    client, _ = make_client(standin, USERS_RUN_SECONDS="10", USERS_PER_REQUEST="5")
    now = [0.0]

    def clock() -> float:
        now[0] += 3.0  # every check advances the fake clock 3 s
        return now[0]

    batches = list(iter_batches(client, "timed", clock=clock))
    assert len(batches) == 3  # checks at 6, 9 (< 13) pass; 12 would, 15 does not
    assert sum(len(b.users) for b in batches) == 15


def test_a_paced_timed_run_fetches_no_more_than_it_can_send_in_its_seconds(
    standin: StandIn,
) -> None:
    client, _ = make_client(
        standin, USERS_RUN_SECONDS="10", USERS_PER_SECOND="1.2", USERS_PER_REQUEST="5"
    )
    batches = list(iter_batches(client, "paced", clock=lambda: 0.0))  # the clock never runs out
    assert [len(b.users) for b in batches] == [5, 5, 2]  # 1.2/s * 10 s = 12 users
    assert [r.query for r in standin.requests][-1] == "results=2&seed=paced&page=3"


@pytest.mark.parametrize(
    "env",
    [
        {"USERS_TOTAL": "2300", "USERS_PER_REQUEST": "1000"},
        {"USERS_TOTAL": "20", "USERS_PER_REQUEST": "10", "USERS_START_PAGE": "5"},
        {"USERS_RUN_SECONDS": "10", "USERS_PER_SECOND": "1.2", "USERS_PER_REQUEST": "5"},
    ],
)
def test_whole_pages_are_the_pages_a_run_asks_for_whole(
    standin: StandIn, env: dict[str, str]
) -> None:
    # What `./run.sh` has the stand-in render ahead: the pages the producer then asks for.
    client, _ = make_client(standin, **{"USERS_TOTAL": "0", **env})
    batches = list(iter_batches(client, "ahead", clock=lambda: 0.0))
    whole = [b.page for b in batches if len(b.users) == client.api.per_request]
    assert whole and whole_pages(client.api) == whole


def test_an_unpaced_run_on_a_time_budget_has_no_pages_known_ahead() -> None:
    env = {"USERS_TOTAL": "0", "USERS_RUN_SECONDS": "60", "USERS_PER_SECOND": "0"}
    assert whole_pages(config.load(env).api) == []


def test_a_run_without_any_bound_is_a_config_error(standin: StandIn) -> None:
    client, _ = make_client(standin, USERS_TOTAL="0", USERS_RUN_SECONDS="0")
    with pytest.raises(config.ConfigError, match="USERS_TOTAL=0 and USERS_RUN_SECONDS=0"):
        next(iter_batches(client, "x"))


def test_429_waits_exactly_retry_after_then_succeeds(standin: StandIn) -> None:
    standin.add_faults({"status": 429, "retry_after": "2"})
    client, sleeps = make_client(standin)
    assert len(client.fetch(10, "rl", 1)) == 10
    assert sleeps == [2.0]
    assert len(standin.requests) == 2


def test_429_retry_after_is_really_honoured_in_wall_time(standin: StandIn) -> None:
    standin.add_faults({"status": 429, "retry_after": "1"})
    client, _ = make_client(standin, sleeps=None)
    client._sleep = time.sleep
    client.fetch(5, "rl-wall", 1)
    first, second = standin.requests
    assert second.started - first.started >= 1.0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retried_with_exponential_backoff_and_jitter(standin: StandIn, status: int) -> None:
    standin.add_faults({"status": status, "count": 3})
    client, sleeps = make_client(standin)
    assert client.fetch(10, "5xx", 1) == generate_users("5xx", 1, 10)
    assert len(sleeps) == 3
    for attempt, wait in enumerate(sleeps, start=1):
        ceiling = 0.2 * 2 ** (attempt - 1)
        assert ceiling / 2 <= wait <= ceiling


def test_a_slow_answer_times_out_and_is_retried(
    standin: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    standin.add_faults({"delay": 3})
    client, sleeps = make_client(standin, USERS_API_READ_TIMEOUT="0.5")
    with caplog.at_level(logging.WARNING, logger="pipeline.randomuser"):
        assert client.fetch(10, "slow", 1) == generate_users("slow", 1, 10)
    # The stand-in held the first request back and answered the second, the same query, at once.
    slow, retry = standin.requests
    assert slow.query == retry.query == "results=10&seed=slow&page=1"
    assert slow.fault is not None and slow.fault["delay"] == 3 and retry.fault is None
    # The client gave up on the first at its read timeout, then waited one backoff.
    (warning,) = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert "attempt 1/4 failed (timeout (ReadTimeout" in warning
    assert len(sleeps) == 1 and 0.1 <= sleeps[0] <= 0.2


@pytest.mark.parametrize("declare_full_length", [True, False])
def test_a_truncated_body_is_retried(standin: StandIn, declare_full_length: bool) -> None:
    standin.add_faults({"truncate": 0.6, "declare_full_length": declare_full_length})
    client, sleeps = make_client(standin)
    assert client.fetch(100, "cut", 2) == generate_users("cut", 2, 100)
    assert len(sleeps) == 1


def test_200_with_an_error_body_is_retried(standin: StandIn) -> None:
    standin.add_faults({"error_body": True, "count": 2})
    client, sleeps = make_client(standin)
    assert len(client.fetch(10, "err", 1)) == 10
    assert len(sleeps) == 2


def test_exhausted_retry_budget_names_the_url_and_the_last_error(standin: StandIn) -> None:
    standin.add_faults({"status": 500, "count": 3}, {"error_body": True})
    client, sleeps = make_client(standin)
    with pytest.raises(FetchError) as failure:
        client.fetch(10, "doomed", 4)
    message = str(failure.value)
    assert f"{standin.url}?results=10&seed=doomed&page=4" in message
    assert "after 4 attempt(s)" in message
    assert "HTTP 200 with error body" in message and "Uh oh" in message
    assert len(standin.requests) == 4 and len(sleeps) == 3


def test_exhausted_budget_on_timeouts_names_the_timeout(standin: StandIn) -> None:
    standin.add_faults({"delay": 2, "count": 2})
    client, _ = make_client(standin, USERS_API_MAX_RETRIES="1", USERS_API_READ_TIMEOUT="0.3")
    with pytest.raises(FetchError, match=r"after 2 attempt\(s\); last error: timeout"):
        client.fetch(10, "slow", 1)


def test_a_404_fails_at_once_without_retrying(standin: StandIn) -> None:
    client, sleeps = make_client(standin, USERS_API_URL=f"{standin.base_url}/wrong/")
    with pytest.raises(FetchError, match=r"HTTP 404 \(not retried\).*USERS_API_URL"):
        client.fetch(1, "x", 1)
    assert sleeps == []


def test_an_unreachable_api_fails_naming_the_url(standin: StandIn) -> None:
    client, sleeps = make_client(
        standin, USERS_API_MAX_RETRIES="1", USERS_API_URL="http://127.0.0.1:9/api/"
    )
    with pytest.raises(FetchError, match=r"127\.0\.0\.1:9/api/.*connection broken"):
        client.fetch(1, "x", 1)
    assert len(sleeps) == 1


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = datetime(2025, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == 30.0


def test_backoff_doubles_and_is_capped() -> None:
    rng = random.Random(0)
    waits = [backoff_seconds(n, 1.0, rng) for n in range(1, 10)]
    assert 0.5 <= waits[0] <= 1 and 4 <= waits[3] <= 8
    assert all(15 <= w <= 30 for w in waits[5:])


def test_every_attempt_of_one_dag_run_gets_the_same_seed_and_other_runs_other_seeds() -> None:
    run_ids = [
        "scheduled__2026-11-27T00:00:00+00:00",
        "scheduled__2026-11-28T00:00:00+00:00",
        "manual__2026-11-27T03:41:59.123456+00:00",
        "manual__2026-11-27T03:41:59.123457+00:00",
    ]
    seeds = [seed_for_run(run_id) for run_id in run_ids]
    assert seeds == [seed_for_run(run_id) for run_id in run_ids]  # a retry: the same users
    assert len(set(seeds)) == len(run_ids)
    assert all(seed.isalnum() and len(seed) == 16 for seed in seeds)  # a plain URL value


def test_an_explicit_seed_wins_over_the_run_id_and_no_run_id_gives_fresh_seeds() -> None:
    run_id = "manual__2026-11-27T03:41:59+00:00"
    assert run_seed(config.load({"USERS_SEED": "mine"}).api, run_id) == "mine"
    api = config.load({}).api
    assert run_seed(api, run_id) == seed_for_run(run_id)
    assert run_seed(api) != run_seed(api)  # outside Airflow: a fresh one per run
