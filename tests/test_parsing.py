"""The stream job's transform on a static DataFrame shaped like the Kafka source's output.

No Kafka, no Cassandra, no connector jars: ``pipeline.parsing`` is pure Spark SQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from pipeline import contract, parsing

SENT_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def user(**overrides: Any) -> dict[str, Any]:
    """A record that satisfies the contract, with ``overrides`` applied."""
    record: dict[str, Any] = {
        "id": "3f1c2b9e-0d4e-4a8b-9c61-2f6a7d1e5b10",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "gender": "female",
        "address": "12 St James's Square, London, England, United Kingdom",
        "post_code": "SW1Y 4JH",
        "email": "ada.lovelace@example.com",
        "username": "countess42",
        "dob": "1815-12-10T08:00:00.000Z",
        "registered_date": "2012-03-04T05:06:07.890Z",
        "phone": "020 7946 0000",
        "picture": "https://example.com/ada.jpg",
        "produced_at": 1714564800123,
    }
    record.update(overrides)
    return record


def without(field: str) -> dict[str, Any]:
    record = user()
    del record[field]
    return record


def encode(record: Any) -> bytes:
    return json.dumps(record).encode("utf-8")


def kafka_frame(spark: SparkSession, values: list[bytes | None]) -> DataFrame:
    """A static DataFrame with the Kafka source's columns: one message per value, offsets 0..n-1."""
    rows = [
        (f"k{offset}".encode(), value, "users_created", offset % 3, offset, SENT_AT, 0, None)
        for offset, value in enumerate(values)
    ]
    return spark.createDataFrame(rows, parsing.KAFKA_SOURCE_SCHEMA)


def reasons_by_offset(spark: SparkSession, values: list[bytes | None]) -> dict[int, str | None]:
    classified = parsing.classify(kafka_frame(spark, values))
    return {row["offset"]: row["reason"] for row in classified.select("offset", "reason").collect()}


