"""Kafka messages -> contract rows and dead letters: pure DataFrame functions, no I/O.

``split_records`` is the stream job's transform. It takes a DataFrame with the Kafka source's
columns (``key``, ``value``, ``topic``, ``partition``, ``offset``, ``timestamp``) and returns
the rows that satisfy ``pipeline.contract`` and the rows that do not, each rejected row with
a ``reason``. It is made of Spark SQL expressions only (no Python UDF), so it runs in the JVM
at Spark's speed, and it works alike on a streaming and on a static DataFrame.

Spark's ``from_json`` is lenient: it reads a number into a string column as its text, and an
object followed by junk as that object. To be as strict as ``contract.validate``, the text is
parsed three times:

1. ``[`` + text + ``]`` as ``ARRAY<STRING>``: one element means the text is exactly one JSON
   value; for an object, that element is the object re-written as compact JSON.
2. the compact JSON as ``MAP<STRING,STRING>``: the keys present (repeats included) and each
   value's text.
3. the compact JSON with the contract's schema: a ``long`` field whose token is not a JSON
   integer within range comes back null.

A ``string`` field holds a JSON string when the compact JSON contains
``"name":"<its text, JSON-escaped>"``: a number, boolean, object or array is written without
those quotes, and a quote inside another string is escaped, so it cannot fake the match. (Only
a nested object could, and a nested object is itself a wrong type, so the record is rejected.)
When that cheap test misses (characters outside the BMP are escaped differently by the two
JSON writers), the field's token is read once more with ``get_json_object`` to decide.

Known leniency: Spark's JSON reader stops at the end of the first value, so a stray closing
bracket and whatever follows it (``{...}] junk``) go unnoticed.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, LongType, StringType, StructField, StructType

from pipeline.contract import FIELD_NAMES, FIELDS, Field

SPARK_TYPES: dict[str, DataType] = {"string": StringType(), "long": LongType()}

# Spark's Jackson accepts 'single quotes' and NaN by default; JSON (and Python's json) do not.
STRICT_JSON: dict[str, str] = {"allowSingleQuotes": "false", "allowNonNumericNumbers": "false"}

REASON = "reason"

# A dead letter: where the message came from, its bytes as received, and why it was rejected.
DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "topic",
    "partition",
    "offset",
    "kafka_timestamp",
    "raw_key",
    "raw_value",
    REASON,
)

# Reasons for a whole message; field-level reasons name the field (see ``_field_problem``).
EMPTY_MESSAGE = "empty message"
NOT_UTF8 = "not utf-8"
NOT_JSON = "not json"
NOT_OBJECT = "not a json object"


def spark_schema() -> StructType:
    """The record's Spark schema: one nullable column per contract field, in contract order."""
    return StructType([StructField(f.name, SPARK_TYPES[f.kind], nullable=True) for f in FIELDS])


def _field_problem(field: Field, compact: Column, texts: Column, typed: Column) -> Column:
    """Why ``field`` breaks the contract in this message, or null when it does not.

    Like ``contract.validate``: absent, null and ``""`` count as missing.
    """
    text = texts.getItem(field.name)
    missing = text.isNull() | (text == "")
    if field.kind == "string":
        as_object = F.to_json(F.struct(text.alias(field.name)))  # {"name":"<escaped>"}
        member = as_object.substr(F.lit(2), F.length(as_object) - 2)  # "name":"<escaped>"
        # The two JSON writers escape alike except outside the BMP (an emoji is raw in one,
        # \uD83D\uDE00 in the other), so a miss is settled by reading the token itself: in
        # "quoted style" (under a [*] wildcard) get_json_object keeps a string's quotes.
        token = F.get_json_object(F.concat(F.lit("["), compact, F.lit("]")), f"$[*].{field.name}")
        wrong_type = F.when(compact.contains(member), F.lit(False)).otherwise(
            ~F.coalesce(token.startswith('"'), F.lit(False))
        )
    else:
        wrong_type = typed.getField(field.name).isNull()
    if_present = F.when(wrong_type, F.lit(f"wrong type for {field.name}: expected {field.kind}"))
    if field.required:
        return F.when(missing, F.lit(f"missing field {field.name}")).otherwise(if_present)
    return F.when(missing, F.lit(None).cast("string")).otherwise(if_present)


