"""The protocol schemas in ``docs/protocol/`` are current, and every conformance line obeys them.

Every published schema must be a valid JSON Schema 2020-12 document, and every line
is judged by ``jsonschema`` (a test dependency), resolving each ``$ref`` among the
published files.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from protocol_codes import engine_rejection_codes
from referencing import Registry, Resource

from heirline.adapters import schema as schema_mod
from heirline.adapters.stdio import ERROR_CODES, Session, serve

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_DIR = ROOT / "docs" / "protocol"
VECTORS = sorted((ROOT / "conformance").glob("*.jsonl"))


def _load(name: str) -> dict[str, object]:
    data = json.loads((PROTOCOL_DIR / name).read_bytes())
    assert isinstance(data, dict)
    return data


#: Every published schema, by the name other schemas ``$ref`` it with.
REGISTRY: Registry[bool | Mapping[str, Any]] = Registry().with_resources(
    (path.name, Resource.from_contents(_load(path.name))) for path in PROTOCOL_DIR.glob("*.json")
)


def errors(schema: dict[str, object], value: object) -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty: valid), as ``jsonschema`` judges it."""
    validator = Draft202012Validator(schema, registry=REGISTRY)
    return [
        f"{e.json_path}: {e.message}"
        for e in sorted(validator.iter_errors(value), key=lambda e: e.json_path)
    ]


@pytest.mark.parametrize("path", sorted(PROTOCOL_DIR.glob("*.json")), ids=lambda p: p.name)
def test_every_published_schema_is_a_valid_draft_2020_12_schema(path: Path) -> None:
    schema = _load(path.name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)  # raises SchemaError, naming the bad keyword


def test_checked_in_schemas_are_current() -> None:
    wanted = schema_mod.schemas()
    present = {p.name for p in PROTOCOL_DIR.glob("*.json")}
    hint = f"docs/protocol/ is stale: run `{schema_mod.REGENERATE}` from the repository root"
    assert present == set(wanted), hint
    for name, schema in wanted.items():
        assert (PROTOCOL_DIR / name).read_bytes() == schema_mod.render(schema), f"{name}: {hint}"


def test_write_all_regenerates_and_drops_stale_files(tmp_path: Path) -> None:
    stale = tmp_path / "protocol" / "event.gone.json"
    stale.parent.mkdir()
    stale.write_text("{}")
    assert schema_mod.main(["--docs", str(tmp_path)]) == 0
    assert not stale.exists()
    for path in PROTOCOL_DIR.glob("*.json"):
        assert (tmp_path / "protocol" / path.name).read_bytes() == path.read_bytes()


def test_error_codes_are_the_schema_enum() -> None:
    response = _load("response.json")
    assert "line_too_long" in str(response)
    assert all(code in str(response) for code in ERROR_CODES)


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_every_vector_line_obeys_the_schema(path: Path) -> None:
    lines = path.read_bytes().split(b"\n")[:-1]
    hello = json.loads(lines[0])
    assert errors(_load("hello.request.json"), hello) == []
    out = io.BytesIO()
    serve(io.BytesIO(lines[0] + b"\n"), out, io.StringIO(), session=Session())
    hello_answer, idle_end = (json.loads(line) for line in out.getvalue().splitlines())
    assert errors(_load("hello.response.json"), hello_answer) == []
    assert errors(_load("end.json"), idle_end) == []
    if len(lines) % 2 == 0:  # the last line is the server's at end of input
        end = json.loads(lines.pop())
        assert errors(_load("end.json"), end) == []
        assert errors(_load("response.json"), end)  # not an answer to a line
    for line, answer_line in zip(lines[1::2], lines[2::2], strict=True):
        answer = json.loads(answer_line)
        assert errors(_load("response.json"), answer) == [], answer_line
        assert errors(_load("end.json"), answer)  # an answer is never taken for the end
        if "effects" in answer:
            assert errors(_load("request.json"), json.loads(line)) == [], line