def python_accepts(value: bytes | None) -> bool:
    """The oracle: strict UTF-8 and JSON, an object with unique keys, ``contract.validate``."""

    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("repeated key")
        return dict(pairs)

    def no_constants(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    if value is None:
        return False
    try:
        record = json.loads(
            value.decode("utf-8"), object_pairs_hook=no_repeats, parse_constant=no_constants
        )
        if not isinstance(record, dict):
            return False
        contract.validate(record)
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError and InvalidRecord are ValueErrors
        return False
    # A long must fit Cassandra's bigint, which ``contract.validate`` does not check.
    return all(
        -(2**63) <= record[field.name] < 2**63
        for field in contract.FIELDS
        if field.kind == "long" and record.get(field.name) is not None
    )


# Messages the stream must store: every string below is a JSON string, however it looks.
VALID = {
    "plain": encode(user()),
    "keys in another order": encode(dict(reversed(list(user().items())))),
    "whitespace around and inside": b"  \n" + json.dumps(user(), indent=2).encode() + b"\t\r\n",
    "strings that look like other JSON": encode(
        user(
            first_name="true",
            last_name="null",
            gender="[1]",
            address='{"city": "x"}',
            post_code="02134",
            email="-5",
            username="1e5",
            phone="false",
        )
    ),
    "escapes, unicode and emoji": encode(
        user(first_name='Zoë "the \\ coder"', last_name="Ünal\n\t\u0001", address="東京 😀 </p>")
    ),
    "unicode escaped by the sender": json.dumps(
        user(first_name="Zoë 😀"), ensure_ascii=True
    ).encode(),
    "largest long": encode(user(produced_at=2**63 - 1)),
    "negative long": encode(user(produced_at=-1)),
}

# Messages the stream must reject, with the reason it must give.
REJECTED: dict[str, tuple[bytes | None, str]] = {
    "tombstone": (None, "empty message"),
    "not utf-8": (b'{"id": "\xff\xfe"}', "not utf-8"),
    "latin-1 text": ('{"first_name": "Zoë"}'.encode("latin-1"), "not utf-8"),
    "not json": (b"this is not json", "not json"),
    "empty bytes": (b"", "not json"),
    "truncated json": (encode(user())[:-5], "not json"),
    "trailing junk": (encode(user()) + b" and more", "not json"),
    "two objects": (encode(user()) + encode(user()), "not json"),
    "single quotes": (encode(user()).replace(b'"', b"'"), "not json"),
    "NaN": (encode(user()).replace(b"1714564800123", b"NaN"), "not json"),
    "array": (encode([user()]), "not a json object"),
    "number": (b"42", "not a json object"),
    "null": (b"null", "not a json object"),
    "double-encoded object": (json.dumps(json.dumps(user())).encode(), "not a json object"),
    "missing id": (encode(without("id")), "missing field id"),
    "null id": (encode(user(id=None)), "missing field id"),
    "empty id": (encode(user(id="")), "missing field id"),
    "missing dob": (encode(without("dob")), "missing field dob"),
    "missing produced_at": (encode(without("produced_at")), "missing field produced_at"),
    "long as string": (
        encode(user(produced_at="1714564800123")),
        "wrong type for produced_at: expected long",
    ),
    "long as float": (encode(user(produced_at=1.5)), "wrong type for produced_at: expected long"),
    "long as boolean": (
        encode(user(produced_at=True)),
        "wrong type for produced_at: expected long",
    ),
    "long overflow": (encode(user(produced_at=2**63)), "wrong type for produced_at: expected long"),
    "string as number": (encode(user(first_name=42)), "wrong type for first_name: expected string"),
    "string as boolean": (encode(user(email=False)), "wrong type for email: expected string"),
    "string as object": (
        encode(user(address={"city": "x"})),
        "wrong type for address: expected string",
    ),
    "string as array": (encode(user(picture=["a"])), "wrong type for picture: expected string"),
    "string as object, emoji inside": (
        encode(user(address={"city": "😀"}, last_name="😀")),
        "wrong type for address: expected string",
    ),
    "unexpected field": (encode(user(age=42)), "unexpected field age"),
    "repeated key": (encode(user())[:-1] + b', "id": "other"}', "duplicate field id"),
    "two problems": (
        encode({**without("email"), "phone": 5}),
        "missing field email; wrong type for phone: expected string",
    ),
}


def test_valid_messages_become_rows_equal_to_what_was_sent(spark: SparkSession) -> None:
    values = list(VALID.values())
    valid, rejected = parsing.split_records(kafka_frame(spark, values))

    assert rejected.collect() == []
    rows = [row.asDict() for row in valid.collect()]
    expected = [json.loads(value) for value in values]
    assert sorted(rows, key=repr) == sorted(
        [{name: record[name] for name in contract.FIELD_NAMES} for record in expected], key=repr
    )


@pytest.fixture(scope="module")
def reasons(spark: SparkSession) -> dict[str, str | None]:
    """Case name -> the reason ``classify`` gives, for every case of VALID and REJECTED at once."""
    cases = {**VALID, **{name: value for name, (value, _) in REJECTED.items()}}
    by_offset = reasons_by_offset(spark, list(cases.values()))
    return {name: by_offset[offset] for offset, name in enumerate(cases)}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_malformed_message_is_rejected_with_its_reason(
    reasons: dict[str, str | None], case: str
) -> None:
    assert reasons[case] == REJECTED[case][1]


def test_rejected_rows_carry_the_message_and_where_it_came_from(spark: SparkSession) -> None:
    bad = b"\xff not json"
    valid, rejected = parsing.split_records(kafka_frame(spark, [encode(user()), bad]))

    assert valid.count() == 1
    assert rejected.columns == [c.name for c in contract.DEAD_LETTER_COLUMNS]
    before = datetime.now()
    [row] = rejected.collect()
    dead_letter = row.asDict()
    # The time of the rejection is when the query ran.
    assert before <= dead_letter.pop("rejected_at") <= datetime.now()
    assert dead_letter == {
        "topic": "users_created",
        "partition": 1,
        "offset": 1,
        "kafka_timestamp": SENT_AT.replace(tzinfo=None),
        "raw_key": bytearray(b"k1"),
        "raw_value": bytearray(bad),
        "schema_id": None,  # a message without headers
        "reason": "not utf-8",
    }


def test_a_dead_letter_records_the_schema_id_header_when_there_is_a_number_in_it(
    spark: SparkSession,
) -> None:
    headers = [
        [("schema-id", b"7")],
        [("other", b"1"), ("schema-id", b"12"), ("schema-id", b"13")],  # the first one counts
        [("schema-id", b"not a number")],
        [("other", b"5")],
        [],
        None,
    ]
    rows = [(b"k", b"not json", "t", 0, offset, SENT_AT, 0, h) for offset, h in enumerate(headers)]
    frame = spark.createDataFrame(rows, parsing.KAFKA_SOURCE_SCHEMA)
    _, rejected = parsing.split_records(frame)
    found = {r["offset"]: r["schema_id"] for r in rejected.select("offset", "schema_id").collect()}
    assert found == {0: 7, 1: 12, 2: None, 3: None, 4: None, 5: None}


def test_the_warm_up_sends_valid_users_as_the_producer_sends_its_own(spark: SparkSession) -> None:
    # spark_stream.py's warm-up: valid synthetic users with the producer's schema-id header,
    # compressed as KAFKA_COMPRESSION says, so its first real batches meet nothing new.
    import spark_stream
    from pipeline import config

    sent = spark_stream.warm_up_messages(spark, 3)
    frame = sent.selectExpr(
        "key",
        "value",
        "'warm-up' AS topic",
        "0 AS partition",
        "monotonically_increasing_id() AS offset",
        "current_timestamp() AS timestamp",
        "0 AS timestampType",
        "headers",
    )
    classified = parsing.classify(frame).select("id", "raw_key", "reason", "schema_id").collect()
    assert sorted(tuple(row) for row in classified) == [
        (f"00000000-0000-4000-8000-{n:012d}", f"00000000-0000-4000-8000-{n:012d}".encode(), None, 1)
        for n in range(3)
    ]
    settings = config.load({"KAFKA_COMPRESSION": "lz4", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"})
    options = spark_stream.warm_up_writer_options(settings.kafka, "t")
    assert options == {
        "kafka.bootstrap.servers": "k:9092",
        "topic": "t",
        "kafka.compression.type": "lz4",
    }
    settings = config.load({"KAFKA_COMPRESSION": "none"})
    assert "kafka.compression.type" not in spark_stream.warm_up_writer_options(settings.kafka, "t")


def test_spark_agrees_with_the_python_contract_on_every_case(
    reasons: dict[str, str | None],
) -> None:
    values = {**VALID, **{name: value for name, (value, _) in REJECTED.items()}}
    disagreements = {
        name: reasons[name]
        for name, value in values.items()
        if (reasons[name] is None) != python_accepts(value)
    }
    assert disagreements == {}


def test_valid_rows_have_the_contract_schema(spark: SparkSession) -> None:
    valid, _ = parsing.split_records(kafka_frame(spark, [encode(user())]))
    assert valid.schema == parsing.spark_schema()
    assert valid.columns == list(contract.FIELD_NAMES)


def test_transform_accepts_a_streaming_dataframe(spark: SparkSession, tmp_path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    stream = spark.readStream.schema(parsing.KAFKA_SOURCE_SCHEMA).parquet(str(source))
    valid, rejected = parsing.split_records(stream)
    assert valid.isStreaming and rejected.isStreaming
