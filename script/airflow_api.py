"""A small client of Airflow 3's REST API (v2): log in, unpause, trigger, wait for a DAG run.

The runner and the end-to-end test go through the API server and the scheduler exactly as a
user clicking "Trigger" in the UI would, not through `airflow dags test`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import requests

from script.layout import LOGS, TOOL_LOG

FINISHED = {"success", "failed"}
log = logging.getLogger(__name__)

# What to do about a refusal, by HTTP status.
_FIXES = {
    400: "check the values given (`./run.sh --help`)",
    401: "check AIRFLOW_ADMIN_USERNAME and AIRFLOW_ADMIN_PASSWORD (the generated one is in "
    "$STACK_STATE_DIR/data/airflow/admin-password)",
    404: "is the DAG parsed (`./run.sh airflow dags list`) and AIRFLOW_PORT the API server's port?",
    409: "it exists already",
    422: "check the values given (`./run.sh --help`)",
}
_FIXES[403] = _FIXES[401]


class AirflowError(RuntimeError):
    """The API refused a call or a DAG run did not finish; the message says which and why, in
    one sentence (a refused call's whole answer goes to ``TOOL_LOG``)."""


def refusal(reply: requests.Response, doing: str) -> AirflowError:
    """The one sentence for a call Airflow's API refused; its whole answer goes to the log."""
    log.info("%s %s: HTTP %s %s", reply.request.method, reply.url, reply.status_code, reply.text)
    detail = _detail(reply)
    fix = _FIXES.get(reply.status_code) or (
        f"see {LOGS / 'airflow-api-server.log'}" if reply.status_code >= 500 else "see the log"
    )
    return AirflowError(
        f"Airflow's API refused {doing}{f': {detail}' if detail else ''} (HTTP "
        f"{reply.status_code}); {fix}; its whole answer is in {TOOL_LOG}"
    )


def _detail(reply: requests.Response) -> str:
    """What the API said, in its own words when it said it in words: FastAPI's ``detail`` (a
    sentence, or a list of {loc, msg}), its first line, at most 200 characters."""
    try:
        detail = reply.json().get("detail")
    except (ValueError, AttributeError):
        return ""
    if isinstance(detail, list):
        detail = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg', '')}"
            for d in detail
            if isinstance(d, dict)
        )
    text = str(detail or "").strip().splitlines()
    return text[0][:200] if text else ""


@dataclass
class AirflowClient:
    base_url: str
    username: str
    password: str
    _token: str = ""

    def _headers(self) -> dict[str, str]:
        if not self._token:
            body = {"username": self.username, "password": self.password}
            reply = self._send("POST", f"{self.base_url}/auth/token", timeout=10, json=body)
            if reply.status_code not in (200, 201):
                raise refusal(reply, f"the login of {self.username!r} at {self.base_url}")
            self._token = reply.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return requests.request(method, url, **kwargs)
        except requests.RequestException as exc:
            raise AirflowError(
                f"Airflow's API at {self.base_url} does not answer ({exc.__class__.__name__}): "
                f"is Airflow up (`./run.sh status`)? see {LOGS / 'airflow-api-server.log'}"
            ) from exc

    def call(self, method: str, path: str, *, doing: str = "", **kwargs: Any) -> Any:
        """The API's answer to ``method path``; ``AirflowError`` saying what it refused
        (``doing``, else the call) and the fix, when it refuses."""
        url = f"{self.base_url}/api/v2{path}"
        reply = self._send(method, url, headers=self._headers(), timeout=30, **kwargs)
        if reply.status_code >= 400:
            raise refusal(reply, doing or f"{method} {path}")
        return reply.json() if reply.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict[str, Any]:
        """Wait until the DAG processor has parsed ``dag_id``; fail on an import error."""
        deadline = time.monotonic() + timeout
        while True:
            errors = self.call("GET", "/importErrors")["import_errors"]
            if errors:
                raise AirflowError(
                    "DAG import error(s): "
                    + "; ".join(
                        f"{e['filename']}: {e['stack_trace'].strip().splitlines()[-1]}"
                        for e in errors
                    )
                )
            dags = self.call("GET", "/dags", params={"dag_id_pattern": dag_id})["dags"]
            found = [d for d in dags if d["dag_id"] == dag_id]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AirflowError(
                    f"DAG {dag_id!r} not parsed after {timeout:.0f}s: see "
                    ".stack/logs/airflow-dag-processor.log"
                )
            time.sleep(2)

    def unpause(self, dag_id: str) -> None:
        self.call(
            "PATCH", f"/dags/{dag_id}", doing=f"to unpause {dag_id}", json={"is_paused": False}
        )

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None
    ) -> str:
        """Create a DAG run for the scheduler to run now (named ``run_id``, else as Airflow
        names it); return its run id."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        run = self.call(
            "POST",
            f"/dags/{dag_id}/dagRuns",
            doing=f"to start a run of {dag_id} with {conf or {}}",
            json=body,
        )
        return run["dag_run_id"]

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float = 900, progress: float = 15
    ) -> str:
        """Wait until the run finishes; return its state ("success" or "failed")."""
        started = time.monotonic()
        last = 0.0
        while True:
            state = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in FINISHED:
                return state
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                raise AirflowError(f"DAG run {run_id} still {state} after {timeout:.0f}s")
            if progress and elapsed - last >= progress:
                print(f"[run] DAG run {run_id}: {state} ({elapsed:.0f}s)", flush=True)
                last = elapsed
            time.sleep(1)

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """The return value a task pushed (its XCom ``return_value``)."""
        entry = self.call(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
        )
        return entry["value"]

    def last_run(self, dag_id: str) -> dict[str, Any] | None:
        runs = self.call(
            "GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-start_date", "limit": 1}
        )["dag_runs"]
        return runs[0] if runs else None
