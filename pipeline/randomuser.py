"""The randomuser.me client: batched, seeded, paged fetches with timeouts and retries.

``RandomUserClient.fetch`` gets one page of raw users (up to 5,000), retrying timeouts, broken
connections, truncated bodies, 5xx, 429 (waiting ``Retry-After``) and the 200-with-``error``
body with exponential backoff and jitter. ``iter_batches`` pages through one seed until the
run's budget (``USERS_TOTAL`` users, or else ``USERS_RUN_SECONDS``) is spent.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import random
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import requests

from pipeline import config
from pipeline.config import DAG_ID, ApiSettings

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0
# A Retry-After longer than this fails the run instead of silently parking the task.
MAX_RETRY_AFTER_SECONDS = 300.0


class FetchError(RuntimeError):
    """The API could not be read within the retry budget; the message names URL and error."""


class _Retryable(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Batch:
    """One page of raw users as served, with where it came from (to replay it)."""

    seed: str
    page: int
    users: list[dict[str, Any]]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def backoff_seconds(attempt: int, base: float, rng: random.Random) -> float:
    """Wait before retry number ``attempt`` (1-based): base * 2^(attempt-1), capped, with jitter.

    The jitter ("equal jitter") keeps at least half of the exponential delay, so retries from
    many workers spread out without ever retrying immediately.
    """
    ceiling = min(base * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def decode_json(body: bytes) -> Any:
    """``body`` parsed as JSON: by msgspec (several times faster), else, for what it refuses
    that JSON allows (a lone surrogate's escape, say), by the json module, whose ``ValueError``
    says what is wrong."""
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return json.loads(body)


class RandomUserClient:
    """Fetches pages of users from ``api.url`` with the retry policy of ``api``."""

    def __init__(
        self,
        api: ApiSettings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        decode: Callable[[bytes], Any] | None = None,
    ) -> None:
        self.api = api
        self.session = session or requests.Session()
        # How a body is parsed; like ``decode_json``, a ValueError for what is not JSON.
        self._decode = decode or decode_json
        self._sleep = sleep
        self._rng = rng or random.Random()  # jitter only, not secrets

    def url_for(self, results: int, seed: str, page: int) -> str:
        """The full request URL for one page (what error messages name)."""
        params: dict[str, Any] = {"results": results, "seed": seed, "page": page}
        if self.api.nat:
            params["nat"] = self.api.nat
        prepared = requests.Request("GET", self.api.url, params=params).prepare()
        return str(prepared.url)

    def fetch(self, results: int, seed: str, page: int) -> list[dict[str, Any]]:
        """The raw users of ``page`` for ``seed``; ``FetchError`` once the retries are spent."""
        url = self.url_for(results, seed, page)
        attempts = self.api.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(url)
            except _Retryable as failure:
                if attempt == attempts:
                    raise FetchError(
                        f"GET {url} failed after {attempts} attempt(s); last error: "
                        f"{failure.reason}. Check that USERS_API_URL={self.api.url} answers."
                    ) from None
                wait = self._wait(attempt, failure, url)
                log.warning(
                    "GET %s attempt %d/%d failed (%s); retrying in %.2fs",
                    url,
                    attempt,
                    attempts,
                    failure.reason,
                    wait,
                )
                self._sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _wait(self, attempt: int, failure: _Retryable, url: str) -> float:
        if failure.retry_after is None:
            return backoff_seconds(attempt, self.api.backoff_seconds, self._rng)
        if failure.retry_after > MAX_RETRY_AFTER_SECONDS:
            raise FetchError(
                f"GET {url}: {failure.reason} asks to wait {failure.retry_after:.0f}s, "
                f"more than {MAX_RETRY_AFTER_SECONDS:.0f}s; try again later"
            )
        return failure.retry_after

    def _attempt(self, url: str) -> list[dict[str, Any]]:
        timeout = (self.api.connect_timeout, self.api.read_timeout)
        try:
            response = self.session.get(url, timeout=timeout)
        except requests.Timeout as exc:
            raise _Retryable(f"timeout ({type(exc).__name__}: {exc})") from None
        except (
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise _Retryable(f"connection broken ({type(exc).__name__}: {exc})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise _Retryable(f"HTTP {status}: {response.text[:200]!r}", retry_after)
        if status != 200:
            raise FetchError(
                f"GET {url} answered HTTP {status} (not retried): {response.text[:200]!r}. "
                f"Check USERS_API_URL={self.api.url}."
            )
        try:
            body = self._decode(response.content)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            raise _Retryable(f"body is not JSON ({len(response.content)} bytes: {exc})") from None
        if not isinstance(body, dict):
            raise _Retryable(f"body is {type(body).__name__}, not an object")
        if "error" in body:
            raise _Retryable(f"HTTP 200 with error body: {str(body['error'])[:200]!r}")
        users = body.get("results")
        if not isinstance(users, list) or not users:
            raise _Retryable("HTTP 200 without a non-empty 'results' list")
        return users


def seed_for_run(run_id: str) -> str:
    """The seed of an Airflow DAG run: the same for every attempt of one run, another per run.

    A retried task thus fetches the users its failed attempt fetched, and the users it missed;
    the ones sent twice are upserts (same ``id``), not extra rows.
    """
    return hashlib.sha256(f"{DAG_ID}|{run_id}".encode()).hexdigest()[:16]


def run_seed(api: ApiSettings, run_id: str | None = None) -> str:
    """``USERS_SEED``; else, in a DAG run, ``seed_for_run(run_id)``; else a fresh random seed.

    The caller logs it, so any run can be replayed.
    """
    if api.seed:
        return api.seed
    return seed_for_run(run_id) if run_id else secrets.token_hex(8)


def user_limit(api: ApiSettings) -> int:
    """The most users a run with ``api``'s settings fetches: ``USERS_TOTAL``, else, paced, the
    ``USERS_PER_SECOND * USERS_RUN_SECONDS`` it can send in its time; 0 when unpaced on a time
    budget (the clock alone ends it)."""
    return api.total or (math.ceil(api.per_second * api.run_seconds) if api.per_second else 0)


def whole_pages(api: ApiSettings) -> list[int]:
    """The pages a run with ``api``'s settings asks for whole (``USERS_PER_REQUEST`` users
    each), in order: all but a last, partial one; none when ``user_limit`` is open."""
    return list(range(api.start_page, api.start_page + user_limit(api) // api.per_request))


def iter_batches(
    client: RandomUserClient,
    seed: str,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Batch]:
    """Yield pages ``start_page, start_page+1, ...`` of ``seed`` until the budget is spent.

    With ``USERS_TOTAL`` > 0 exactly that many users are yielded (the last page is asked for
    only what is missing) and ``USERS_RUN_SECONDS`` is ignored; with ``USERS_TOTAL`` = 0 pages
    are fetched until ``USERS_RUN_SECONDS`` have passed since the first call, and, when the run
    is paced, at most the ``USERS_PER_SECOND * USERS_RUN_SECONDS`` users it can send in that time
    (fetching runs ahead of paced sending, so the clock alone would overshoot the budget).
    """
    api = client.api
    config.check_bounded(api)
    limit = user_limit(api)
    deadline = None if api.total else clock() + api.run_seconds
    fetched = 0
    page = api.start_page
    while (not limit or fetched < limit) and (deadline is None or clock() < deadline):
        wanted = min(api.per_request, limit - fetched) if limit else api.per_request
        users = client.fetch(wanted, seed, page)[:wanted]
        fetched += len(users)
        yield Batch(seed=seed, page=page, users=users)
        page += 1
