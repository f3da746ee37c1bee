"""The Cassandra side of the pipeline: the keyspace, the users table and the dead-letter table.

The DDL builders are pure and derived from ``pipeline.contract``; ``connect`` and
``ensure_schema`` are the I/O. Every statement is ``IF NOT EXISTS``, so running the job again
changes nothing; ``ensure_schema`` then checks that an existing table still has the contract's
columns, because ``IF NOT EXISTS`` silently keeps a table that has drifted.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from pipeline.config import CassandraSettings, ConfigError
from pipeline.contract import CQL_TYPES, FIELDS, PRIMARY_KEY, cql_columns

if TYPE_CHECKING:
    from cassandra.cluster import Session

log = logging.getLogger(__name__)

# Unquoted CQL identifiers: a letter, then letters, digits or underscores; at most 48 long.
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")

# One row per rejected Kafka message. Keyed by where the message sits in Kafka, so a replayed
# micro-batch overwrites its own dead letters instead of adding copies.
DEAD_LETTER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("topic", "text"),
    ("partition", "int"),
    ("offset", "bigint"),
    ("kafka_timestamp", "timestamp"),  # when Kafka received the message
    ("raw_key", "blob"),
    ("raw_value", "blob"),  # the bytes as received: they may not even be UTF-8
    ("reason", "text"),
    ("rejected_at", "timestamp"),  # when the stream job rejected it
)
DEAD_LETTER_PRIMARY_KEY = "((topic, partition), offset)"


class CassandraUnavailable(RuntimeError):
    """Cassandra refused the connection or the login; the message names host, port and user."""


class LoginRefused(CassandraUnavailable):
    """Cassandra answered and refused the credentials: trying again will not help."""


class SchemaMismatch(RuntimeError):
    """An existing table's columns differ from what the pipeline writes."""


def identifier(value: str, variable: str) -> str:
    """``value`` if it is a plain CQL identifier, else ``ConfigError`` naming ``variable``."""
    if not _IDENTIFIER.match(value):
        raise ConfigError(
            f"{variable}={value!r} is not a valid Cassandra name "
            "(a letter, then letters, digits or _; at most 48 characters)"
        )
    return value


def keyspace_cql(keyspace: str, replication_factor: int) -> str:
    """``CREATE KEYSPACE IF NOT EXISTS`` with ``replication_factor`` copies in every data centre."""
    return (
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
        f"{{'class': 'NetworkTopologyStrategy', 'replication_factor': {replication_factor}}}"
    )


def users_table_cql(keyspace: str, table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with every contract field, keyed by the user id."""
    return (
        f"CREATE TABLE IF NOT EXISTS {keyspace}.{table} "
        f"({cql_columns()}, PRIMARY KEY ({PRIMARY_KEY}))"
    )


def dead_letter_table_cql(keyspace: str, table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for rejected messages, keyed by topic, partition, offset."""
    columns = ", ".join(f"{name} {cql_type}" for name, cql_type in DEAD_LETTER_COLUMNS)
    return (
        f"CREATE TABLE IF NOT EXISTS {keyspace}.{table} "
        f"({columns}, PRIMARY KEY {DEAD_LETTER_PRIMARY_KEY})"
    )


def users_table_columns() -> dict[str, str]:
    """Column name -> CQL type of the users table, as the contract defines it."""
    return {field.name: CQL_TYPES[field.kind] for field in FIELDS}


def schema_statements(settings: CassandraSettings) -> list[str]:
    """The DDL that makes the keyspace and both tables exist, in order."""
    keyspace = identifier(settings.keyspace, "CASSANDRA_KEYSPACE")
    table = identifier(settings.table, "CASSANDRA_TABLE")
    dead_letters = identifier(settings.dead_letter_table, "CASSANDRA_DEAD_LETTER_TABLE")
    return [
        keyspace_cql(keyspace, settings.replication_factor),
        users_table_cql(keyspace, table),
        dead_letter_table_cql(keyspace, dead_letters),
    ]


def connect(settings: CassandraSettings, connect_timeout: float = 10) -> Session:
    """A session logged in with the configured credentials.

    Raise ``CassandraUnavailable`` naming host, port and user when Cassandra is down,
    unreachable or refuses the login.
    """
    from cassandra import AuthenticationFailed, ProtocolVersion, UnresolvableContactPoints
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
    from cassandra.policies import DCAwareRoundRobinPolicy

    where = f"Cassandra at {settings.host}:{settings.port} as user {settings.username!r}"
    try:
        cluster = Cluster(
            [settings.host],
            port=settings.port,
            auth_provider=PlainTextAuthProvider(settings.username, settings.password),
            # Cassandra 4 and 5 speak v5; naming it spares a downgrade dance and its warnings.
            protocol_version=ProtocolVersion.V5,
            execution_profiles={
                EXEC_PROFILE_DEFAULT: ExecutionProfile(
                    load_balancing_policy=DCAwareRoundRobinPolicy()
                )
            },
            connect_timeout=connect_timeout,
        )
    except UnresolvableContactPoints as exc:
        raise CassandraUnavailable(
            f"cannot connect to {where}: host name does not resolve (check CASSANDRA_HOST)"
        ) from exc
    try:
        return cluster.connect()
    except (NoHostAvailable, AuthenticationFailed) as exc:
        cluster.shutdown()
        errors = getattr(exc, "errors", None) or {}
        detail = "; ".join(str(error) for error in errors.values()) or str(exc)
        if "authentic" in detail.lower() or "password" in detail.lower():
            fix = "check CASSANDRA_USERNAME and CASSANDRA_PASSWORD"
            raise LoginRefused(f"cannot connect to {where}: {detail} ({fix})") from exc
        fix = "is Cassandra up? check CASSANDRA_HOST and CASSANDRA_PORT (`./run.sh status`)"
        raise CassandraUnavailable(f"cannot connect to {where}: {detail} ({fix})") from exc


def table_columns(session: Session, keyspace: str, table: str) -> dict[str, str]:
    """Column name -> CQL type of an existing table, read from ``system_schema``."""
    rows = session.execute(
        "SELECT column_name, type FROM system_schema.columns "
        "WHERE keyspace_name = %s AND table_name = %s",
        (keyspace, table),
    )
    return {row.column_name: row.type for row in rows}


def ensure_schema(session: Session, settings: CassandraSettings) -> None:
    """Create the keyspace and both tables if missing, then check their columns.

    Raise ``SchemaMismatch`` when a table that already existed has other columns than the
    pipeline writes: fix it by dropping the table or pointing CASSANDRA_TABLE elsewhere.
    """
    for statement in schema_statements(settings):
        log.info("cassandra: %s", statement)
        session.execute(statement)
    expected = {
        settings.table: users_table_columns(),
        settings.dead_letter_table: dict(DEAD_LETTER_COLUMNS),
    }
    for table, columns in expected.items():
        found = table_columns(session, settings.keyspace, table)
        if found != columns:
            raise SchemaMismatch(
                f"table {settings.keyspace}.{table} has columns {found}, the pipeline writes "
                f"{columns}: drop the table (it is re-created on start) or use another name"
            )
