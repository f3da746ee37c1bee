"""The stream job's Python daemon (``spark.python.daemon.module``): pyspark's own, started with
no zip or jar on its ``sys.path``.

Spark puts ``pyspark.zip``, py4j's zip and spark-core's jar on its Python workers' PYTHONPATH,
and pyspark's worker calls ``importlib.invalidate_caches()`` for every task, which reads the
directory of each of those archives again, in pure Python: about half a worker's CPU at 1,000
users/s. pyspark and py4j are installed where the job runs (the venv, the images), so the
workers import them from there; the daemon forks them with this ``sys.path``.
"""

from __future__ import annotations

import sys

ARCHIVES = (".zip", ".jar")


def without_archives(paths: list[str]) -> list[str]:
    """``paths`` without the zip and jar files."""
    return [p for p in paths if not p.endswith(ARCHIVES)]


def main() -> None:
    sys.path[:] = without_archives(sys.path)
    for path in list(sys.path_importer_cache):
        if path.endswith(ARCHIVES):
            del sys.path_importer_cache[path]
    from pyspark import daemon

    daemon.manager()


if __name__ == "__main__":
    main()
