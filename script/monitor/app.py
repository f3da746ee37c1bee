"""The pipeline page: a Dash app on 127.0.0.1:MONITOR_PORT that lays out what `Watch` reads.

    python -m script.monitor        (the local stack's `monitor` service; Compose's `monitor`)

Read-only: its only inputs are the refresh timer and the search box; Dash serves its own
JavaScript (Plotly's included) from the installed packages, so the page needs no internet. The
layout is in `layout()`, the figures and tables in small functions of a snapshot; text from the
pipeline (message values, dead letters' raw bytes) is set as text, which React escapes.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from dash import Dash, Input, Output, State, dcc, html

from pipeline import config
from pipeline.config import Settings
from script.monitor.watch import UNAVAILABLE, WINDOW, Watch

REFRESH_MS = 1500  # the page asks for the latest snapshot this often
TITLE = "Pipeline: users_created -> Cassandra"


def create_app(settings: Settings, watch: Watch) -> Dash:
    app = Dash(
        __name__,
        title="pipeline monitor",
        update_title=None,
        serve_locally=True,  # Dash's and Plotly's JavaScript from the venv, never a CDN
        assets_folder=str(Path(__file__).parent / "assets"),
        compress=False,
        enable_mcp=False,  # read-only: no tool endpoint for agents
    )
    app.layout = layout(settings)

    @app.callback(
        [Output(name, "children") for name in SECTIONS] + [Output(c, "figure") for c in CHARTS],
        Input("tick", "n_intervals"),
    )
    def refresh(_: int) -> list[Any]:
        snap = watch.snapshot()
        return [SECTIONS[name](snap, settings) for name in SECTIONS] + [
            CHARTS[c](snap) for c in CHARTS
        ]

    @app.callback(
        Output("search-result", "children"),
        Input("search-go", "n_clicks"),
        Input("search-id", "n_submit"),
        State("search-id", "value"),
        prevent_initial_call=True,
    )
    def search(_clicks: int, _submits: int, user_id: str | None) -> Any:
        user_id = (user_id or "").strip()
        if not user_id:
            return html.P("Type a user id (a message key, e.g. from the browser below).")
        try:
            return search_result(watch.search(user_id))
        except UNAVAILABLE as exc:
            return html.P(f"not answering: {exc.__class__.__name__}: {exc}", className="bad")

    return app


def layout(settings: Settings) -> html.Div:
    airflow = f"http://localhost:{settings.stack.airflow_port}"
    spark = f"http://localhost:{settings.stream.ui_port}"
    return html.Div(
        [
            dcc.Interval(id="tick", interval=REFRESH_MS),
            html.Header(
                [
                    html.H1(TITLE.replace("users_created", settings.kafka.topic)),
                    html.Span(id="updated", className="muted"),
                    html.Nav(
                        [
                            html.A("Airflow UI", href=airflow, target="_blank"),
                            html.A("Spark UI", href=spark, target="_blank"),
                        ]
                    ),
                ]
            ),
            html.Div(
                [
                    card("Kafka", "kafka", ["chart-kafka"]),
                    card("Stream job", "job", ["chart-rates", "chart-batch", "chart-latency"]),
                    card("Cassandra", "cassandra", ["chart-rows"]),
                    card("Schema Registry", "schema"),
                    card("Airflow", "airflow"),
                ],
                className="grid",
            ),
            html.Section(
                [
                    html.H2("Find a user"),
                    html.Div(
                        [
                            dcc.Input(
                                id="search-id",
                                placeholder="user id",
                                debounce=True,
                                size="40",
                                type="text",
                            ),
                            html.Button("Find", id="search-go"),
                        ],
                        className="search",
                    ),
                    html.Div(id="search-result"),
                ],
                className="card wide",
            ),
            html.Section(
                [html.H2("Latest messages"), html.Div(id="messages")], className="card wide"
            ),
        ]
    )


def card(title: str, name: str, charts: list[str] | None = None) -> html.Section:
    graphs = [
        dcc.Graph(id=c, config={"displayModeBar": False, "staticPlot": True}, className="chart")
        for c in charts or []
    ]
    return html.Section([html.H2(title), html.Div(id=name), *graphs], className="card")


# --------------------------------------------------------------------------- sections


def _error(part: dict[str, Any] | None) -> html.P | None:
    if part is None:
        return html.P("reading…", className="muted")
    if "error" in part:
        return html.P(f"not answering: {part['error']}", className="bad")
    return None


def _table(header: list[str], rows: list[list[Any]], id: str | None = None) -> html.Table:
    return html.Table(
        [
            html.Thead(html.Tr([html.Th(h) for h in header])),
            html.Tbody([html.Tr([html.Td(_cell(v)) for v in row]) for row in rows]),
        ],
        **({"id": id} if id else {}),
    )


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return html.Span("up" if value else "down", className="good" if value else "bad")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return "-" if value is None else value


def updated(snap: dict[str, Any], _: Settings) -> str:
    at = snap.get("updated")
    return f"read {time.strftime('%H:%M:%S', time.localtime(at))}" if at else "reading…"


def kafka(snap: dict[str, Any], settings: Settings) -> list[Any]:
    brokers, topic = snap.get("brokers"), snap.get("topic")
    out: list[Any] = [_error(brokers)] if _error(brokers) else []
    if brokers and "brokers" in brokers:
        out.append(
            _table(
                ["broker", "address", "state", "controller", "leads"],
                [
                    [
                        b["id"] if b["id"] is not None else "?",
                        b["address"],
                        b["up"],
                        "yes" if b["controller"] else "",
                        ", ".join(f"p{p}" for p in b["leads"]) or "-",
                    ]
                    for b in brokers["brokers"]
                ],
                id="brokers",
            )
        )
        behind = brokers["under_replicated"]
        out.append(
            html.P(
                f"under-replicated partitions: {len(behind)}"
                + "".join(f"; p{b['partition']} in sync {b['in_sync']}" for b in behind),
                id="under-replicated",
                className="bad" if behind else "",
            )
        )
    if _error(topic):
        return [*out, _error(topic)]
    if topic and topic.get("end_offsets"):
        ends = topic["end_offsets"]
        out.append(
            html.P(
                [f"topic {topic['topic']}: ", html.B(f"{topic['messages']:,}", id="topic-total")]
                + [" messages"]
            )
        )
        out.append(
            _table(
                ["partition", "messages (end offset)", "job's lag"],
                [[f"p{p}", ends[p], topic["lag"].get(p, 0)] for p in sorted(ends)],
                id="partitions",
            )
        )
    elif topic:
        out.append(html.P(f"topic {settings.kafka.topic}: not created yet"))
    return out


def job(snap: dict[str, Any], _: Settings) -> list[Any]:
    j, topic, lat = snap.get("job") or {}, snap.get("topic") or {}, snap.get("latency") or {}
    if _error(j) or not j:
        return [_error(j)]
    state = "running" if j.get("running") else "stopped"
    out: list[Any] = [
        html.P(
            [
                "state: ",
                html.B(state, id="job-state", className="good" if j.get("running") else "bad"),
            ]
        )
    ]
    if "restarts" in j:
        last = f"; last exit {j['last_exit']} at {j['last_exit_at']}" if j.get("last_exit") else ""
        out.append(html.P(f"restarts {j['restarts']}{last}", id="job-restarts"))
    lag = topic.get("lag") or {}
    out.append(
        html.P(
            f"lag {sum(lag.values()):,} messages ("
            + ", ".join(f"p{p} {n:,}" for p, n in sorted(lag.items()))
            + f"); last committed batch {topic.get('batch', '-')}",
            id="job-lag",
        )
    )
    if j.get("running") and "input_rows_per_s" not in j:
        out.append(
            html.P(
                "no query gauges yet (the job publishes them with "
                "spark.sql.streaming.metricsEnabled once its query runs)",
                className="muted",
            )
        )
    if lat.get("p50") is not None:
        out.append(
            html.P(
                f"end-to-end latency (produce -> Cassandra write), last sample of "
                f"{lat['sample']} at {_clock(lat['at'])}: p50 {lat['p50'] / 1000:.2f} s, "
                f"p95 {lat['p95'] / 1000:.2f} s, "
                f"p99 {lat['p99'] / 1000:.2f} s",
                id="latency",
            )
        )
    return out


def cassandra(snap: dict[str, Any], settings: Settings) -> list[Any]:
    c = settings.cassandra
    state, rows = snap.get("cassandra_state"), snap.get("rows")
    out: list[Any] = []
    if _error(state):
        out.append(_error(state))
    elif state:
        out.append(
            _table(
                ["node", "data centre", "state"],
                [[n["address"], n["dc"], n["up"]] for n in state["nodes"]],
                id="nodes",
            )
        )
    if _error(rows):
        out.append(_error(rows))
    elif rows and rows.get("rows") is not None:
        more = f" (recounting {rows['counting']} of 16 slices)" if rows.get("counting") else ""
        out.append(
            html.P(
                [f"{c.keyspace}.{c.table}: ", html.B(f"{rows['rows']:,}", id="rows-count")]
                + [f" rows{more}"]
            )
        )
    if state and "dead_letters" in state:
        dead = state["dead_letters"]
        out.append(html.H3(f"dead letters ({c.dead_letter_table}): {dead['total']:,}"))
        if dead["reasons"]:
            out.append(_table(["reason", "messages"], dead["reasons"], id="dead-reasons"))
            out.append(
                _table(
                    ["rejected at", "where", "schema id", "reason", "raw value"],
                    [
                        [
                            d["rejected_at"],
                            f"p{d['partition']}@{d['offset']}",
                            d["schema_id"],
                            d["reason"],
                            html.Pre(d["raw_value"], className="raw"),
                        ]
                        for d in dead["latest"]
                    ],
                    id="dead-latest",
                )
            )
    return out


def schema(snap: dict[str, Any], _: Settings) -> list[Any]:
    s = snap.get("schema")
    if _error(s) or not s:
        return [_error(s)]
    if not s["versions"]:
        return [html.P(f"{s['subject']}: not registered yet")]
    return [
        html.P(
            [
                html.B(s["subject"], id="schema-subject"),
                f": versions {', '.join(map(str, s['versions']))}, latest id {s['latest_id']}, "
                f"compatibility {s['compatibility']}",
            ]
        ),
        html.Details([html.Summary("schema"), html.Pre(s["schema"], className="raw")]),
    ]


def airflow(snap: dict[str, Any], _: Settings) -> list[Any]:
    a = snap.get("dag_runs")
    if _error(a) or not a:
        return [_error(a)]
    return [
        html.P(f"last runs of {config.DAG_ID}"),
        _table(
            ["started (UTC)", "state", "sent", "skipped", "duration s"],
            [[r["start"], r["state"], r["sent"], r["skipped"], r["duration_s"]] for r in a["runs"]],
            id="dag-runs",
        ),
    ]


def messages(snap: dict[str, Any], _: Settings) -> Any:
    found = snap.get("messages") or []
    if not found:
        return html.P("no messages yet", className="muted")
    return _table(
        ["time", "partition", "offset", "key", "schema id", "value"],
        [
            [
                _clock(m["timestamp"]),
                f"p{m['partition']}",
                m["offset"],
                m["key"],
                m["schema_id"],
                html.Details([html.Summary(f"{m['size']} bytes"), html.Pre(m["value"])]),
            ]
            for m in found
        ],
        id="message-table",
    )


def search_result(found: dict[str, Any]) -> Any:
    m, row = found["message"], found["row"]
    left = (
        html.Div(
            [
                html.H3(
                    f"Kafka: p{m['partition']} offset {m['offset']}, "
                    f"schema id {m['schema_id'] or '-'}"
                ),
                html.Pre(m["value"], id="search-message"),
            ]
        )
        if m
        else html.Div(
            [
                html.H3("Kafka"),
                html.P("no message found with this key near its row's time", id="search-message"),
            ]
        )
    )
    right = (
        html.Div(
            [
                html.H3("Cassandra row"),
                _table(["column", "value"], [[k, str(v)] for k, v in row.items()], id="search-row"),
            ]
        )
        if row
        else html.Div([html.H3("Cassandra row"), html.P("no row with this id", id="search-row")])
    )
    return html.Div([left, right], className="side-by-side")


SECTIONS = {
    "updated": updated,
    "kafka": kafka,
    "job": job,
    "cassandra": cassandra,
    "schema": schema,
    "airflow": airflow,
    "messages": messages,
}


# --------------------------------------------------------------------------- charts


def _clock(epoch: float) -> str:
    """Epoch seconds or milliseconds as local wall-clock time."""
    seconds = epoch / 1000 if epoch > 1e11 else epoch
    return datetime.fromtimestamp(seconds).strftime("%H:%M:%S")


def _figure(title: str, traces: list[dict[str, Any]], unit: str) -> dict[str, Any]:
    now = time.time()
    window = [datetime.fromtimestamp(t).isoformat(timespec="seconds") for t in (now - WINDOW, now)]
    return {
        "data": traces,
        "layout": {
            "title": {"text": title, "font": {"size": 13}},
            "height": 190,
            "margin": {"l": 50, "r": 10, "t": 30, "b": 40},
            "yaxis": {"title": {"text": unit}, "rangemode": "tozero"},
            "xaxis": {"type": "date", "range": window, "tickformat": "%H:%M"},
            "legend": {"orientation": "h", "y": -0.25},
            "uirevision": title,
        },
    }


GAP = 10  # seconds without a point: the line breaks there instead of joining across it


def _trace(points: list[tuple], name: str, column: int = 1, scale: float = 1) -> dict:
    x: list[str] = []
    y: list[float | None] = []
    for i, p in enumerate(points):
        if i and p[0] - points[i - 1][0] > GAP:
            x.append(datetime.fromtimestamp(p[0] - GAP / 2).isoformat(timespec="seconds"))
            y.append(None)
        x.append(datetime.fromtimestamp(p[0]).isoformat(timespec="seconds"))
        y.append(round(p[column] * scale, 3))
    return {"type": "scatter", "mode": "lines", "name": name, "x": x, "y": y}


def chart_kafka(snap: dict[str, Any]) -> dict[str, Any]:
    s = snap["series"]
    traces = [_trace(s.get("msgs_per_s", []), "messages/s")]
    kb = _trace(s.get("bytes_per_s", []), "KB/s on disk", scale=1 / 1024)
    return _figure("into the topic, last 15 min", [*traces, kb], "per second")


def chart_rates(snap: dict[str, Any]) -> dict[str, Any]:
    s = snap["series"]
    return _figure(
        "input vs processed rows/s",
        [
            _trace(s.get("input_rows_per_s", []), "input"),
            _trace(s.get("processed_rows_per_s", []), "processed"),
        ],
        "rows/s",
    )


def chart_batch(snap: dict[str, Any]) -> dict[str, Any]:
    points = snap["series"].get("batch_ms", [])
    return _figure("batch duration", [_trace(points, "batch", scale=1 / 1000)], "s")


def chart_latency(snap: dict[str, Any]) -> dict[str, Any]:
    points = snap["series"].get("latency_ms", [])
    traces = [
        _trace(points, name, column=i + 1, scale=1 / 1000)
        for i, name in enumerate(("p50", "p95", "p99"))
    ]
    return _figure("end-to-end latency", traces, "s")


def chart_rows(snap: dict[str, Any]) -> dict[str, Any]:
    s = snap["series"]
    return _figure(
        "rows in the table, lag in the topic",
        [_trace(s.get("rows", []), "rows"), _trace(s.get("lag", []), "lag")],
        "",
    )


CHARTS = {
    "chart-kafka": chart_kafka,
    "chart-rates": chart_rates,
    "chart-batch": chart_batch,
    "chart-latency": chart_latency,
    "chart-rows": chart_rows,
}


def main(host: str = "127.0.0.1") -> int:
    """Serve the page on ``host``:MONITOR_PORT until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per refresh
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    settings = config.load()
    watch = Watch(settings)
    watch.start()
    app = create_app(settings, watch)
    logging.getLogger(__name__).info("pipeline page on http://%s:%d", host, settings.monitor.port)
    app.run(host=host, port=settings.monitor.port, debug=False)
    return 0
