"""One configuration document, read by one builder, from both sides: the stdio hello's
``config`` (JSON) and a scenario's ``[engine]`` table (TOML) take the same names, turn
things off the same way, and report a bad field the same way."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from heirline.adapters.config import build_config, config_schema
from heirline.adapters.scenario import ScenarioError, parse_scenario
from heirline.adapters.stdio import ProtocolError, Session
from heirline.adapters.stdio import build_config as stdio_build_config
from heirline.core.effects import LogLevel
from heirline.core.engine import EngineConfig

SCENARIO = """
[[accounts]]
name = "a"
pn = "4915123456789@s.whatsapp.net"
[[steps]]
action = "start"
account = "a"
"""


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def _toml(config: dict[str, object]) -> str:
    """The [engine] tables of a config document (no null in TOML: the caller uses false)."""
    top = {k: v for k, v in config.items() if not isinstance(v, dict)}
    text = "[engine]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in top.items())
    for section, body in config.items():
        if isinstance(body, dict):
            text += f"[engine.{section}]\n"
            text += "".join(f"{k} = {_toml_value(v)}\n" for k, v in body.items())
    return text


def from_hello(config: dict[str, object]) -> EngineConfig:
    session = Session()
    line = json.dumps({"hello": {"protocol": 2, "seed": 1, "config": config}}).encode()
    answer = json.loads(session.feed(line))
    assert "hello" in answer, answer
    assert session.engine is not None
    return session.engine.config


def from_scenario(config: dict[str, object]) -> EngineConfig:
    return parse_scenario(SCENARIO + _toml(config), "c.toml").config


DOCUMENT: dict[str, object] = {
    "reply_deadline_ms": 5_000,
    "max_transmissions": 3,
    "resendable_kinds": ["text"],
    "health_timer": False,
    "external_registry": True,
    "log_level": "warning",
    "watchdog_ms": False,
    "health": {"retry_grace_ms": False, "startup_grace_ms": 0, "connect_grace_ms": 2_000},
    "backoff": {"initial_ms": 1_000, "factor": 2, "max_attempts": 3},
}


def test_the_same_document_gives_the_same_engine_config_from_both_sides() -> None:
    hello, scenario = from_hello(DOCUMENT), from_scenario(DOCUMENT)
    assert hello == scenario == build_config(DOCUMENT)
    assert hello.external_registry is True
    assert hello.log_level is LogLevel.WARNING
    assert hello.lifecycle.log_level is LogLevel.WARNING
    assert hello.lifecycle.watchdog_ms is None
    assert hello.health.retry_grace_ms is None
    assert hello.lifecycle.backoff.factor == 2.0
    assert type(hello.lifecycle.backoff.factor) is float
    assert hello.resendable_kinds == frozenset({"text"})


@pytest.mark.parametrize("off", [None, False])
def test_null_and_false_both_turn_an_optional_setting_off(off: object) -> None:
    config = from_hello({"watchdog_ms": off, "health": {"retry_grace_ms": off}})
    assert config.lifecycle.watchdog_ms is None
    assert config.health.retry_grace_ms is None
    assert from_hello({}) == EngineConfig()  # absent: the defaults (on)
    assert EngineConfig().lifecycle.watchdog_ms == 300_000


def test_true_does_not_turn_anything_on() -> None:
    with pytest.raises(ProtocolError, match=r"hello\.config\.watchdog_ms: expected int, got bool"):
        stdio_build_config({"watchdog_ms": True})


@pytest.mark.parametrize(
    ("document", "where", "problem"),
    [
        ({"log_level": "verbose"}, "log_level", "expected one of ['debug', 'info', 'warning', "),
        ({"health": {"retry_grace_ms": "off"}}, "health.retry_grace_ms", "expected int, got str"),
        ({"backoff": {"factor": "x"}}, "backoff.factor", "expected float, got str 'x'"),
        ({"journal": True}, "journal", "unknown field (known: reply_deadline_ms, "),
        ({"reply_deadline_ms": 2**53}, "reply_deadline_ms", "integer 9007199254740992 is outside"),
        ({"max_transmissions": 0}, "", "EngineConfig.max_transmissions must be >= 1, got 0"),
        ({"health": {"window_ms": 0}}, "health", "HealthConfig.window_ms must be >= 1, got 0"),
    ],
)
def test_a_bad_field_is_reported_alike_from_both_sides(
    document: dict[str, object], where: str, problem: str
) -> None:
    with pytest.raises(ProtocolError) as hello:
        stdio_build_config(document)
    assert hello.value.code == "bad_hello"
    hello_where, _, hello_problem = str(hello.value).partition(": ")
    assert hello_where == ".".join(p for p in ("hello.config", where) if p)
    assert hello_problem.startswith(problem)
    with pytest.raises(ScenarioError) as toml:
        parse_scenario(SCENARIO + _toml(document), "c.toml")
    assert toml.value.where == ".".join(p for p in ("engine", where) if p)
    assert toml.value.message == hello_problem


def test_the_published_schema_describes_the_document() -> None:
    validator = Draft202012Validator(config_schema())
    assert validator.is_valid(DOCUMENT)
    assert validator.is_valid({"watchdog_ms": None, "health": {"retry_grace_ms": None}})
    assert not validator.is_valid({"watchdog_ms": True})
    assert not validator.is_valid({"journal": True})
    assert not validator.is_valid({"log_level": "verbose"})
