"""Spark's floor (`./run.sh bench --parts floor`): the stream job's Kafka source, partitions and
trigger, nothing parsed and nothing written.

Submitted like the stream job (`spark-submit ... script/benchmark/floor_job.py`, the job's
settings from the environment). Each micro-batch only collects its records' Kafka timestamps
(the producer's send time) and appends them with the time the batch ended to a file beside the
checkpoint (``floor_file``), one JSON line per batch: ``{"end_ms": ..., "sent_ms": [...]}``.
What the pipeline's latency adds to these figures is the parse and the Cassandra write.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import spark_stream
from pipeline import config

log = logging.getLogger("floor_job")


def floor_file(checkpoint_dir: str) -> Path:
    """Where the floor query of the checkpoint ``checkpoint_dir`` writes its timings."""
    return Path(f"{checkpoint_dir}.floor.jsonl")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = config.load()
    out = floor_file(settings.stream.checkpoint_dir)
    conf = spark_stream.session_conf(settings.stream)
    spark = SparkSession.builder.appName("bench_floor").config(map=conf).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")

    def record(batch: DataFrame, _batch_id: int) -> None:
        sent = [r[0] for r in batch.select(F.col("timestamp").cast("double") * 1000).collect()]
        line = {"end_ms": time.time() * 1000, "sent_ms": sent}
        with out.open("a") as f:
            f.write(json.dumps(line) + "\n")

    query = (
        spark_stream.read_kafka(spark, settings)
        .writeStream.queryName("floor")
        .foreachBatch(record)
        .option("checkpointLocation", spark_stream.checkpoint_location(settings.stream))
        .trigger(processingTime=settings.stream.trigger_interval)
        .start()
    )
    log.info("stream job ready: the floor query reads %s", settings.kafka.topic)
    query.awaitTermination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
