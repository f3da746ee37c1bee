"""The producer, the Spark schema and the Cassandra tables list the same fields as the contract.

The first tests compare the derived definitions; the last ones create the tables in a
throw-away keyspace of the local Cassandra and read the columns back from ``system_schema``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql.types import LongType, StringType

from pipeline import cassandra_schema, config, contract, formatting, parsing, producer

FIXTURE = Path(__file__).parent / "fixtures" / "randomuser_response.json"
PRODUCED_AT = 1_714_564_800_123


def served_records() -> list[dict]:
    """What the producer would send for the recorded randomuser.me response."""
    raw_users = json.loads(FIXTURE.read_text())["results"]
    records = [formatting.format_user(raw, PRODUCED_AT) for raw in raw_users]
    return [record for record in records if isinstance(record, dict)]


def test_spark_schema_has_the_contract_fields_in_order_with_their_types() -> None:
    schema = parsing.spark_schema()
    assert tuple(schema.fieldNames()) == contract.FIELD_NAMES
    expected = {"string": StringType(), "long": LongType()}
    assert [f.dataType for f in schema.fields] == [expected[f.kind] for f in contract.FIELDS]


def test_the_producer_sends_exactly_the_contract_fields() -> None:
    records = served_records()
    assert records, f"no user of {FIXTURE} formats to a record"
    assert all(tuple(record) == contract.FIELD_NAMES for record in records)


def test_spark_reads_what_the_producer_sends_field_for_field(spark: SparkSession) -> None:
    records = served_records()
    header = [(contract.SCHEMA_ID_HEADER, b"1")]  # as the producer sends it
    messages = [
        (producer.encode_key(r), producer.encode_value(r), "users_created", 0, i, None, 0, header)
        for i, r in enumerate(records)
    ]
    kafka = spark.createDataFrame(messages, parsing.KAFKA_SOURCE_SCHEMA)
    valid, rejected = parsing.split_records(kafka)

    assert rejected.collect() == []
    assert sorted((row.asDict() for row in valid.collect()), key=lambda r: r["id"]) == sorted(
        records, key=lambda r: r["id"]
    )


def test_table_names_that_are_not_cql_identifiers_are_refused() -> None:
    bad = "users; DROP KEYSPACE x"
    with pytest.raises(config.ConfigError, match="CASSANDRA_TABLE"):  # by the settings
        config.load({"CASSANDRA_TABLE": bad})
    settings = dataclasses.replace(config.load({}).cassandra, table=bad)
    with pytest.raises(config.ConfigError, match="CASSANDRA_TABLE"):  # and by set-up itself
        cassandra_schema.schema_statements(settings)


@pytest.fixture
def keyspace_settings(cassandra_session, unique: str) -> Iterator[config.CassandraSettings]:
    keyspace = f"consistency_{unique}"
    yield config.load({"CASSANDRA_KEYSPACE": keyspace}).cassandra
    cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def test_created_tables_have_the_contract_columns_and_keys(
    cassandra_session, keyspace_settings: config.CassandraSettings
) -> None:
    cassandra_schema.ensure_schema(cassandra_session, keyspace_settings)
    cassandra_schema.ensure_schema(cassandra_session, keyspace_settings)  # idempotent

    rows = cassandra_session.execute(
        "SELECT table_name, column_name, type, kind FROM system_schema.columns "
        "WHERE keyspace_name = %s",
        (keyspace_settings.keyspace,),
    )
    found: dict[str, dict[str, tuple[str, str]]] = {}
    for row in rows:
        found.setdefault(row.table_name, {})[row.column_name] = (row.type, row.kind)

    users = found[keyspace_settings.table]
    assert {name: cql for name, (cql, _) in users.items()} == {
        f.name: contract.CQL_TYPES[f.kind] for f in contract.FIELDS
    }
    assert {name for name, (_, kind) in users.items() if kind != "regular"} == {"id"}
    dead = found[keyspace_settings.dead_letter_table]
    assert {name: cql for name, (cql, _) in dead.items()} == {
        c.name: contract.CQL_TYPES[c.kind] for c in contract.DEAD_LETTER_COLUMNS
    }
    assert {name: kind for name, (_, kind) in dead.items() if kind != "regular"} == {
        "topic": "partition_key",
        "partition": "partition_key",
        "offset": "clustering",
    }


def test_a_replication_change_takes_effect_on_a_keyspace_that_names_its_data_centre(
    cassandra_session, keyspace_settings: config.CassandraSettings
) -> None:
    # A created keyspace names its data centre ({'datacenter1': '1'}); an ALTER that said only
    # 'replication_factor' left it as it was (how `replicate` once kept system_auth at 2 of 3).
    cassandra_schema.ensure_schema(cassandra_session, keyspace_settings)
    keyspace = keyspace_settings.keyspace
    assert cassandra_schema.replication_factor(cassandra_session, keyspace) == 1
    for replicas in (2, 1):
        cql = cassandra_schema.replication_cql(cassandra_session, replicas)
        cassandra_session.execute(f"ALTER KEYSPACE {keyspace} WITH replication = {cql}")
        assert cassandra_schema.replication_factor(cassandra_session, keyspace) == replicas


def test_the_created_users_table_holds_what_the_producer_sends_keyed_by_id(
    cassandra_session, keyspace_settings: config.CassandraSettings
) -> None:
    cassandra_schema.ensure_schema(cassandra_session, keyspace_settings)
    where = f"{keyspace_settings.keyspace}.{keyspace_settings.table}"
    records = served_records()
    # INSERT JSON refuses a key that is not a column and a value its column's type cannot hold.
    for record in records:
        cassandra_session.execute(
            f"INSERT INTO {where} JSON %s", (producer.encode_value(record).decode(),)
        )
    replay = {**records[0], "first_name": "replayed"}
    cassandra_session.execute(
        f"INSERT INTO {where} JSON %s", (producer.encode_value(replay).decode(),)
    )

    stored = [
        json.loads(row[0]) for row in cassandra_session.execute(f"SELECT JSON * FROM {where}")
    ]
    expected = [replay, *records[1:]]  # the same id is the same row
    assert sorted(stored, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])


def test_a_rejected_message_fills_every_dead_letter_column(
    spark: SparkSession, cassandra_session, keyspace_settings: config.CassandraSettings
) -> None:
    cassandra_schema.ensure_schema(cassandra_session, keyspace_settings)
    where = f"{keyspace_settings.keyspace}.{keyspace_settings.dead_letter_table}"
    sent_at = datetime(2024, 5, 1, 12, 0, 0, 123000)
    kafka = spark.createDataFrame(
        [(b"key", b"\xff not json", "users_created", 2, 7, sent_at, 0, [("schema-id", b"42")])],
        parsing.KAFKA_SOURCE_SCHEMA,
    )
    _, rejected = parsing.split_records(kafka)
    [row] = rejected.collect()
    dead_letter = row.asDict()
    names = ", ".join(dead_letter)
    marks = ", ".join("?" for _ in dead_letter)
    insert = cassandra_session.prepare(f"INSERT INTO {where} ({names}) VALUES ({marks})")
    cassandra_session.execute(insert, list(dead_letter.values()))

    [stored] = cassandra_session.execute(f"SELECT * FROM {where}")
    # Every column of the table is one the job fills; Cassandra keeps milliseconds.
    rejected_at = dead_letter["rejected_at"]
    dead_letter["rejected_at"] = rejected_at.replace(
        microsecond=rejected_at.microsecond // 1000 * 1000
    )
    assert stored._asdict() == {
        **dead_letter,
        "raw_key": bytes(dead_letter["raw_key"]),
        "raw_value": bytes(dead_letter["raw_value"]),
    }
    assert (stored.topic, stored.partition, stored.offset, stored.kafka_timestamp) == (
        "users_created",
        2,
        7,
        sent_at,
    )
    assert (stored.raw_key, stored.raw_value, stored.reason, stored.schema_id) == (
        b"key",
        b"\xff not json",
        "not utf-8",
        42,  # the schema-id header the producer wrote
    )


def _create_table(session, settings: config.CassandraSettings, columns: str) -> str:
    """``settings``' users table created by hand with ``columns``; returns keyspace.table."""
    where = f"{settings.keyspace}.{settings.table}"
    session.execute(cassandra_schema.keyspace_cql(settings.keyspace, 1))
    session.execute(f"CREATE TABLE {where} ({columns})")
    return where


