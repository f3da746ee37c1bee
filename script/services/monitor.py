"""The live pipeline page (`script/monitor/`, Dash) on 127.0.0.1:MONITOR_PORT.

Started last, once what it watches runs; ready when its Dash app serves the page's layout.
"""

from __future__ import annotations

import sys

import requests

from pipeline import config
from script.procs import spawn
from script.services.base import Service

# Nobody has read the page this long: its reader stops asking the services (an idle stack is
# quiet) until a browser reads it again, but for a look at the topic's size every few seconds:
# while users flow it keeps the charts' figures but the row count (script/monitor/watch.py).
UNWATCHED = 60.0


class Monitor(Service):
    name = "monitor"
    timeout = 60

    @property
    def port(self) -> int:
        return config.load().monitor.port

    def start(self) -> None:
        spawn(self.name, [sys.executable, "-m", "script.monitor", "--host", self.host])

    def probe(self) -> str | None:
        url = f"http://{self.host}:{self.port}/_dash-layout"
        try:
            reply = requests.get(url, timeout=3)
        except requests.RequestException as exc:
            return f"no answer on :{self.port} ({exc.__class__.__name__})"
        if reply.status_code != 200 or "search-id" not in reply.text:
            return f"{url}: HTTP {reply.status_code}, not the pipeline page's layout"
        return None
