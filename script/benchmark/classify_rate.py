"""``python -m script.benchmark.classify_rate MESSAGES RUNS``: msgs/s of ``parsing.classify``.

In a local Spark session of its own (no UI, no connectors): a static DataFrame of MESSAGES
valid messages with the Kafka source's columns, cached, then ``classify`` written to Spark's
``noop`` sink, which evaluates every output column of every row. Two untimed passes warm it up;
each of RUNS timed passes gives one rate. Prints one JSON line: ``{"rates": [...], ...}``.
"""

from __future__ import annotations

import datetime
import json
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline import parsing
from script.harness.loadgen import message, record_id, templates


def message_frame(spark: SparkSession, messages: int, tag: str) -> DataFrame:
    """A static DataFrame of ``messages`` valid messages with the Kafka source's columns."""
    pool = templates(2000)
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    sent_ms = int(time.time() * 1000)
    rows = []
    for offset in range(messages):
        rid = record_id(tag, offset)
        rows.append(
            (rid, message(pool[offset % len(pool)], rid, sent_ms), "t", 0, offset, now, 0, None)
        )
    return spark.createDataFrame(rows, parsing.KAFKA_SOURCE_SCHEMA)


def main(argv: list[str]) -> int:
    messages, runs = int(argv[0]), int(argv[1])
    spark = (
        SparkSession.builder.master("local[*]")
        .appName("bench_classify")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    frame = message_frame(spark, messages, "classify").repartition(2).cache()
    frame.count()
    valid = parsing.classify(frame).where(F.col(parsing.REASON).isNull()).count()
    if valid != messages:
        raise SystemExit(f"classify found {valid} of {messages} benchmark messages valid")
    for _ in range(2):
        parsing.classify(frame).write.format("noop").mode("overwrite").save()
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        parsing.classify(frame).write.format("noop").mode("overwrite").save()
        rates.append(messages / (time.perf_counter() - started))
    spark.stop()
    print(json.dumps({"rates": rates, "messages": messages, "valid": valid}), flush=True)
    return 0