def _columns(session, keyspace: str, table: str) -> dict[str, str]:
    found = cassandra_schema.table_columns(session, keyspace, table)
    return {name: column.cql_type for name, column in found.items()}


def _without(shape: cassandra_schema.TableShape, column: str) -> cassandra_schema.TableShape:
    columns = {name: cql for name, cql in shape.columns.items() if name != column}
    return cassandra_schema.TableShape(columns, shape.partition_key, shape.clustering_key)


def test_a_contract_column_missing_from_existing_tables_is_added_and_logged(
    cassandra_session, keyspace_settings: config.CassandraSettings, caplog
) -> None:
    ks, table, dead = (
        keyspace_settings.keyspace,
        keyspace_settings.table,
        keyspace_settings.dead_letter_table,
    )
    users = cassandra_schema.USERS
    cassandra_session.execute(cassandra_schema.keyspace_cql(ks, 1))
    cassandra_session.execute(cassandra_schema.table_cql(ks, table, _without(users, "picture")))
    dead_letters = _without(cassandra_schema.DEAD_LETTERS, "rejected_at")
    cassandra_session.execute(cassandra_schema.table_cql(ks, dead, dead_letters))
    [kept] = served_records()[:1]
    old_row = {name: value for name, value in kept.items() if name != "picture"}
    cassandra_session.execute(
        f"INSERT INTO {ks}.{table} JSON %s", (producer.encode_value(old_row).decode(),)
    )

    with caplog.at_level(logging.INFO, logger="pipeline.cassandra_schema"):
        cassandra_schema.ensure_schema(cassandra_session, keyspace_settings)

    assert _columns(cassandra_session, ks, table)["picture"] == "text"
    assert _columns(cassandra_session, ks, dead)["rejected_at"] == "timestamp"
    assert [r.getMessage() for r in caplog.records if "lacks" in r.getMessage()] == [
        f"cassandra: {ks}.{table} lacks contract column picture, adding it: "
        f"ALTER TABLE {ks}.{table} ADD IF NOT EXISTS picture text",
        f"cassandra: {ks}.{dead} lacks contract column rejected_at, adding it: "
        f"ALTER TABLE {ks}.{dead} ADD IF NOT EXISTS rejected_at timestamp",
    ]
    [stored] = cassandra_session.execute(f"SELECT JSON * FROM {ks}.{table}")
    assert json.loads(stored[0]) == {**old_row, "picture": None}  # the old row is kept
    # The table now takes the whole record (the stream job's own write: test_stream_job).
    cassandra_session.execute(
        f"INSERT INTO {ks}.{table} JSON %s", (producer.encode_value(kept).decode(),)
    )
    [stored] = cassandra_session.execute(f"SELECT picture FROM {ks}.{table}")
    assert stored.picture == kept["picture"]


