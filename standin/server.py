"""The stand-in's HTTP server: the API at ``/api/``, faults queued at ``/_faults``.

``StandIn(port=0).start()`` serves from a daemon thread on a free port (``.url`` is the API
URL); ``add_faults`` queues faults for the next API requests and ``requests`` is the log of what
was asked and which fault answered it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from standin.render import VERSION, check_edit, edit_body, response_body

log = logging.getLogger(__name__)

API_PATHS = frozenset({"/api", "/api/", f"/api/{VERSION}", f"/api/{VERSION}/"})
ERROR_BODY = {
    "error": "Uh oh, something has gone wrong. Please tell us on GitHub or Twitter "
    "and we'll look into it."
}


@dataclass(frozen=True)
class Fault:
    """What to do to the next ``count`` API requests instead of (or before) a normal answer."""

    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    truncate: float | None = None
    declare_full_length: bool = True
    error_body: bool = False
    edits: list[dict[str, Any]] | None = None  # odd entries in a normal answer: edit_body()
    count: int = 1

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault key(s): {', '.join(sorted(unknown))}")
        fault = cls(**data)
        if fault.retry_after is not None:
            fault = cls(**{**asdict(fault), "retry_after": str(fault.retry_after)})
        if fault.count < 1:
            raise ValueError("count must be at least 1")
        if fault.truncate is not None and not 0 <= fault.truncate < 1:
            raise ValueError("truncate is the fraction of the body to send, in [0, 1)")
        if fault.edits is not None:
            if not isinstance(fault.edits, list):
                raise ValueError("edits is a list of edits")
            for edit in fault.edits:
                if not isinstance(edit, dict):
                    raise ValueError(f"an edit is an object, not {edit!r}")
                check_edit(edit)
        return fault


@dataclass
class RequestRecord:
    """One API request as the stand-in saw it."""

    path: str
    query: str
    started: float
    fault: dict[str, Any] | None = None


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: deque[list[Any]] = field(default_factory=deque)  # [Fault, remaining]
    requests: list[RequestRecord] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    # Bodies rendered ahead (``POST /_pages``), by (seed, page, results).
    rendered: dict[tuple[str, int, int], bytes] = field(default_factory=dict)

    def take(self, record: RequestRecord) -> Fault | None:
        with self.lock:
            self.requests.append(record)
            if not self.pending:
                return None
            entry = self.pending[0]
            entry[1] -= 1
            if entry[1] == 0:
                self.pending.popleft()
            record.fault = asdict(entry[0])
            return entry[0]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    server_version = "randomuser-standin"
    # Headers and body go out in separate writes; with Nagle on, a keep-alive client waits
    # ~40 ms for the delayed ACK on every small response.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(
        self,
        status: int,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), headers)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/_faults":
            self._send_json(200, self.server.state_snapshot())
        elif url.path in API_PATHS:
            self._api(url.path, url.query)
        else:
            self._send_json(404, {"error": f"no such path {url.path}; the API is /api/"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path not in ("/_faults", "/_pages"):
            self._send_json(404, {"error": "POST only to /_faults or /_pages"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if path == "/_pages":
            self._render_ahead(self.rfile.read(length))
            return
        try:
            data = json.loads(self.rfile.read(length) or b"null")
            if isinstance(data, dict) and "faults" in data:
                data = data["faults"]
            faults = [
                Fault.from_json(item) for item in (data if isinstance(data, list) else [data])
            ]
        except (ValueError, TypeError) as exc:
            self._send_json(400, {"error": f"bad fault spec: {exc}"})
            return
        self.server.add_faults(*faults)
        self._send_json(200, {"queued": len(faults)})

    def do_DELETE(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_pages":
            self._send_json(200, {"dropped": self.server.drop_rendered()})
        elif path == "/_faults":
            self.server.clear()
            self._send_json(200, {"cleared": True})
        else:
            self._send_json(404, {"error": "DELETE only to /_faults or /_pages"})

    def _render_ahead(self, body: bytes) -> None:
        try:
            spec = json.loads(body or b"null")
            seed, results, pages = spec["seed"], spec["results"], spec["pages"]
            if not (
                isinstance(seed, str)
                and seed
                and type(results) is int
                and isinstance(pages, list)
                and all(type(p) is int and p >= 1 for p in pages)
            ):
                raise ValueError
        except (ValueError, TypeError, KeyError):
            self._send_json(
                400,
                {"error": 'render ahead with {"seed": "...", "results": 5000, "pages": [1, 2]}'},
            )
            return
        size = self.server.render_ahead(seed, results, pages)
        self._send_json(200, {"rendered": len(pages), "bytes": size})

    def _api(self, path: str, query: str) -> None:
        fault = self.server.state.take(RequestRecord(path, query, time.monotonic()))
        if fault is not None and fault.delay and self.server.state.stopping.wait(fault.delay):
            self.close_connection = True
            return
        if fault is not None and fault.status is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send_json(fault.status, {"error": f"injected {fault.status}"}, headers)
            return
        if fault is not None and fault.error_body:
            self._send_json(200, ERROR_BODY)
            return
        body = self.server.body(parse_qs(query))
        if fault is not None and fault.edits:
            body = edit_body(body, fault.edits)
        if fault is None or fault.truncate is None:
            self._send(200, body)
            return
        part = body[: int(len(body) * fault.truncate)]
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body if fault.declare_full_length else part)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(part)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a delayed handler must not hold up close()
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.state = _State()

    def add_faults(self, *faults: Fault) -> None:
        with self.state.lock:
            self.state.pending.extend([f, f.count] for f in faults)

    def clear(self) -> None:
        with self.state.lock:
            self.state.pending.clear()
            self.state.requests.clear()

    def render_ahead(self, seed: str, results: int, pages: list[int]) -> int:
        """Render ``pages`` of ``seed`` now and serve them from memory; their total bytes."""
        bodies = {
            (seed, page, results): response_body(
                {"seed": [seed], "page": [str(page)], "results": [str(results)]}
            )
            for page in pages
        }
        with self.state.lock:
            self.state.rendered.update(bodies)
        return sum(map(len, bodies.values()))

    def drop_rendered(self) -> int:
        with self.state.lock:
            dropped = len(self.state.rendered)
            self.state.rendered.clear()
        return dropped

    def body(self, params: Mapping[str, list[str]]) -> bytes:
        """The body for a query: rendered ahead when it asks for such a page, else now."""
        if self.state.rendered and set(params) <= {"seed", "page", "results"}:
            try:
                key = (params["seed"][0], int(params["page"][0]), int(params["results"][0]))
            except (KeyError, ValueError):
                key = None
            with self.state.lock:
                found = self.state.rendered.get(key) if key else None
            if found is not None:
                return found
        return response_body(params)

    def state_snapshot(self) -> dict[str, Any]:
        with self.state.lock:
            return {
                "pending": [{**asdict(f), "count": left} for f, left in self.state.pending],
                "requests": [asdict(r) for r in self.state.requests],
            }

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout test) leaves a broken pipe behind: not our error.
        log.debug("connection from %s ended early", client_address)


class StandIn:
    """The stand-in server; ``start()`` serves it from a daemon thread (``port=0``: a free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port))
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The API URL, the value for ``USERS_API_URL``."""
        return f"{self.base_url}/api/"

    def add_faults(self, *faults: Fault | Mapping[str, Any]) -> None:
        """Queue faults (``Fault`` or its JSON form) for the next API requests, in order."""
        self._server.add_faults(
            *(f if isinstance(f, Fault) else Fault.from_json(f) for f in faults)
        )

    def clear(self) -> None:
        """Drop pending faults and the request log."""
        self._server.clear()

    def render_ahead(self, seed: str, results: int, pages: list[int]) -> int:
        """Render ``pages`` of ``seed`` now and serve them from memory (``POST /_pages``)."""
        return self._server.render_ahead(seed, results, pages)

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the log of API requests served so far."""
        with self._server.state.lock:
            return list(self._server.state.requests)

    @property
    def pending_faults(self) -> int:
        with self._server.state.lock:
            return sum(left for _, left in self._server.state.pending)

    def start(self) -> StandIn:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="randomuser-standin", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def close(self) -> None:
        self._server.state.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()
