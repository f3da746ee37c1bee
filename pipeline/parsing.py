"""Kafka messages -> contract rows and dead letters: a pure function of a DataFrame, no I/O.

``classify`` is the stream job's transform. It takes a DataFrame with the Kafka source's columns
(``key``, ``value``, ``topic``, ``partition``, ``offset``, ``timestamp``) and returns each
message with its typed contract columns, its dead-letter columns and a ``reason`` that is null
for a message that satisfies ``pipeline.contract``. It works alike on a streaming and on a static
DataFrame.

Spark hands the messages to Python a batch at a time as Arrow (``mapInArrow``: no pandas, no
row-by-row pickling), and each message is decoded once, strictly, by a ``msgspec`` decoder built
from the contract: exactly one JSON object, only the contract's fields, each of its type (a
``long`` is a JSON integer within 64 bits, never a float or a boolean), every required field
non-empty, every string at most ``contract.MAX_STRING_BYTES`` bytes. That decoder does not see
repeated keys, so a message that passes it must also hold exactly as many ``"`` characters as
its fields account for (checked only when it holds no escaped quote).

Whatever the fast decoder refuses, ``message_verdict`` decides, with the standard library's
JSON reader and the whole list of problems as the reason. The fast path only ever accepts what
``message_verdict`` accepts; it exists because it costs about a microsecond a message.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import msgspec
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    DataType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from pipeline.contract import (
    DEAD_LETTER_COLUMNS,
    FIELD_NAMES,
    FIELDS,
    LONG_MAX,
    LONG_MIN,
    MAX_STRING_BYTES,
    PRIMARY_KEY,
    REJECTION_REASON,
    REJECTION_TIME,
)

SPARK_TYPES: dict[str, DataType] = {
    "string": StringType(),
    "long": LongType(),
    "int": IntegerType(),
    "timestamp": TimestampType(),
    "bytes": BinaryType(),
}
ARROW_TYPES: dict[str, pa.DataType] = {"string": pa.string(), "long": pa.int64()}

# The dead-letter columns ``classify`` fills, in contract order: copies of the Kafka source's
# columns and the reason. ``rejected_rows`` adds the rest (the time of the write).
_CLASSIFIED_DEAD_LETTER = tuple(c for c in DEAD_LETTER_COLUMNS if c.source != REJECTION_TIME)
DEAD_LETTER_SCHEMA = StructType(
    [StructField(c.name, SPARK_TYPES[c.kind]) for c in _CLASSIFIED_DEAD_LETTER]
)
# The column that says why a message was rejected: null for a valid one.
REASON: str = next(c.name for c in DEAD_LETTER_COLUMNS if c.source == REJECTION_REASON)

# The Kafka source's schema (Spark's), for static DataFrames shaped like a micro-batch.
KAFKA_SOURCE_SCHEMA = StructType(
    [
        StructField("key", BinaryType()),
        StructField("value", BinaryType()),
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("timestamp", TimestampType()),
        StructField("timestampType", IntegerType()),
        StructField(  # with the option includeHeaders; null for a message without headers
            "headers",
            ArrayType(
                StructType([StructField("key", StringType()), StructField("value", BinaryType())])
            ),
        ),
    ]
)
HEADER = "header:"  # a dead-letter column's source that names a Kafka record header
# The Kafka source's columns that classify reads, in the order the Arrow batches carry them: the
# message, and the ones its dead letter copies.
KAFKA_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(
        ["value", *(c.source for c in _CLASSIFIED_DEAD_LETTER if c.source != REJECTION_REASON)]
    )
)

# Reasons for a whole message; field-level reasons name the field (see ``field_problem``).
EMPTY_MESSAGE = "empty message"
NOT_UTF8 = "not utf-8"
NOT_JSON = "not json"
NOT_OBJECT = "not a json object"


def spark_schema() -> StructType:
    """The record's Spark schema: one nullable column per contract field, in contract order."""
    return StructType([StructField(f.name, SPARK_TYPES[f.kind], nullable=True) for f in FIELDS])


def classified_schema() -> StructType:
    """What ``classify`` returns: the contract's columns, then the dead-letter columns."""
    return StructType([*spark_schema().fields, *DEAD_LETTER_SCHEMA.fields])


# ------------------------------------------------------------------ one message, the reference


