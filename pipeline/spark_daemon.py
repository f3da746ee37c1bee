"""The stream job's Python daemon (``spark.python.daemon.module``): pyspark's own, started with
no zip or jar on its ``sys.path``.

Spark puts ``pyspark.zip``, py4j's zip and spark-core's jar on its Python workers' PYTHONPATH,
and pyspark's worker calls ``importlib.invalidate_caches()`` for every task, which reads the
directory of each of those archives again, in pure Python: about half a worker's CPU at 1,000
users/s. Where pyspark and py4j are installed (the local stack's venv), the workers import them
from there; the daemon forks them with that ``sys.path``. Where they are not (the images, with
Spark's own distribution), the path stays as Spark made it.

Spark ends a Python worker that has been idle for a minute (Spark 3.5 writes the minute into
its code), and the next batch's worker is forked from this daemon. A new worker imported, in its
first batch, what the stream job's ``mapInArrow`` needs: pandas (pyarrow's ``pa.array`` looks
for it) and setuptools (pyspark reads pyarrow's version with ``distutils``, which setuptools
stands in for). Measured on 2 cores with py-spy: 0.6 s of a batch that otherwise takes 0.1 s, so
the first users after every idle minute (a DAG run triggered in the UI, say) waited a second.
The daemon imports them once (``WORKER_IMPORTS``); every worker it forks has them.

A reused worker runs a full ``gc.collect()`` after every task (pyspark's daemon), which walks
every object the imports made: about 100,000, 35-40 ms on 2 cores, once a batch, seven or eight
times a second at 1,000 users/s (py-spy on a worker: 93 % of its samples; the two workers
together 37 % of a core). The daemon freezes them (``gc.freeze``) once imported: the forked
workers' collections walk only what a task made.

Spark's end of a worker's socket leaves Nagle's algorithm on, and so did pyspark's: a write
that follows one not yet acknowledged waits for the acknowledgement, which the other side
delays by 40 ms. Each task met that twice: Spark sends the task's header, then its messages
(strace on a worker: the messages arrived 40 ms after the header, 7-10 ms once it acknowledged
at once), and the worker writes its rows in two parts. Each task's socket here sends at once
(``TCP_NODELAY``) and acknowledges at once (``TCP_QUICKACK``): at 1,000 users/s latency p50
0.13 -> 0.08 s, p95 0.18 -> 0.11 s (development stack, a loaded minute each).
"""

from __future__ import annotations

import gc
import importlib
import os
import socket
import sys
from collections.abc import Callable
from types import ModuleType

ARCHIVES = (".zip", ".jar")


QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only

NEEDED = ("pyspark", "py4j")  # what the workers import from the archives otherwise

# What a new worker imports in its first batch, imported here once (where installed).
WORKER_IMPORTS = ("pandas", "pyarrow.pandas_compat", "distutils.version", "pipeline.parsing")


def without_archives(paths: list[str]) -> list[str]:
    """``paths`` without the zip and jar files when the packages the workers need are in one of
    the others (a pip-installed pyspark, as in the local stack); else ``paths`` unchanged (an
    image with Spark's own distribution, whose Python lives in those zips)."""
    rest = [p for p in paths if not p.endswith(ARCHIVES)]
    found = all(any(os.path.isdir(os.path.join(p or ".", name)) for p in rest) for name in NEEDED)
    return rest if found else list(paths)


def preload(modules: tuple[str, ...]) -> list[str]:
    """Import ``modules`` into this process; the ones that are not installed are passed over.
    Returns those imported."""
    imported = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        imported.append(name)
    return imported


def without_delays(worker: Callable[[socket.socket, bool], int]) -> Callable[..., int]:
    """pyspark's ``daemon.worker`` (run in a forked worker for each task) on a socket that
    sends what it is given at once and acknowledges what it receives at once (the latter where
    the system has ``TCP_QUICKACK``: Linux)."""

    def run(sock: socket.socket, authenticated: bool) -> int:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if QUICKACK is not None:
            sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        return worker(sock, authenticated)

    return run


def prepare() -> ModuleType:
    """Everything but the daemon's loop: the path, the workers' sockets, their imports, frozen.
    Returns pyspark's ``daemon`` module, patched."""
    sys.path[:] = without_archives(sys.path)
    for path in list(sys.path_importer_cache):
        if path.endswith(ARCHIVES) and path not in sys.path:
            del sys.path_importer_cache[path]
    from pyspark import daemon

    daemon.worker = without_delays(daemon.worker)
    preload(WORKER_IMPORTS)
    gc.freeze()  # what is imported by now stays out of every worker's collections
    return daemon


def main() -> None:
    prepare().manager()


if __name__ == "__main__":
    main()
