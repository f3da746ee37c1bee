"""Cassandra 5.0, one node; its probe also gives the configured admin its password, and its
set-up creates the schema and the stream job's least-privilege role (pipeline/cassandra_schema.py).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from pipeline import cassandra_schema, config
from script.jars import resolve_service_jars
from script.layout import CONF, DATA, JARS, LOGS, STACK_CONF, StackError, say, versions
from script.procs import port_open, spawn, write_secret
from script.services.base import Service, java, render


class Cassandra(Service):
    name = "cassandra"
    timeout = 240

    @property
    def port(self) -> int:
        return config.load().cassandra.port

    def download(self) -> Path:
        version = versions()["CASSANDRA_VERSION"]
        return resolve_service_jars("cassandra", "org.apache.cassandra", "cassandra-all", version)

    def start(self) -> None:
        (DATA / "cassandra").mkdir(parents=True, exist_ok=True)
        heap = config.load().stack.cassandra_heap
        options = [
            line.strip()
            for line in (STACK_CONF / "cassandra-jvm17.options").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        spawn(
            self.name,
            [
                java(),
                f"-Xms{heap}",
                f"-Xmx{heap}",
                "-Xss256k",
                *options,
                f"-Dcassandra.config=file://{render('cassandra.yaml', cassandra_port=self.port)}",
                f"-Dcassandra.storagedir={DATA / 'cassandra'}",
                f"-Dcassandra.logdir={LOGS}",
                f"-Dlogback.configurationFile={STACK_CONF / 'cassandra-logback.xml'}",
                "-Dcassandra-foreground=yes",
                "-Dcassandra.skip_wait_for_gossip_to_settle=0",
                "-Dcassandra.superuser_setup_delay_ms=0",
                "-Dcassandra.jmx.local.port=7199",
                "-cp",
                f"{JARS / 'cassandra'}/*",
                "org.apache.cassandra.service.CassandraDaemon",
            ],
        )

    def probe(self) -> str | None:
        from cassandra.cluster import NoHostAvailable

        s = config.cassandra_admin()
        if not port_open(s.port):
            return f"CQL port :{s.port} not open yet"
        try:
            _cql(s.username, s.password, "SELECT release_version FROM system.local")
            return None
        except NoHostAvailable as exc:
            reason = str(exc)
        # A fresh node only knows cassandra/cassandra: give the configured admin its password.
        if (s.username, s.password) != ("cassandra", "cassandra"):
            try:
                _cql(
                    "cassandra",
                    "cassandra",
                    cassandra_schema.admin_role_cql(s.username, s.password),
                )
                say(f"  cassandra: admin {s.username!r} set up ({s.login_variables})")
                return "admin just configured"
            except NoHostAvailable as exc:
                reason += f"; setting up the role as cassandra/cassandra failed too: {exc}"
        return f"authenticated query as {s.username!r} failed ({reason[:300]})"

    def set_up(self) -> None:
        """As the admin: the keyspace and tables, and the stream job's role with only read and
        write on the keyspace (idempotent; a changed CASSANDRA_PASSWORD is applied)."""
        writer = config.load().cassandra
        try:
            session = cassandra_schema.connect(config.cassandra_admin())
            try:
                cassandra_schema.set_up(session, writer)
            finally:
                session.cluster.shutdown()
        except (
            config.ConfigError,
            cassandra_schema.CassandraUnavailable,
            cassandra_schema.SchemaMismatch,
        ) as exc:
            raise StackError(f"cassandra: set-up failed: {exc}") from exc
        say(
            f"  cassandra: keyspace {writer.keyspace} is there; the stream job's role "
            f"{writer.username!r} may only read and write its rows"
        )


def cqlsh_credentials() -> Path:
    """cqlsh's credentials file (`--credentials`) for the Cassandra admin, 0600 in
    `.stack/conf`: cqlsh reads the password from it instead of from its command line."""
    s = config.cassandra_admin()
    path = CONF / "cqlsh-credentials"
    write_secret(path, f"[plain_text_auth]\nusername = {s.username}\npassword = {s.password}\n")
    return path


def side_role(keyspace: str) -> str:
    """The role of a stream job of its own on ``keyspace`` (see ``set_up_side_keyspace``)."""
    return f"w_{keyspace}"[:48]


def set_up_side_keyspace(overrides: Mapping[str, str]) -> dict[str, str]:
    """Set-up for a stream job of its own (tests, benchmark) on the keyspace ``overrides`` name:
    the schema, and a role of its own with a fresh password, so the pipeline's writer keeps
    exactly its grants. Returns the login to add to the job's environment."""
    env = {**os.environ, **overrides}
    keyspace = config.load(env).cassandra.keyspace
    login = {"CASSANDRA_USERNAME": side_role(keyspace), "CASSANDRA_PASSWORD": secrets.token_hex(16)}
    session = cassandra_schema.connect(config.cassandra_admin(env))
    try:
        cassandra_schema.set_up(session, config.load({**env, **login}).cassandra)
    finally:
        session.cluster.shutdown()
    return login


def drop_side_keyspace(overrides: Mapping[str, str]) -> None:
    """Drop what ``set_up_side_keyspace`` made: the keyspace and its role."""
    env = {**os.environ, **overrides}
    keyspace = cassandra_schema.identifier(
        config.load(env).cassandra.keyspace, "CASSANDRA_KEYSPACE"
    )
    session = cassandra_schema.connect(config.cassandra_admin(env))
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        session.execute(f'DROP ROLE IF EXISTS "{side_role(keyspace)}"')
    finally:
        session.cluster.shutdown()


def _cql(username: str, password: str, query: str) -> list:
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster

    s = config.load().cassandra
    cluster = Cluster(
        [s.host],
        port=s.port,
        protocol_version=5,
        connect_timeout=3,
        auth_provider=PlainTextAuthProvider(username, password),
    )
    try:
        return list(cluster.connect().execute(query, timeout=10))
    finally:
        cluster.shutdown()
