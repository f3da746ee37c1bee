"""The record's schema in the real schema registry: published, evolved, refused, carried.

Runs against SCHEMA_REGISTRY_URL (the local stack's Apicurio, or any Confluent-compatible
registry) and the local Kafka; every test uses a subject and topic of its own.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import requests
from conftest import read_topic, topic_end_offsets

from pipeline import config, contract, producer, registry
from standin import StandIn


def settings_for(topic: str, **env: str) -> config.Settings:
    return config.load({**os.environ, "KAFKA_TOPIC": topic, **env})


def test_publishing_the_contract_is_idempotent_and_sets_the_compatibility_mode(
    topic: str,
) -> None:
    settings = settings_for(topic)
    first = registry.publish(settings)
    again = registry.publish(settings)
    state = registry.Registry(settings.registry.url).state(registry.subject(topic))
    assert again == first
    assert state.versions == [1]
    assert state.latest_id == first
    assert state.compatibility == "BACKWARD"
    stored = requests.get(
        f"{settings.registry.url}/subjects/{topic}-value/versions/1", timeout=5
    ).json()
    assert json.loads(stored["schema"])["required"] == list(contract.FIELD_NAMES)


def test_a_compatible_change_becomes_a_new_version(topic: str) -> None:
    """An optional new field can be read by a consumer of the old schema: BACKWARD accepts it."""
    settings = settings_for(topic)
    client = registry.Registry(settings.registry.url)
    first = registry.publish(settings)
    changed = registry.json_schema()
    changed["properties"]["nickname"] = {"type": "string"}
    assert client.compatible(registry.subject(topic), changed)
    second = client.register(registry.subject(topic), changed)
    assert second != first
    assert client.state(registry.subject(topic)).versions == [1, 2]


def test_an_incompatible_change_is_refused_with_the_registrys_reason(topic: str) -> None:
    """A new required field breaks BACKWARD: the registry refuses it and says why."""
    settings = settings_for(topic)
    client = registry.Registry(settings.registry.url)
    registry.publish(settings)
    changed = copy.deepcopy(registry.json_schema())
    changed["properties"]["nickname"] = {"type": "string"}
    changed["required"].append("nickname")
    assert not client.compatible(registry.subject(topic), changed)
    with pytest.raises(registry.SchemaRejected) as refused:
        client.register(registry.subject(topic), changed)
    assert "required" in str(refused.value).lower()
    assert client.state(registry.subject(topic)).versions == [1]


def test_the_producer_refuses_to_run_when_its_contract_is_incompatible(topic: str) -> None:
    """A registered version the contract cannot follow stops the producer before any send."""
    settings = settings_for(topic)
    client = registry.Registry(settings.registry.url)
    name = registry.subject(topic)
    client.set_compatibility(name, "BACKWARD")
    other = registry.json_schema()
    other["properties"]["id"] = {"type": "integer"}  # the type of a field changed
    client.register(name, other)
    with pytest.raises(producer.RunFailed, match=f"not BACKWARD-compatible .*{name}"):
        producer.publish_schema(settings)


def test_every_record_the_producer_sends_names_its_schema_id_and_stays_plain_json(
    kafka_bootstrap: str, topic: str
) -> None:
    with StandIn() as standin:
        settings = settings_for(
            topic, USERS_API_URL=standin.url, USERS_TOTAL="300", USERS_PER_SECOND="0"
        )
        stats = producer.run(settings)
    schema_id = registry.Registry(settings.registry.url).state(registry.subject(topic)).latest_id
    messages = read_topic(kafka_bootstrap, topic, topic_end_offsets(kafka_bootstrap, topic))
    assert stats.sent == len(messages) == 300
    headers = {tuple(m.headers) for m in messages}
    assert headers == {((contract.SCHEMA_ID_HEADER, str(schema_id).encode()),)}
    for m in messages:
        contract.validate(json.loads(m.value))


def test_status_shows_the_subject_its_versions_and_its_compatibility_mode(topic: str) -> None:
    from script import status

    settings = settings_for(topic, SCHEMA_COMPATIBILITY="FULL")
    first = registry.publish(settings)
    assert status.registry_lines(settings, {"schema-registry"}) == [
        f"  schema {topic}-value".ljust(34) + f"versions 1, latest id {first}, FULL compatibility"
    ]


def _jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").touch()
    (home / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    return home


def test_the_registry_runs_on_the_newest_java_21_or_later_unless_one_is_set(
    tmp_path: Path,
) -> None:
    from script.services.registry import find_java

    jdk17 = _jdk(tmp_path, "java-17", "17.0.12")
    _jdk(tmp_path, "temurin-21", "21.0.4")
    jdk25 = _jdk(tmp_path, "temurin-25", "25")
    assert find_java("", str(jdk17), tmp_path) == jdk25 / "bin" / "java"
    assert find_java("", "", tmp_path) == jdk25 / "bin" / "java"
    chosen = tmp_path / "temurin-21"
    assert find_java(str(chosen), str(jdk17), tmp_path) == chosen / "bin" / "java"


def test_no_java_21_is_a_loud_error_that_names_the_setting(tmp_path: Path) -> None:
    from script.layout import StackError
    from script.services.registry import find_java

    jdk17 = _jdk(tmp_path, "java-17", "17.0.12")
    with pytest.raises(StackError, match="Java 21 or newer.*SCHEMA_REGISTRY_JAVA_HOME"):
        find_java("", str(jdk17), tmp_path)
    with pytest.raises(StackError, match=f"SCHEMA_REGISTRY_JAVA_HOME={jdk17} is not a Java 21"):
        find_java(str(jdk17), "", tmp_path)
