"""A call a service refuses is shown as one sentence (the service, what it refused, the fix); the
service's whole answer goes to the log, not the terminal.

Airflow's API and the schema registry are played by a small HTTP server answering as they do;
Cassandra's refusals are its driver's exceptions. No service of the stack is needed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline import registry
from script.airflow_api import AirflowClient, AirflowError
from script.layout import TOOL_LOG

# Airflow 3's answer to a trigger whose conf breaks a Param (abridged).
PARAM_REFUSAL = {
    "detail": "Invalid input for param total: -5 is less than the minimum of 0\n\n"
    "Failed validating 'minimum' in schema:\n    {'minimum': 0, 'type': 'integer'}\n\n"
    "On instance:\n    -5"
}


@pytest.fixture
def answers() -> Iterator[tuple[str, dict[tuple[str, str], tuple[int, object]]]]:
    """A local HTTP server's URL, and the (status, JSON body) it answers per (method, path)."""
    table: dict[tuple[str, str], tuple[int, object]] = {}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            status, body = table.get((self.command, self.path), (404, {"detail": "Not Found"}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", table
    finally:
        server.shutdown()
        server.server_close()


def test_a_trigger_airflow_refuses_is_one_sentence_and_its_answer_is_logged(
    answers, caplog: pytest.LogCaptureFixture
) -> None:
    url, table = answers
    table[("POST", "/auth/token")] = (201, {"access_token": "t"})
    table[("POST", "/api/v2/dags/user_automation/dagRuns")] = (400, PARAM_REFUSAL)
    with caplog.at_level(logging.INFO), pytest.raises(AirflowError) as refused:
        AirflowClient(url, "admin", "pw").trigger("user_automation", {"total": -5})
    message = str(refused.value)
    assert message == (
        "Airflow's API refused to start a run of user_automation with {'total': -5}: Invalid "
        "input for param total: -5 is less than the minimum of 0 (HTTP 400); check the values "
        f"given (`./run.sh --help`); its whole answer is in {TOOL_LOG}"
    )
    assert "\n" not in message and "Failed validating" not in message
    logged = [r.getMessage() for r in caplog.records if r.name == "script.airflow_api"]
    assert any("Failed validating 'minimum'" in line and "HTTP 400" in line for line in logged)


def test_a_refused_login_names_the_variables_to_check(answers) -> None:
    url, table = answers
    table[("POST", "/auth/token")] = (401, {"detail": "Invalid credentials"})
    with pytest.raises(AirflowError) as refused:
        AirflowClient(url, "admin", "wrong").unpause("user_automation")
    assert str(refused.value).startswith(
        f"Airflow's API refused the login of 'admin' at {url}: Invalid credentials (HTTP 401); "
        "check AIRFLOW_ADMIN_USERNAME and AIRFLOW_ADMIN_PASSWORD"
    )


def test_an_airflow_that_does_not_answer_is_named_with_the_fix(answers) -> None:
    url, _ = answers
    dead = url.rsplit(":", 1)[0] + ":9"  # the discard port: nobody listens
    with pytest.raises(AirflowError) as refused:
        AirflowClient(dead, "admin", "pw").unpause("user_automation")
    assert str(refused.value).startswith(
        f"Airflow's API at {dead} does not answer (ConnectionError): is Airflow up"
    )


def test_a_call_the_registry_refuses_is_one_sentence_and_its_answer_is_logged(
    answers, caplog: pytest.LogCaptureFixture
) -> None:
    url, table = answers
    body = {"error_code": 42203, "message": "Invalid compatibility level: SIDEWAYS\nat ..."}
    table[("PUT", "/config/users-value")] = (422, body)
    with caplog.at_level(logging.INFO), pytest.raises(registry.RegistryError) as refused:
        registry.Registry(url).set_compatibility("users-value", "SIDEWAYS")
    assert str(refused.value) == (
        f"the schema registry at SCHEMA_REGISTRY_URL={url} refused PUT /config/users-value: "
        "Invalid compatibility level: SIDEWAYS (HTTP 422); the schema or the mode is not valid "
        "for it: check SCHEMA_COMPATIBILITY; its whole answer is in the log"
    )
    logged = [r.getMessage() for r in caplog.records if r.name == "pipeline.registry"]
    assert any('"error_code": 42203' in line for line in logged)


def test_cassandras_refusals_are_one_sentence_naming_the_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cassandra import AuthenticationFailed, InvalidRequest, Unauthorized
    from cassandra.cluster import NoHostAvailable

    from pipeline import config
    from script.__main__ import cassandra_refusal

    c = config.load().cassandra
    bad_login = NoHostAvailable(
        "Unable to connect to any servers",
        {"127.0.0.1:9042": AuthenticationFailed('code=0100 [Bad credentials] message="..."')},
    )
    down = NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:9042": OSError(111)})
    with caplog.at_level(logging.INFO):
        sentences = [
            cassandra_refusal(exc)
            for exc in (
                bad_login,
                down,
                Unauthorized("User pipeline_writer has no MODIFY permission on <table x.y>"),
                InvalidRequest('Error from server: code=2200 [Invalid query] message="..."'),
            )
        ]
    where = f"Cassandra at {c.host}:{c.port}"
    assert sentences[0].startswith(f"{where} refused the login of {c.username!r}; check ")
    assert sentences[1].startswith(f"{where} did not answer (NoHostAvailable): is it up?")
    assert sentences[2].startswith(  # the role refused is the one Cassandra names
        f"{where} refused a query that lacks the right (User pipeline_writer has no MODIFY"
    )
    assert sentences[3].startswith(f"{where} refused a query: Error from server: code=2200")
    assert all(
        "\n" not in s and s.endswith(f"its whole answer is in {TOOL_LOG}") for s in sentences
    )
    assert any("Bad credentials" in r.getMessage() for r in caplog.records)
    assert cassandra_refusal(KeyError("x")) is None  # not the driver's: raised as it is