class _Pairs(list):
    """A JSON object as the list of its (key, value) pairs, repeats and order kept."""


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def field_problem(name: str, kind: str, required: bool, value: Any) -> str | None:
    """Why ``value`` cannot be field ``name`` of the contract, or None when it can.

    Absent, null and ``""`` count as missing, as in ``contract.validate``.
    """
    if value is None or value == "":
        return f"missing field {name}" if required else None
    if kind == "long":
        if isinstance(value, int) and not isinstance(value, bool) and LONG_MIN <= value <= LONG_MAX:
            return None
        return f"wrong type for {name}: expected long"
    if not isinstance(value, str):
        return f"wrong type for {name}: expected string"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, written as an escape ("\ud800")
        return f"not utf-8 in {name}"
    if size > MAX_STRING_BYTES:
        return f"too long for {name}: {size} bytes, at most {MAX_STRING_BYTES}"
    return None


def message_verdict(value: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """(the record, None) for a message that satisfies the contract, else (None, the reason).

    The reason is ``empty message``, ``not utf-8``, ``not json``, ``not a json object``, or
    the ``; ``-joined problems of an object: ``duplicate field x`` and ``unexpected field x``
    (in the order the keys first appear), then per contract field, in contract order,
    ``missing field x``, ``wrong type for x: expected long|string``, ``not utf-8 in x`` or
    ``too long for x: ...``. A repeated field is checked with its last value.
    """
    if value is None:
        return None, EMPTY_MESSAGE
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return None, NOT_UTF8
    try:
        document = json.loads(text, object_pairs_hook=_Pairs, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return None, NOT_JSON
    if not isinstance(document, _Pairs):
        return None, NOT_OBJECT
    counts = Counter(key for key, _ in document)
    record = dict(document)
    problems = [f"duplicate field {key}" for key, n in counts.items() if n > 1]
    problems += [f"unexpected field {key}" for key in counts if key not in FIELD_NAMES]
    for f in FIELDS:
        problem = field_problem(f.name, f.kind, f.required, record.get(f.name))
        if problem:
            problems.append(problem)
    if problems:
        return None, "; ".join(problems)
    return {f.name: None if record.get(f.name) == "" else record.get(f.name) for f in FIELDS}, None


# ------------------------------------------------------------------ many messages, the fast path


def _fast_type(kind: str, required: bool) -> Any:
    if kind == "long":
        kept: Any = Annotated[int, msgspec.Meta(ge=LONG_MIN, le=LONG_MAX)]
    else:
        # A character is at most 4 bytes of UTF-8: a longer string is measured exactly by
        # ``message_verdict``.
        kept = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STRING_BYTES // 4)]
    return kept if required else kept | None | msgspec.UnsetType


_Record = msgspec.defstruct(
    "_Record",
    [
        (f.name, _fast_type(f.kind, f.required))
        if f.required
        else (f.name, _fast_type(f.kind, f.required), msgspec.UNSET)
        for f in FIELDS
    ],
    forbid_unknown_fields=True,
)
_decode = msgspec.json.Decoder(_Record).decode
_OPTIONAL = tuple(f for f in FIELDS if not f.required)
# Quote characters of a record with every required field present: two per key, two more per
# string value.
_REQUIRED_QUOTES = sum(4 if f.kind == "string" else 2 for f in FIELDS if f.required)


def _expected_quotes(record: Any) -> int:
    quotes = _REQUIRED_QUOTES
    for f in _OPTIONAL:
        value = getattr(record, f.name)
        if value is not msgspec.UNSET:
            quotes += 4 if isinstance(value, str) else 2
    return quotes


def _fast_record(value: bytes | None) -> tuple[Any, ...] | None:
    """The record's values in contract order when the fast decoder accepts it, else None."""
    if value is None or b'\\"' in value:
        return None
    try:
        record = _decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if value.count(b'"') != _expected_quotes(record):  # a repeated key
        return None
    if _OPTIONAL:
        return tuple(None if v is msgspec.UNSET else v for v in msgspec.structs.astuple(record))
    return msgspec.structs.astuple(record)


def classify_values(values: list[bytes | None]) -> tuple[list[tuple[Any, ...]], list[str | None]]:
    """Per message: its contract values (Nones when rejected) and its reason (None when valid)."""
    blank = (None,) * len(FIELDS)
    rows: list[tuple[Any, ...]] = []
    reasons: list[str | None] = []
    for value in values:
        row = _fast_record(value)
        if row is None:
            record, reason = message_verdict(value)
            row = blank if record is None else tuple(record.values())
        else:
            reason = None
        rows.append(row)
        reasons.append(reason)
    return rows, reasons


_ARROW_FIELDS = [pa.field(f.name, ARROW_TYPES[f.kind]) for f in FIELDS]


def classify_batch(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, int]:
    """One Arrow batch of Kafka messages (``KAFKA_COLUMNS``) -> (classified batch, rejected)."""
    rows, reasons = classify_values(batch.column("value").to_pylist())
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(FIELDS)
    arrays = [
        pa.array(column, type=field.type)
        for column, field in zip(columns, _ARROW_FIELDS, strict=True)
    ]
    reason_array = pa.array(reasons, type=pa.string())
    dead_letter = [
        reason_array if c.source == REJECTION_REASON else batch.column(c.source)
        for c in _CLASSIFIED_DEAD_LETTER
    ]
    names = [*FIELD_NAMES, *DEAD_LETTER_SCHEMA.fieldNames()]
    rejected = len(reasons) - reasons.count(None)
    return pa.RecordBatch.from_arrays([*arrays, *dead_letter], names=names), rejected


def arrow_classifier(
    on_batch: Callable[[int, int], None] | None = None,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function; ``on_batch(rows, rejected)`` is told each batch's counts
    (an accumulator's ``add``, say)."""

    def classify_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            out, rejected = classify_batch(batch)
            if on_batch is not None:
                on_batch(batch.num_rows, rejected)
            yield out

    return classify_batches


def classify(kafka: DataFrame, on_batch: Callable[[int, int], None] | None = None) -> DataFrame:
    """Each Kafka message with its contract columns (typed), its dead-letter columns and ``reason``.

    ``reason`` is null for a message that satisfies the contract, else it says why not (see
    ``message_verdict``). ``on_batch`` runs in the Python worker with each Arrow batch's
    (messages, rejected) counts.
    """
    columns = [_header(name) if name.startswith(HEADER) else F.col(name) for name in KAFKA_COLUMNS]
    return kafka.select(*columns).mapInArrow(arrow_classifier(on_batch), classified_schema())


def _header(source: str) -> Column:
    """The first value of the Kafka record header ``header:NAME`` read as an int (else null),
    named ``source``."""
    key = source.removeprefix(HEADER).replace("'", "")
    first = f"try_element_at(filter(headers, h -> h.key = '{key}'), 1).value"
    return F.expr(f"try_cast(cast({first} AS STRING) AS INT)").alias(source)


def valid_selection() -> tuple[Column, list[Column]]:
    """What ``valid_rows`` keeps: (the condition, the contract columns), as expressions that
    fit any DataFrame ``classify`` returns, so a caller may build them once."""
    return F.col(REASON).isNull(), [F.col(name) for name in FIELD_NAMES]


def valid_rows(classified: DataFrame) -> DataFrame:
    """The contract columns of the messages ``classify`` found valid."""
    condition, columns = valid_selection()
    return classified.where(condition).select(*columns)


def rejected_rows(classified: DataFrame) -> DataFrame:
    """The messages ``classify`` rejected, as dead letters: ``contract.DEAD_LETTER_COLUMNS``.

    The time of the rejection is when Spark runs the query (the micro-batch's time).
    """
    columns = [
        F.current_timestamp().alias(c.name) if c.source == REJECTION_TIME else F.col(c.name)
        for c in DEAD_LETTER_COLUMNS
    ]
    return classified.where(F.col(REASON).isNotNull()).select(*columns)


# Text beyond ASCII as randomuser.me serves it (its nationalities' names, streets and cities in
# Latin, Cyrillic and Persian script): warm-up values carry it, so that the JVM's UTF-8 paths
# run before the first real batch does (see ``synthetic_values``).
SYNTHETIC_TEXT = " Ørsted Çelik Ефремов نیکنام"


def synthetic_id(numbers: Column) -> Column:
    """A warm-up user's ``id`` for each number n: shaped as randomuser's ``login.uuid`` (36
    characters), ``00000000-0000-4000-8000-`` and n in 12 digits."""
    return F.format_string("00000000-0000-4000-8000-%012d", numbers)


def synthetic_values(numbers: Column) -> Column:
    """A valid message value (the contract's JSON, as bytes) for each number n, shaped as a
    served user's: ``id`` is ``synthetic_id``, every other string field ``<field> <n>`` and
    ``SYNTHETIC_TEXT``, every long field n. The stream job's warm-up sends these down its own
    path (spark_stream.py) keyed by ``id`` as the producer keys its records: values and keys
    the warm-up's compiled code never saw would send the JVM back to the interpreter at the
    first real batch (seen: Kafka's record reader, Spark's row projection, the driver's token
    hash and its statement binding, all recompiled then)."""
    text = numbers.cast("string")
    fields = [
        (
            numbers
            if f.kind == "long"
            else synthetic_id(numbers)
            if f.name == PRIMARY_KEY
            else F.concat(F.lit(f"{f.name} "), text, F.lit(SYNTHETIC_TEXT))
        ).alias(f.name)
        for f in FIELDS
    ]
    return F.to_json(F.struct(*fields)).cast("binary")


def split_records(kafka: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(valid rows, rejected rows) of a DataFrame of Kafka messages; see ``classify``."""
    classified = classify(kafka)
    return valid_rows(classified), rejected_rows(classified)
