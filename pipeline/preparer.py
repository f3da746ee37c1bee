"""Prepare users for sending, in a process of their own: fetch pages, format, validate, encode.

The producer's process has one GIL; kafka-python's send path takes most of it. So a run's users
are fetched from the users API, formatted (``formatting.format_user``), validated against the
contract and encoded by a child process (``python -m pipeline.preparer``), a page at a time,
while the producer's process sends the page before. The child reads the run's ``ApiSettings``
and seed on its standard input and writes frames to its standard output: each prepared page,
its log records (a retried fetch, say), and at the end either ``end`` or the error that stopped
it. ``Preparer`` starts the child and yields its pages; ``prepare`` is the pure step the child
runs on each page.

A prepared record is its key and its JSON value in two pieces around the send time
(``contract.SendTime``): the producer stamps ``produced_at`` when it sends, after any wait, so
latency is measured from the send. Memory stays bounded: the child fetches one page ahead
(``PAGES_AHEAD``) and blocks on a full pipe until the producer takes the page it prepared.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypedDict

import msgspec

from pipeline import contract
from pipeline.config import ApiSettings
from pipeline.formatting import Skip, format_user
from pipeline.randomuser import Batch, FetchError, RandomUserClient, decode_json, iter_batches

log = logging.getLogger(__name__)

# Pages fetched while the current one is prepared: with the pipe's back-pressure, what bounds
# the run's memory (the page being sent, the one prepared next, the one fetched ahead).
PAGES_AHEAD = 1
# The field the producer fills in when it sends (the contract's SendTime), and the value the
# child encodes in its place to find where the send time goes.
SEND_TIME_FIELD = next(f.name for f in contract.FIELDS if isinstance(f.source, contract.SendTime))
_PLACEHOLDER = 0
_MARK = msgspec.json.encode({SEND_TIME_FIELD: _PLACEHOLDER})[1:-1]  # b'"produced_at":0'
_MARK_KEY = _MARK[: -len(str(_PLACEHOLDER))]  # b'"produced_at":'


def encode_key(record: Mapping[str, Any]) -> bytes:
    return str(record[contract.PRIMARY_KEY]).encode("utf-8")


_ENCODER = msgspec.json.Encoder()


def encode_value(record: Mapping[str, Any]) -> bytes:
    """The record as compact UTF-8 JSON in the contract's field order; non-ASCII names stay as
    they are (msgspec: the json module's output, several times faster)."""
    return _ENCODER.encode(record)


def stamp(head: bytes, tail: bytes, produced_at: int) -> bytes:
    """A prepared value with its send time: ``encode_value`` of the record with that
    ``produced_at``."""
    return b"%s%d%s" % (head, produced_at, tail)


@dataclass
class Prepared:
    """One page made ready to send: ``records`` are (key, head, tail) for ``stamp``; ``skips``
    are (reason, the ``repr`` of the user's ``login.uuid``) of the served entries that are not
    records, in the page's order."""

    page: int
    fetched: int
    records: list[tuple[bytes, bytes, bytes]]
    skips: list[tuple[str, str]]


def _served_shape(paths: Iterable[str]) -> Any:
    """A TypedDict of a served user that holds only ``paths`` (dotted), each leaf any JSON."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node.setdefault(leaf, {})

    def shape(name: str, children: dict[str, Any]) -> Any:
        fields = {key: shape(key, sub) if sub else Any for key, sub in children.items()}
        return TypedDict(name, fields, total=False)

    return shape("User", tree)


# A page as the contract reads it: the users' other values (login secrets, coordinates, ...)
# are skipped while parsing, not built and dropped: a page parses in about half the time.
_PAGE = msgspec.json.Decoder(
    TypedDict(
        "Page",
        {"results": list[_served_shape(contract.SERVED_PATHS)], "error": Any},
        total=False,
    )
)


def decode_page(body: bytes) -> Any:
    """A users API body with each user holding only what the contract reads; a body shaped
    otherwise (an entry that is not an object, a value where an object belongs, or not JSON)
    is parsed whole by ``decode_json``, so ``format_user`` gives each entry the same verdict."""
    try:
        return _PAGE.decode(body)
    except msgspec.DecodeError:  # ValidationError included
        return decode_json(body)


def prepare(batch: Batch) -> Prepared:
    """Format, validate and encode each user of ``batch``; an entry that cannot become a valid
    record is a skip with its reason (``format_user``'s, or ``invalid: ...`` from the contract)."""
    records: list[tuple[bytes, bytes, bytes]] = []
    skips: list[tuple[str, str]] = []
    for raw in batch.users:
        record = format_user(raw, _PLACEHOLDER)
        if isinstance(record, Skip):
            skips.append((record.reason, _uuid(raw)))
            continue
        try:
            contract.validate(record)
        except contract.InvalidRecord as exc:
            skips.append((f"invalid: {exc}", _uuid(raw)))
            continue
        head, tail = encode_value(record).rsplit(_MARK, 1)
        records.append((encode_key(record), head + _MARK_KEY, tail))
    return Prepared(batch.page, len(batch.users), records, skips)


def _uuid(raw: Any) -> str:
    """The served ``login.uuid`` of an entry as Python shows it (a lone surrogate escaped), for
    a skip's log line; never the entry itself."""
    login = raw.get("login") if isinstance(raw, dict) else None
    return repr(login.get("uuid") if isinstance(login, dict) else None)


def _text(text: str) -> str:
    """``text`` with any lone surrogate escaped, so that a frame can carry it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


_DONE = object()


class Prefetcher:
    """Iterates ``items`` while a background thread fetches up to ``ahead`` of them ahead.

    The next page downloads while this one is prepared. An item is held from when its fetch
    starts until the caller asks for the one after it, and never more than ``ahead + 1`` are
    held (``most_held`` says how many were): pages do not pile up in memory when sending is
    slow. An exception raised by ``items`` is re-raised in the caller where that item would have
    come; a caller that stops early stops the thread.
    """

    def __init__(self, items: Iterable[Any], ahead: int = PAGES_AHEAD) -> None:
        self._items = items
        self._limit = ahead + 1
        self._ready: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue()
        self._room = threading.Condition()
        self._stopped = False
        self.held = 0
        self.most_held = 0

    def _pump(self) -> None:
        try:
            iterator = iter(self._items)
            while True:
                with self._room:
                    while self.held >= self._limit and not self._stopped:
                        self._room.wait()
                    if self._stopped:
                        return
                    self.held += 1
                    self.most_held = max(self.most_held, self.held)
                item = next(iterator, _DONE)
                self._ready.put((item, None))
                if item is _DONE:
                    return
        except BaseException as exc:  # handed to the caller, never swallowed
            self._ready.put((_DONE, exc))

    def __iter__(self) -> Iterator[Any]:
        threading.Thread(target=self._pump, name="prefetch", daemon=True).start()
        try:
            while True:
                item, error = self._ready.get()
                if error is not None:
                    raise error
                if item is _DONE:
                    return
                yield item
                with self._room:  # the caller is done with ``item``
                    self.held -= 1
                    self._room.notify()
        finally:
            with self._room:
                self._stopped = True
                self._room.notify()


# --- the frames between the child and the producer ----------------------------------------


class _Job(msgspec.Struct):
    api: ApiSettings
    seed: str


class _Page(msgspec.Struct, tag="page"):
    page: int
    fetched: int
    records: list[tuple[bytes, bytes, bytes]]
    skips: list[tuple[str, str]]
    pages_held: int  # the most pages the child held at once so far


class _Log(msgspec.Struct, tag="log"):
    level: int
    logger: str
    message: str


class _Error(msgspec.Struct, tag="error"):
    fetch: bool  # a FetchError: the API gave up; else the child failed
    message: str


class _End(msgspec.Struct, tag="end"):
    pass


_Frame = _Page | _Log | _Error | _End
_LENGTH = 4  # bytes of each frame's big-endian length


class _FrameWriter:
    """Writes frames to the child's standard output; the fetch thread's log records too."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._encoder = msgspec.msgpack.Encoder()

    def write(self, frame: _Frame) -> None:
        body = self._encoder.encode(frame)
        with self._lock:
            self._out.write(len(body).to_bytes(_LENGTH, "big") + body)
            self._out.flush()


class _ForwardLogs(logging.Handler):
    def __init__(self, writer: _FrameWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        self._writer.write(_Log(record.levelno, record.name, _text(record.getMessage())))


def main() -> int:
    """``python -m pipeline.preparer``: the child. Reads the job on stdin, writes frames."""
    job = msgspec.msgpack.decode(sys.stdin.buffer.read(), type=_Job)
    writer = _FrameWriter(sys.stdout.buffer)
    root = logging.getLogger()
    root.handlers[:] = [_ForwardLogs(writer)]
    root.setLevel(logging.INFO)
    try:
        client = RandomUserClient(job.api, decode=decode_page)
        pages = Prefetcher(iter_batches(client, job.seed))
        for batch in pages:
            prepared = prepare(batch)
            writer.write(
                _Page(
                    prepared.page,
                    prepared.fetched,
                    prepared.records,
                    prepared.skips,
                    pages_held=pages.most_held,
                )
            )
    except FetchError as exc:
        writer.write(_Error(fetch=True, message=_text(str(exc))))
    except BrokenPipeError:
        return 0  # the producer stopped reading: it is done with this run
    except BaseException:
        writer.write(_Error(fetch=False, message=_text(traceback.format_exc())))
        return 1
    writer.write(_End())
    return 0


class PreparerFailed(RuntimeError):
    """The child preparing the users failed or vanished; the message says how."""


class Preparer:
    """Starts the child for one run and yields its ``Prepared`` pages, in order.

    A ``FetchError`` in the child is raised where its page would have come; the child's log
    records are logged here under their own loggers. ``most_held`` is the most pages the run
    held at once: the one being sent here and the child's. ``close`` (or leaving the ``with``)
    stops the child.
    """

    def __init__(self, api: ApiSettings, seed: str) -> None:
        # Run from the folder this package is in: `python -m` puts it first on the child's
        # path, so the child imports the same code wherever this process found it.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.preparer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._in = self._process.stdout
        self._process.stdin.write(msgspec.msgpack.encode(_Job(api, seed)))
        self._process.stdin.close()
        self._decoder = msgspec.msgpack.Decoder(_Frame)
        self.pid = self._process.pid
        self.most_held = 0

    def _read(self) -> _Frame:
        length = self._in.read(_LENGTH)
        body = self._in.read(int.from_bytes(length, "big")) if len(length) == _LENGTH else b""
        if not body:
            code = self._process.wait()
            raise PreparerFailed(
                f"the process preparing the users (python -m pipeline.preparer) ended without "
                f"finishing the run (exit code {code}); its error, if any, is on the task's log"
            )
        return self._decoder.decode(body)

    def __iter__(self) -> Iterator[Prepared]:
        while True:
            frame = self._read()
            if isinstance(frame, _Log):
                logging.getLogger(frame.logger).log(frame.level, "%s", frame.message)
            elif isinstance(frame, _Page):
                self.most_held = max(self.most_held, 1 + frame.pages_held)
                yield Prepared(frame.page, frame.fetched, frame.records, frame.skips)
            elif isinstance(frame, _Error):
                if frame.fetch:
                    raise FetchError(frame.message)
                raise PreparerFailed(f"preparing the users failed:\n{frame.message}")
            else:
                return

    def close(self) -> None:
        """Stop the child (at once if it is still preparing) and reap it."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._in.close()

    def __enter__(self) -> Preparer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    raise SystemExit(main())
