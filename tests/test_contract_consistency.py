"""The producer, the Spark schema and the Cassandra tables list the same fields as the contract.

The first tests compare the derived definitions; the last ones create the tables in a
throw-away keyspace of the local Cassandra and read the columns back from ``system_schema``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = (
        SparkSession.builder.master("local[1]")
        .appName("test_contract_consistency")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    yield session
    session.stop()


def test_spark_schema_has_the_contract_fields_in_order_with_their_types() -> None:
    schema = parsing.spark_schema()
    assert tuple(schema.fieldNames()) == contract.FIELD_NAMES
    expected = {"string": StringType(), "long": LongType()}
    assert [f.dataType for f in schema.fields] == [expected[f.kind] for f in contract.FIELDS]


def test_users_table_ddl_has_every_contract_field_and_id_as_key() -> None:
    ddl = cassandra_schema.users_table_cql("ks", "created_users")
    columns = ", ".join(f"{f.name} {contract.CQL_TYPES[f.kind]}" for f in contract.FIELDS)
    assert ddl == (f"CREATE TABLE IF NOT EXISTS ks.created_users ({columns}, PRIMARY KEY (id))")
    assert tuple(cassandra_schema.users_table_columns()) == contract.FIELD_NAMES


def test_the_producer_sends_exactly_the_contract_fields() -> None:
    records = served_records()
    assert records, f"no user of {FIXTURE} formats to a record"
    assert all(tuple(record) == contract.FIELD_NAMES for record in records)


def test_spark_reads_what_the_producer_sends_field_for_field(spark: SparkSession) -> None:
    records = served_records()
    messages = [
        (producer.encode_key(r), producer.encode_value(r), "users_created", 0, i, None, 0)
        for i, r in enumerate(records)
    ]
    kafka = spark.createDataFrame(
        messages,
        "key binary, value binary, topic string, partition int, offset long, "
        "timestamp timestamp, timestampType int",
    )
    valid, rejected = parsing.split_records(kafka)

    assert rejected.collect() == []
    assert sorted((row.asDict() for row in valid.collect()), key=lambda r: r["id"]) == sorted(
        records, key=lambda r: r["id"]
    )


def test_dead_letter_rows_fill_the_dead_letter_table() -> None:
    table_columns = [name for name, _ in cassandra_schema.DEAD_LETTER_COLUMNS]
    # The job adds rejected_at when it writes the batch.
    assert [*parsing.DEAD_LETTER_COLUMNS, "rejected_at"] == table_columns


def test_table_names_that_are_not_cql_identifiers_are_refused() -> None:
    settings = config.load({"CASSANDRA_TABLE": "users; DROP KEYSPACE x"}).cassandra
    with pytest.raises(config.ConfigError, match="CASSANDRA_TABLE"):
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
    assert {name: cql for name, (cql, _) in dead.items()} == dict(
        cassandra_schema.DEAD_LETTER_COLUMNS
    )
    assert {name: kind for name, (_, kind) in dead.items() if kind != "regular"} == {
        "topic": "partition_key",
        "partition": "partition_key",
        "offset": "clustering",
    }


def test_a_drifted_users_table_stops_the_job_with_the_fix(
    cassandra_session, keyspace_settings: config.CassandraSettings
) -> None:
    ks, table = keyspace_settings.keyspace, keyspace_settings.table
    cassandra_session.execute(cassandra_schema.keyspace_cql(ks, 1))
    cassandra_session.execute(f"CREATE TABLE {ks}.{table} (id text PRIMARY KEY, first_name text)")

    with pytest.raises(cassandra_schema.SchemaMismatch, match=f"{ks}.{table}.*drop the table"):
        cassandra_schema.ensure_schema(cassandra_session, keyspace_settings)
