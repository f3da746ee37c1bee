"""A randomuser.me-compatible server for tests, the benchmark and offline runs: a test double.

It answers ``GET /api/`` like the public API (see the project's randomuser facts sheet): the
same JSON shape and quirks (postcode int or str, ``id.value`` null for some nationalities,
names in Latin-with-accents, Arabic, Persian and Cyrillic scripts, login secrets, an ``info``
block with version "1.4"), ``results`` capped at 5000, ``seed``/``page``/``nat``/``gender``/
``inc``/``exc``. The same seed and page always give the same users; other pages give others.

Faults are injected through a control endpoint, so the client under test needs no special
parameters. ``POST /_faults`` with one fault object, a list of them or ``{"faults": [...]}``
queues them; each applies to the next ``count`` API requests, in order::

    {"status": 503, "count": 2}              503 twice, then normal answers
    {"status": 429, "retry_after": "1"}      429 with a Retry-After header
    {"delay": 2.5}                           answer normally after 2.5 s (client timeouts)
    {"truncate": 0.5}                        send half the body, then close the connection
    {"truncate": 0.5, "declare_full_length": false}   half the body, honest Content-Length
    {"error_body": true}                     200 whose body is {"error": "..."}
    {"edits": [{"user": 0, "replace": null}, {"user": 1, "surrogate": "name.first"},
               {"user": 2, "drop": "login.uuid"}, {"user": 3, "set": "phone", "value": 7}]}
                                             a normal answer with odd entries: an entry
                                             replaced by any JSON value, a lone surrogate
                                             (served as the escape \ud800) appended to a
                                             string, a value dropped or set to another type
    {}                                       a normal answer (lets requests through first)

``GET /_faults`` shows pending faults and the log of API requests; ``DELETE /_faults`` clears
both. ``POST /_pages`` with ``{"seed": "s", "results": 5000, "pages": [1, 2]}`` renders those
pages now and serves them from memory until ``DELETE /_pages``: the benchmark's producer runs
then pay for sending, not for the API's rendering (randomuser.me renders on its own servers).
Run it with ``python -m standin --host 127.0.0.1 --port 8765``, or in-process with
``StandIn(port=0).start()`` (a free port; ``.url`` is the API URL).

The modules: ``data`` (name and place tables), ``render`` (users from seed and page, as JSON
text), ``server`` (the HTTP server and its faults). The pipeline's runtime code never imports
this package, and neither the Spark image nor the Airflow containers carry it.
"""

from standin.render import (
    MAX_RESULTS,
    TOP_LEVEL_FIELDS,
    VERSION,
    build_response,
    generate_users,
    render_users,
    response_body,
)
from standin.server import Fault, RequestRecord, StandIn

__all__ = [
    "MAX_RESULTS",
    "TOP_LEVEL_FIELDS",
    "VERSION",
    "Fault",
    "RequestRecord",
    "StandIn",
    "build_response",
    "generate_users",
    "render_users",
    "response_body",
]
