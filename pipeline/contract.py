"""The one contract for the records the pipeline writes: users and dead letters.

A user travels randomuser.me -> Airflow -> Kafka -> Spark -> Cassandra. Each of its ``FIELDS``
says where its value is in a randomuser.me user: ``formatting.format_user`` reads it from there,
the producer validates against ``FIELDS`` before sending, the Spark job derives its schema from
it and the Cassandra table is created (and gains a new field's column) from it.

A Kafka message the stream job rejects becomes a dead letter: ``DEAD_LETTER_COLUMNS`` says what
each of its columns holds, for ``parsing`` (which fills them) and ``cassandra_schema`` (which
creates their table). Nothing else lists the fields or the columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Served:
    """A value of the user as randomuser.me serves it, at a dotted ``path`` (``"name.first"``).

    For a string field the value must be a non-blank string; with ``numeric`` an int is taken
    too, as its decimal string. For a long field it must be an int.
    """

    path: str
    numeric: bool = False


@dataclass(frozen=True)
class Joined:
    """Served values joined into one string: ``template`` holds one ``{}`` per part."""

    template: str
    parts: tuple[Served, ...]


@dataclass(frozen=True)
class SendTime:
    """The producer's clock when it sends the record, in milliseconds since the epoch."""


Source = Served | Joined | SendTime


@dataclass(frozen=True)
class Field:
    """One field of the user record, and where a randomuser.me user holds its value.

    ``kind`` is its JSON type; a ``required`` field must be present and non-empty.
    """

    name: str
    kind: str  # "string" or "long"
    source: Source
    required: bool = True


# `id` is randomuser's stable `login.uuid`: a replay upserts instead of duplicating.
FIELDS: tuple[Field, ...] = (
    Field("id", "string", Served("login.uuid")),
    Field("first_name", "string", Served("name.first")),
    Field("last_name", "string", Served("name.last")),
    Field("gender", "string", Served("gender")),
    Field(
        "address",
        "string",
        Joined(
            "{} {}, {}, {}, {}",
            (
                Served("location.street.number", numeric=True),  # served as an int
                Served("location.street.name"),
                Served("location.city"),
                Served("location.state"),
                Served("location.country"),
            ),
        ),
    ),
    Field("post_code", "string", Served("location.postcode", numeric=True)),
    Field("email", "string", Served("email")),
    Field("username", "string", Served("login.username")),
    Field("dob", "string", Served("dob.date")),
    Field("registered_date", "string", Served("registered.date")),
    Field("phone", "string", Served("phone")),
    Field("picture", "string", Served("picture.medium")),
    # When the producer sent the record: end-to-end latency.
    Field("produced_at", "long", SendTime()),
)

# The Kafka record header with the schema registry's id of the schema a record was written with
# (``pipeline.registry`` publishes ``FIELDS`` as that schema); the value stays plain JSON.
SCHEMA_ID_HEADER = "schema-id"

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
# Every value of a served user that some field reads, as its dotted path.
SERVED_PATHS: tuple[str, ...] = tuple(
    part.path
    for f in FIELDS
    for part in (
        (f.source,)
        if isinstance(f.source, Served)
        else f.source.parts
        if isinstance(f.source, Joined)
        else ()
    )
)
PRIMARY_KEY = "id"


@dataclass(frozen=True)
class Column:
    """One column of a dead letter: its name, its type and where its value comes from.

    ``source`` is the column of Spark's Kafka source it copies, ``header:NAME`` (the Kafka
    record header NAME, read as a number), ``REJECTION_REASON`` or ``REJECTION_TIME``.
    """

    name: str
    kind: str  # a key of CQL_TYPES
    source: str


REJECTION_REASON = "<why the parse rejected the message>"
REJECTION_TIME = "<when the stream job wrote the dead letter>"

# One row per rejected Kafka message, keyed by where the message sits in Kafka, so a replayed
# micro-batch overwrites its own dead letters instead of adding copies.
DEAD_LETTER_COLUMNS: tuple[Column, ...] = (
    Column("topic", "string", "topic"),
    Column("partition", "int", "partition"),
    Column("offset", "long", "offset"),
    Column("kafka_timestamp", "timestamp", "timestamp"),  # when Kafka received the message
    Column("raw_key", "bytes", "key"),
    Column("raw_value", "bytes", "value"),  # the bytes as received: they may not even be UTF-8
    # The schema the producer wrote it with (its registry id), null when the header is missing.
    Column("schema_id", "int", f"header:{SCHEMA_ID_HEADER}"),
    Column("reason", "string", REJECTION_REASON),
    Column("rejected_at", "timestamp", REJECTION_TIME),
)
DEAD_LETTER_PARTITION_KEY: tuple[str, ...] = ("topic", "partition")
DEAD_LETTER_CLUSTERING_KEY: tuple[str, ...] = ("offset",)

_PY_TYPES = {"string": str, "long": int}
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1  # Spark LongType and CQL bigint
# The most bytes (UTF-8) a string field may hold: Cassandra refuses a partition key (``id``)
# over 65,535 bytes, and one cap for every field keeps a record well inside a Kafka message.
MAX_STRING_BYTES = 65_535
CQL_TYPES = {
    "string": "text",
    "long": "bigint",
    "int": "int",
    "timestamp": "timestamp",
    "bytes": "blob",
}


# What ``validate`` checks of each field, looked up once: name, kind, Python type, required.
_CHECKS = tuple((f.name, f.kind, _PY_TYPES[f.kind], f.required) for f in FIELDS)
_FIELD_SET = frozenset(FIELD_NAMES)


class InvalidRecord(ValueError):
    """A record that does not satisfy the contract; the message names the field."""


def validate(record: Mapping[str, Any]) -> None:
    """Raise ``InvalidRecord`` unless ``record`` has exactly the contract's fields and types.

    Required fields must be present and non-empty; ``bool`` is not accepted as a long; a string
    must be encodable as UTF-8 (no lone surrogate) and at most ``MAX_STRING_BYTES`` long.
    """
    extra = record.keys() - _FIELD_SET
    if extra:
        raise InvalidRecord(f"unexpected field(s): {', '.join(sorted(extra))}")
    for name, kind, expected, required in _CHECKS:
        value = record.get(name)
        if value is None or value == "":
            if required:
                raise InvalidRecord(f"missing required field {name!r}")
            continue
        if not isinstance(value, expected) or isinstance(value, bool):
            raise InvalidRecord(f"field {name!r} must be {kind}, got {type(value).__name__}")
        if kind == "long":
            if not LONG_MIN <= value <= LONG_MAX:
                raise InvalidRecord(f"field {name!r} is outside the 64-bit range")
        elif value.isascii() and len(value) <= MAX_STRING_BYTES:
            continue  # a byte a character, and no lone surrogate: most values, checked fast
        else:
            try:
                size = len(value.encode("utf-8"))
            except UnicodeEncodeError:  # a lone surrogate, served as a JSON escape ("\ud800")
                raise InvalidRecord(f"field {name!r} is not UTF-8 (a lone surrogate)") from None
            if size > MAX_STRING_BYTES:
                raise InvalidRecord(f"field {name!r} is over {MAX_STRING_BYTES} bytes")
