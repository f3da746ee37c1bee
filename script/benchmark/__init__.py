"""`./run.sh bench`: how fast the pipeline is, how soon it recovers, how much memory it takes.

Every figure is printed as "median (min..max) over N runs" (``--runs``, default 3) and written,
with each run's data, to ``.stack/bench/<timestamp>/results.json`` beside a chart
(``chart.png``). The parts (``--parts``):

- ``latency``: end-to-end latency p50/p95/p99 at a steady offered rate (``--rate``, default
  1,000 users/s) for ``--seconds``, from the record's ``produced_at`` to Cassandra's write time,
  through a fresh, warmed-up side stream job.
- ``rate``: the sustainable rate, the highest steady rate whose p99 stays within
  ``--p99-limit`` while the job keeps up (step up, then bisect).
- ``classify``: ``parsing.classify`` msgs/s on a static DataFrame, warm, local Spark session.
- ``sink``: rows/s of a fresh job draining a pre-filled topic into Cassandra.
- ``producer``: users/s of a producer run from the bundled stand-in.
- ``restart``: first batch after a SIGTERM restart and after a SIGKILL restart, and the time
  until the SIGKILL's backlog is gone, while users flow.
- ``memory``: PSS of each running service and of the side stream job.
- ``fetch``: one request per user (the reference's way) against 5,000 per request.

The load comes from ``script.harness.loadgen`` (a process of its own); every side job has
its own topic, keyspace, checkpoint and Spark UI port, all dropped afterwards (``side``).
"""

from script.benchmark.cli import main

__all__ = ["main"]