@pytest.mark.parametrize(
    ("columns", "problem", "fix"),
    [
        (
            "id text PRIMARY KEY, first_name text, produced_at text",
            "column produced_at is text, the contract says bigint",
            "cannot change a column's type or a table's key: drop the table",
        ),
        (
            "id text PRIMARY KEY, first_name text, nickname text",
            "column nickname is not in the contract",
            "ALTER TABLE {where} DROP nickname; or drop the table",
        ),
        (
            "id text, email text, first_name text, PRIMARY KEY (id, email)",
            "its key is ((id), email), the contract's is ((id))",
            "cannot change a column's type or a table's key: drop the table",
        ),
    ],
    ids=["retyped column", "removed column", "other key"],
)
def test_a_drifted_users_table_stops_the_job_naming_column_table_and_fix(
    cassandra_session,
    keyspace_settings: config.CassandraSettings,
    columns: str,
    problem: str,
    fix: str,
) -> None:
    where = _create_table(cassandra_session, keyspace_settings, columns)
    ks, table = keyspace_settings.keyspace, keyspace_settings.table
    before = _columns(cassandra_session, ks, table)

    with pytest.raises(cassandra_schema.SchemaMismatch) as raised:
        cassandra_schema.ensure_schema(cassandra_session, keyspace_settings)

    message = str(raised.value)
    assert message.startswith(f"table {where} does not match the contract: {problem}. Fix: ")
    assert fix.format(where=where) in message
    assert message.endswith("or set CASSANDRA_TABLE to a new table's name")
    assert _columns(cassandra_session, ks, table) == before  # nothing was added
