"""Cassandra 5.0, one node; its probe also gives the configured superuser its password."""

from __future__ import annotations

from pathlib import Path

from pipeline import config
from script.jars import resolve_service_jars
from script.layout import CONF, DATA, JARS, LOGS, STACK_CONF, say, versions
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

        s = config.load().cassandra
        if not port_open(s.port):
            return f"CQL port :{s.port} not open yet"
        try:
            _cql(s.username, s.password, "SELECT release_version FROM system.local")
            return None
        except NoHostAvailable as exc:
            reason = str(exc)
        # A fresh node only knows cassandra/cassandra: give the configured superuser its password.
        if (s.username, s.password) != ("cassandra", "cassandra"):
            try:
                _cql("cassandra", "cassandra", _superuser_cql(s.username, s.password))
                say(f"  cassandra: superuser {s.username!r} set up (CASSANDRA_USERNAME/PASSWORD)")
                return "superuser just configured"
            except NoHostAvailable as exc:
                reason += f"; setting up the role as cassandra/cassandra failed too: {exc}"
        return f"authenticated query as {s.username!r} failed ({reason[:300]})"


def cqlsh_credentials() -> Path:
    """cqlsh's credentials file (`--credentials`) for the configured superuser, 0600 in
    `.stack/conf`: cqlsh reads the password from it instead of from its command line."""
    s = config.load().cassandra
    path = CONF / "cqlsh-credentials"
    write_secret(path, f"[plain_text_auth]\nusername = {s.username}\npassword = {s.password}\n")
    return path


def _superuser_cql(username: str, password: str) -> str:
    quoted = password.replace("'", "''")
    if username == "cassandra":
        return f"ALTER ROLE cassandra WITH PASSWORD = '{quoted}'"
    return (
        f'CREATE ROLE IF NOT EXISTS "{username}" WITH SUPERUSER = true AND '
        f"LOGIN = true AND PASSWORD = '{quoted}'"
    )


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
