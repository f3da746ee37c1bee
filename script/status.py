"""`./run.sh status`: the services' table, then where the pipeline's data is."""

from __future__ import annotations

from pipeline import config
from script import pipeline_status as ps
from script import stack
from script.airflow_api import AirflowClient, AirflowError
from script.cluster_status import cluster_lines
from script.services.airflow import airflow_admin, url

DAG_ID = config.DAG_ID


def show() -> None:
    rows = stack.status_rows()
    print(f"{'SERVICE':<24}{'STATE':<7}{'PID':>8}{'PORT':>7}{'PSS MB':>9}{'RSS MB':>9}  LOG")
    for r in rows:
        print(
            f"{r['service']:<24}{r['state']:<7}{r['pid']!s:>8}{r['port']!s:>7}"
            f"{r['pss_mb']:>9}{r['rss_mb']:>9}  {r['log']}"
        )
    total_pss = sum(int(r["pss_mb"]) for r in rows)
    total_rss = sum(int(r["rss_mb"]) for r in rows)
    print(f"{'total':<46}{total_pss:>9}{total_rss:>9}  (PSS counts shared pages once)")
    for note in stack.notes():
        print(note)
    up_now = {str(r["service"]) for r in rows if r["state"] == "up"}
    print()
    for line in cluster_lines(config.load()):
        print(line)
    print()
    for line in pipeline_lines(up_now):
        print(line)


def pipeline_lines(up_now: set[str]) -> list[str]:
    """The pipeline half of `status`: topic, stream progress and lag, the record's schema, rows,
    last DAG run."""
    import requests
    from cassandra import OperationTimedOut, ReadTimeout
    from cassandra.cluster import NoHostAvailable
    from kafka.errors import KafkaError

    settings = config.load()
    k, c = settings.kafka, settings.cassandra
    lines = ["PIPELINE"]
    if _any(up_now, "kafka"):
        try:
            progress = ps.stream_progress(settings)
        except (KafkaError, OSError) as exc:
            return [*lines, f"  kafka is not answering ({exc.__class__.__name__})"]
        offsets = ", ".join(f"p{p}={o}" for p, o in sorted(progress.end_offsets.items()))
        lines.append(
            f"  topic {k.topic:<26}{progress.messages:>10,} messages  ({offsets or 'no topic yet'})"
        )
        read = ", ".join(f"p{p}={o}" for p, o in sorted(progress.committed.items()))
        lines.append(
            f"  stream job has read          {progress.messages - progress.lag:>10,}  "
            f"lag {progress.lag:,}  (checkpoint batch {progress.batch}: {read or '-'})"
        )
    else:
        lines.append("  kafka is down: no topic figures")
    lines += registry_lines(settings, up_now)
    if _any(up_now, "cassandra"):
        try:
            cluster, session = ps.cassandra_session(c)
        except NoHostAvailable as exc:
            return [*lines, f"  cassandra is not answering ({exc.__class__.__name__})"]
        try:
            for table in (c.table, c.dead_letter_table):
                try:
                    rows = ps.count_rows(session, c.keyspace, table)
                    shown = "no table yet" if rows is None else f"{rows:,} rows"
                except (ReadTimeout, OperationTimedOut) as exc:  # a status line, not a failure
                    shown = f"count timed out ({exc.__class__.__name__})"
                lines.append(f"  {c.keyspace}.{table:<{28 - len(c.keyspace)}}{shown:>10}")
                if table == c.dead_letter_table and rows:
                    for reason, n in ps.reasons(session, c.keyspace, table).most_common(10):
                        lines.append(f"    {n:>10,}  {reason[:90]}")
        finally:
            cluster.shutdown()
    else:
        lines.append("  cassandra is down: no row counts")
    if "airflow-api-server" in up_now:
        try:
            run = AirflowClient(url(), *airflow_admin()).last_run(DAG_ID)
        except (AirflowError, requests.RequestException) as exc:
            run, lines = None, [*lines, f"  last DAG run: unknown ({exc})"]
        if run:
            lines.append(f"  last {DAG_ID} run     {run['state']:>10}  {run['dag_run_id']}")
        else:
            lines.append(f"  last {DAG_ID} run     none yet")
    return lines


def _any(up_now: set[str], service: str) -> bool:
    """Whether a node of ``service`` runs (one of kafka, kafka-2, ...)."""
    return any(name == service or name.startswith(f"{service}-") for name in up_now)


def registry_lines(settings: config.Settings, up_now: set[str]) -> list[str]:
    """The record's subject in the schema registry: its versions, the latest id, the mode."""
    from pipeline import registry

    name = registry.subject(settings.kafka.topic)
    if "schema-registry" not in up_now:
        return [f"  schema-registry is down: no figures for {name}"]
    try:
        state = registry.Registry(settings.registry.url).state(name)
    except registry.RegistryError as exc:
        return [f"  schema-registry is not answering ({exc})"]
    if not state.versions:
        return [f"  schema {name:<25}not registered yet (`./run.sh up` publishes it)"]
    versions = ", ".join(str(v) for v in state.versions)
    return [
        f"  schema {name:<25}versions {versions}, latest id {state.latest_id}, "
        f"{state.compatibility or 'the registry default'} compatibility"
    ]
