"""The protocol schemas in ``docs/protocol/`` are current, and every conformance line obeys them.

The schemas use a small subset of JSON Schema 2020-12 (listed in ``KEYWORDS``);
this file checks that subset itself, so ``jsonschema`` is not needed, and fails
if a schema starts using a keyword the checker does not know.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import orjson
import pytest
from protocol_codes import engine_rejection_codes

from heirline.adapters import schema as schema_mod
from heirline.adapters.stdio import ERROR_CODES, Session, serve

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_DIR = ROOT / "docs" / "protocol"
VECTORS = sorted((ROOT / "conformance").glob("*.jsonl"))

KEYWORDS = frozenset(
    {
        "$schema",
        "$comment",
        "$ref",
        "title",
        "description",
        "type",
        "const",
        "enum",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minimum",
        "oneOf",
    }
)

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _load(name: str) -> dict[str, object]:
    data = orjson.loads((PROTOCOL_DIR / name).read_bytes())
    assert isinstance(data, dict)
    return data


def errors(schema: object, value: object, where: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty: valid)."""
    assert isinstance(schema, dict)
    out: list[str] = []
    if "$ref" in schema:
        out += errors(_load(str(schema["$ref"])), value, where)
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[str(n)](value) for n in names):
            return [*out, f"{where}: {value!r} is not {names}"]
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        out.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema:
        enum = schema["enum"]
        assert isinstance(enum, list)
        if not any(value == e and type(value) is type(e) for e in enum):
            out.append(f"{where}: {value!r} not in {enum}")
    if "minimum" in schema and isinstance(value, int) and value < schema["minimum"]:
        out.append(f"{where}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        assert isinstance(props, dict)
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{where}: missing {key!r}")
        for key, item in value.items():
            if key in props:
                out += errors(props[key], item, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                out.append(f"{where}: unexpected {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                out += errors(schema["additionalProperties"], item, f"{where}.{key}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{where}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                out += errors(schema["items"], item, f"{where}[{i}]")
    if "oneOf" in schema:
        options = schema["oneOf"]
        assert isinstance(options, list)
        matching = sum(1 for option in options if not errors(option, value, where))
        if matching != 1:
            out.append(f"{where}: matches {matching} of oneOf, not exactly 1")
    return out


def _keywords(schema: object, path: str = "$") -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key == "properties":
                assert isinstance(value, dict)
                for name, sub in value.items():
                    found |= _keywords(sub, f"{path}.{name}")
            elif key in ("items", "additionalProperties"):
                found |= _keywords(value, path)
            elif key == "oneOf":
                assert isinstance(value, list)
                for sub in value:
                    found |= _keywords(sub, path)
    return found


def test_checked_in_schemas_are_current() -> None:
    wanted = schema_mod.schemas()
    present = {p.name for p in PROTOCOL_DIR.glob("*.json")}
    hint = f"docs/protocol/ is stale: run `{schema_mod.REGENERATE}` from the repository root"
    assert present == set(wanted), hint
    for name, schema in wanted.items():
        assert (PROTOCOL_DIR / name).read_bytes() == schema_mod.render(schema), f"{name}: {hint}"


def test_schemas_use_only_checked_keywords() -> None:
    for path in PROTOCOL_DIR.glob("*.json"):
        assert _keywords(orjson.loads(path.read_bytes())) <= KEYWORDS, path.name


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
    hello = orjson.loads(lines[0])
    assert errors(_load("hello.request.json"), hello) == []
    out = io.BytesIO()
    serve(io.BytesIO(lines[0] + b"\n"), out, io.StringIO(), session=Session())
    hello_answer, idle_end = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert errors(_load("hello.response.json"), hello_answer) == []
    assert errors(_load("end.json"), idle_end) == []
    if len(lines) % 2 == 0:  # the last line is the server's at end of input
        end = orjson.loads(lines.pop())
        assert errors(_load("end.json"), end) == []
        assert errors(_load("response.json"), end)  # not an answer to a line
    for line, answer_line in zip(lines[1::2], lines[2::2], strict=True):
        answer = orjson.loads(answer_line)
        assert errors(_load("response.json"), answer) == [], answer_line
        assert errors(_load("end.json"), answer)  # an answer is never taken for the end
        if "effects" in answer:
            assert errors(_load("request.json"), orjson.loads(line)) == [], line


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
