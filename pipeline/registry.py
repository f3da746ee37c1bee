"""The record's schema in a schema registry (Confluent's REST API): publish it, check it, name it.

The contract (``pipeline.contract``) is published as a JSON Schema under ``<KAFKA_TOPIC>-value``
with the compatibility mode ``SCHEMA_COMPATIBILITY``. The local stack's set-up does it on every
``up`` (its registry is Apicurio, whose Confluent-compatible API lives under
``/apis/ccompat/v7``); the producer does it again before it sends, and so learns the schema id
it puts in each record's ``schema-id`` header. Registering a schema the registry already holds
returns its id; a compatible change becomes a new version; an incompatible one is refused
(``SchemaRejected``, with the registry's own message) and the producer does not run. The value
stays plain JSON, so consumers that ignore headers read it as before.

Compose runs Confluent's registry: the same calls work against both.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import requests

from pipeline import contract
from pipeline.config import Settings

# The Kafka record header that carries the registry's id of the schema a record was written with.
SCHEMA_ID_HEADER = contract.SCHEMA_ID_HEADER
_MEDIA = "application/vnd.schemaregistry.v1+json"
_TIMEOUT = 10
_JSON_TYPES = {"string": "string", "long": "integer"}
log = logging.getLogger(__name__)

# What to do about a refusal, by HTTP status.
_FIXES = {
    401: "it wants credentials, which the pipeline does not send: use a registry without them",
    404: "is SCHEMA_REGISTRY_URL the registry's Confluent REST API (the local stack's ends in "
    "/apis/ccompat/v7)?",
    422: "the schema or the mode is not valid for it: check SCHEMA_COMPATIBILITY",
}
_FIXES[403] = _FIXES[401]


class RegistryError(RuntimeError):
    """The registry could not be reached or answered something unexpected; names the URL."""


class SchemaRejected(RegistryError):
    """The registry refused the contract's schema as incompatible with the registered one."""


def subject(topic: str) -> str:
    """The subject of a topic's record values (Confluent's TopicNameStrategy)."""
    return f"{topic}-value"


def json_schema() -> dict[str, Any]:
    """The contract as a JSON Schema: an object of exactly ``contract.FIELDS``."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "user",
        "type": "object",
        "properties": {f.name: {"type": _JSON_TYPES[f.kind]} for f in contract.FIELDS},
        "required": [f.name for f in contract.FIELDS if f.required],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class SubjectState:
    """What the registry holds for a subject (``./run.sh status``)."""

    subject: str
    versions: list[int]
    compatibility: str | None
    latest_id: int | None


class Registry:
    """A client of one registry's Confluent REST API at ``url`` (``SCHEMA_REGISTRY_URL``)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._http = requests.Session()
        self._http.headers["Content-Type"] = _MEDIA

    def _call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ()) -> Any:
        try:
            reply = self._http.request(method, f"{self.url}{path}", json=body, timeout=_TIMEOUT)
        except requests.RequestException as exc:
            raise RegistryError(
                f"no schema registry at SCHEMA_REGISTRY_URL={self.url} ({exc.__class__.__name__}); "
                "start it (`./run.sh up`, or the schema-registry service in Compose) or point the "
                "variable at one"
            ) from exc
        if reply.status_code in ok:
            return None
        if reply.status_code < 400:
            return reply.json()
        log.info("%s %s%s: HTTP %s %s", method, self.url, path, reply.status_code, reply.text)
        message = _message(reply)
        if reply.status_code == 409:  # its reason in full: publish() puts it in a sentence
            raise SchemaRejected(message or "incompatible (its whole answer is logged)")
        said = f": {message.splitlines()[0][:200]}" if message else ""
        raise RegistryError(
            f"the schema registry at SCHEMA_REGISTRY_URL={self.url} refused {method} {path}{said} "
            f"(HTTP {reply.status_code}); {_FIXES.get(reply.status_code, 'see its log')}; its "
            "whole answer is in the log"
        )

    def set_compatibility(self, name: str, mode: str) -> None:
        self._call("PUT", f"/config/{name}", {"compatibility": mode})

    def compatibility(self, name: str) -> str | None:
        """The subject's own compatibility mode, None when it has none."""
        found = self._call("GET", f"/config/{name}", ok=(404,))
        return None if found is None else found.get("compatibilityLevel")

    def register(self, name: str, schema: dict[str, Any]) -> int:
        """The id of ``schema`` under ``name``: its existing one, or a new version's if it is
        compatible; ``SchemaRejected`` with the registry's message if it is not."""
        body = {"schemaType": "JSON", "schema": json.dumps(schema, sort_keys=True)}
        return int(self._call("POST", f"/subjects/{name}/versions", body)["id"])

    def compatible(self, name: str, schema: dict[str, Any]) -> bool:
        """Whether ``schema`` could follow the subject's latest version (True with none yet)."""
        body = {"schemaType": "JSON", "schema": json.dumps(schema, sort_keys=True)}
        found = self._call("POST", f"/compatibility/subjects/{name}/versions/latest", body, (404,))
        return True if found is None else bool(found["is_compatible"])

    def state(self, name: str) -> SubjectState:
        versions = self._call("GET", f"/subjects/{name}/versions", ok=(404,)) or []
        latest = self._call("GET", f"/subjects/{name}/versions/latest", ok=(404,))
        return SubjectState(
            name, versions, self.compatibility(name), latest["id"] if latest else None
        )


def _message(reply: requests.Response) -> str:
    """The registry's own words (its JSON ``message``), else nothing."""
    try:
        return str(reply.json().get("message") or "").strip()
    except (ValueError, AttributeError):
        return ""


def publish(settings: Settings) -> int:
    """Set the subject's compatibility mode and register the contract (idempotent); its id.

    ``SchemaRejected`` names the subject, the mode and the registry's reason.
    """
    reg = settings.registry
    client = Registry(reg.url)
    name = subject(settings.kafka.topic)
    client.set_compatibility(name, reg.compatibility)
    try:
        return client.register(name, json_schema())
    except SchemaRejected as exc:
        raise SchemaRejected(
            f"the record contract (pipeline/contract.py) is not {reg.compatibility}-compatible "
            f"with the latest version of {name} at SCHEMA_REGISTRY_URL={reg.url}: {exc}; "
            "make the change compatible (e.g. a new field optional), or publish it under a new "
            "topic"
        ) from exc
