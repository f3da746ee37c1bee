"""A small client of Airflow 3's REST API (v2): log in, unpause, trigger, wait for a DAG run.

The runner and the end-to-end test go through the API server and the scheduler exactly as a
user clicking "Trigger" in the UI would, not through `airflow dags test`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests

FINISHED = {"success", "failed"}


class AirflowError(RuntimeError):
    """The API refused a call or a DAG run did not finish; the message says which and why."""


@dataclass
class AirflowClient:
    base_url: str
    username: str
    password: str
    _token: str = ""

    def _headers(self) -> dict[str, str]:
        if not self._token:
            reply = requests.post(
                f"{self.base_url}/auth/token",
                timeout=10,
                json={"username": self.username, "password": self.password},
            )
            if reply.status_code not in (200, 201):
                raise AirflowError(
                    f"login as {self.username!r} at {self.base_url} failed: "
                    f"HTTP {reply.status_code} {reply.text[:200]}"
                )
            self._token = reply.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = requests.request(
            method, f"{self.base_url}/api/v2{path}", headers=self._headers(), timeout=30, **kwargs
        )
        if reply.status_code >= 400:
            raise AirflowError(f"{method} {path}: HTTP {reply.status_code} {reply.text[:300]}")
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
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Create a DAG run for the scheduler to run now; return its run id."""
        run = self.call(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}
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