def _record_problems(compact: Column, texts: Column, typed: Column) -> Column:
    """All contract violations of a JSON object, ``; ``-joined, or null when there are none."""
    keys = F.map_keys(texts)
    known = F.array(*[F.lit(name) for name in FIELD_NAMES])
    repeated = F.filter(
        F.array_distinct(keys), lambda k: F.size(F.filter(keys, lambda x: x == k)) > 1
    )
    unexpected = F.array_except(keys, known)
    joined = F.concat_ws(
        "; ",
        F.transform(repeated, lambda k: F.concat(F.lit("duplicate field "), k)),
        F.transform(unexpected, lambda k: F.concat(F.lit("unexpected field "), k)),
        *[_field_problem(field, compact, texts, typed) for field in FIELDS],
    )
    return F.when(joined != "", joined)


def classify(kafka: DataFrame) -> DataFrame:
    """Each Kafka message with its contract columns (typed), its dead-letter columns and ``reason``.

    ``reason`` is null for a message that satisfies the contract, else it says why not:
    ``empty message``, ``not utf-8``, ``not json``, ``not a json object``, or the ``; ``-joined
    field problems (``duplicate field x``, ``unexpected field x``, ``missing field x``,
    ``wrong type for x: expected long``).

    Persist the result before taking ``valid_rows`` and ``rejected_rows`` of a large batch (the
    job does): Spark pushes a filter on ``reason`` down into the parsing, where the filter then
    re-parses the JSON for every field it looks at.
    """
    value = F.col("value")
    text = F.decode(value, "UTF-8")  # malformed bytes become U+FFFD, so they don't round-trip
    values = F.from_json(F.concat(F.lit("["), text, F.lit("]")), "ARRAY<STRING>", STRICT_JSON)
    stage = kafka.select(
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("key").alias("raw_key"),
        value.alias("raw_value"),
        text.alias("_text"),
        values.alias("_values"),
    )
    compact = F.when(F.size("_values") == 1, F.col("_values").getItem(0))
    stage = stage.withColumn("_compact", compact)
    stage = stage.withColumn("_texts", F.from_json("_compact", "MAP<STRING,STRING>", STRICT_JSON))
    stage = stage.withColumn("_typed", F.from_json("_compact", spark_schema(), STRICT_JSON))
    reason = (
        F.when(F.col("raw_value").isNull(), F.lit(EMPTY_MESSAGE))
        .when(F.encode("_text", "UTF-8") != F.col("raw_value"), F.lit(NOT_UTF8))
        .when(F.coalesce(F.size("_values"), F.lit(0)) != 1, F.lit(NOT_JSON))
        # One valid JSON value that opens with a brace is an object; a JSON *string* holding
        # an object's text (double-encoded JSON) opens with a quote.
        .when(~F.col("_text").rlike(r"^[ \t\r\n]*\{") | F.col("_texts").isNull(), F.lit(NOT_OBJECT))
        .otherwise(_record_problems(F.col("_compact"), F.col("_texts"), F.col("_typed")))
    )
    fields = [F.col("_typed").getField(name).alias(name) for name in FIELD_NAMES]
    return stage.select(*fields, *DEAD_LETTER_COLUMNS[:-1], reason.alias(REASON))


def valid_rows(classified: DataFrame) -> DataFrame:
    """The contract columns of the messages ``classify`` found valid."""
    return classified.where(F.col(REASON).isNull()).select(*FIELD_NAMES)


def rejected_rows(classified: DataFrame) -> DataFrame:
    """The dead-letter columns of the messages ``classify`` rejected."""
    return classified.where(F.col(REASON).isNotNull()).select(*DEAD_LETTER_COLUMNS)


def split_records(kafka: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(valid rows, rejected rows) of a DataFrame of Kafka messages; see ``classify``."""
    classified = classify(kafka)
    return valid_rows(classified), rejected_rows(classified)
