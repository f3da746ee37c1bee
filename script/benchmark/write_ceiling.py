"""``./run.sh worker write_ceiling ROWS RUNS``: the connector's write ceiling (floor b).

A Spark session as the stream job builds it (``spark_stream.build_session``: the connector's
settings, the job's login; PYSPARK_SUBMIT_ARGS, set by the benchmark, gives the jars), ROWS
valid messages parsed beforehand and cached in SPARK_BATCH_PARTITIONS partitions, then written
to the keyspace CASSANDRA_KEYSPACE names with the job's write options, RUNS times after one
untimed write (each write upserts the same rows: as much work as new ones). Prints one JSON
line: ``{"rates": [...], "rows": N}``.
"""

from __future__ import annotations

import json
import time

import spark_stream
from pipeline import config, parsing
from script.benchmark.classify_rate import message_frame


def main(argv: list[str]) -> int:
    messages, runs = int(argv[0]), int(argv[1])
    settings = config.load()
    spark = spark_stream.build_session(settings)
    frame = message_frame(spark, messages, "ceiling")
    rows = parsing.valid_rows(parsing.classify(frame))
    rows = rows.repartition(settings.stream.batch_partitions).cache()
    count = rows.count()
    c = settings.cassandra
    options = {"keyspace": c.keyspace, "table": c.table, **spark_stream.write_options(c)}

    def write() -> None:
        rows.write.format(spark_stream.CASSANDRA_FORMAT).options(**options).mode("append").save()

    write()  # warm: the connector's session, the JIT
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        write()
        rates.append(count / (time.perf_counter() - started))
    spark.stop()
    print(json.dumps({"rates": rates, "rows": count}), flush=True)
    return 0