def test_the_end_of_input_line_and_its_error_form_obey_the_schema() -> None:
    end = _load("end.json")
    ok = {"id": None, "shutdown": True, "effects": [{"type": "cancel_timer", "timer": "health"}]}
    assert errors(end, ok) == []
    assert errors(end, {**ok, "now": 5}) == []
    broken = {
        "id": None,
        "shutdown": True,
        "error": {"line": 3, "code": "internal_error", "message": "boom"},
    }
    assert errors(end, broken) == []
    assert errors(end, {**ok, "id": 1})
    assert errors(end, {**ok, "shutdown": False})
    assert errors(end, {"id": None, "effects": []})
    assert errors(end, {**ok, "error": broken["error"]})


def test_bad_lines_break_the_schema_too() -> None:
    request = _load("request.json")
    assert errors(request, {"now": 1, "event": {"type": "teleport"}})
    assert errors(request, {"now": -1, "event": {"type": "health_check"}})
    assert errors(request, {"now": 1, "event": {"type": "start", "account": 5}})
    assert errors(request, {"now": 1, "event": {"type": "health_check"}, "x": 1})
    assert errors(request, {"id": [1], "now": 1, "event": {"type": "health_check"}})
    assert errors(request, {"now": 1, "event": {"type": "timer_fired", "key": "health"}})
    socket_closed = {"type": "socket_closed", "account": "a", "generation": 1, "status": 408}
    assert errors(request, {"now": 1, "event": socket_closed})  # protocol 2: attempt required
    assert not errors(request, {"now": 1, "event": {**socket_closed, "attempt": 1}})
    activity = {"type": "activity", "account": "a", "generation": 1, "attempt": 1}
    assert not errors(request, {"now": 1, "event": {**activity, "kind": "inbound"}})
    assert errors(request, {"now": 1, "event": {**activity, "kind": "ping"}})
    hello = _load("hello.request.json")
    assert errors(hello, {"hello": {"protocol": 1, "seed": 1}})
    assert errors(hello, {"hello": {"protocol": 3, "seed": 1}})
    assert errors(hello, {"hello": {"protocol": 2, "seed": 1, "mapping": [["a"]]}})
    assert errors(hello, {"hello": {"protocol": 2, "seed": 1, "config": {"health": {"x": 1}}}})
    assert errors(hello, {"hello": {"protocol": 2, "seed": 1, "mapping": [["a", "b", "c"]]}})
    assert errors(hello, {"hello": {"protocol": 2, "seed": 1, "config": {"watchdog_ms": "1"}}})
    assert not errors(hello, {"hello": {"protocol": 2, "seed": 1, "mapping": [["a", "b"]]}})
    assert not errors(hello, {"hello": {"protocol": 2, "seed": 1, "config": {"watchdog_ms": None}}})
    log = _load("effect.log.json")
    assert not errors(log, {"type": "log", "level": "x", "code": "y", "message": "z"})
    assert errors(
        log, {"type": "log", "level": "x", "code": "y", "message": "z", "fields": {"a": []}}
    )
    assert errors(_load("response.json"), {"id": None, "error": {"line": 0, "code": "x"}})


def test_protocol_doc_shows_the_current_incident_transcript() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    incident = (ROOT / "conformance" / "incident.jsonl").read_text(encoding="utf-8")
    assert incident in doc, "docs/protocol.md: paste the current conformance/incident.jsonl"
    for code in ERROR_CODES:
        assert f"`{code}`" in doc, f"docs/protocol.md does not document error {code}"


def test_protocol_doc_lists_every_code_the_engine_rejects_with() -> None:
    """Every code of a ``rejected`` effect in the core has a row in docs/protocol.md, and
    every row names a code the core still has."""
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = doc.split("### Codes of `rejected` effects", 1)[1].split("\n## ", 1)[0]
    codes = engine_rejection_codes()
    assert {"unknown_controller", "unexpected_ack", "reply_ended", "unknown_event"} <= codes
    assert {"bad_identity", "mapping_conflict", "duplicate_message_id", "shut_down"} <= codes
    for code in sorted(codes):
        assert f"| `{code}` |" in section, f"docs/protocol.md does not list rejected code {code}"
    rows = set(re.findall(r"^\| `(\w+)` \|", section, flags=re.M))
    assert rows == codes, f"docs/protocol.md lists codes the core no longer has: {rows - codes}"
