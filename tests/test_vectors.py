"""Replay every conformance vector (``conformance/*.jsonl``) against the engine and the server.

A vector is one session: line 1 is the hello, then input line / expected answer
line pairs, then (unless the host shut the engine down itself) the line the
server writes at end of input. Each vector is replayed twice: against an
in-process ``Engine`` (event lines only: protocol errors never reach an engine;
the end-of-input line is its answer to ``Shutdown("end of input")`` at the last
accepted ``now``) and through a real ``python -m heirline.adapters.stdio``
subprocess, where every line must equal the expected one byte for byte.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from protocol_codes import UNREACHABLE_OVER_THE_WIRE, engine_rejection_codes

from heirline.adapters.stdio import END_OF_INPUT, PROTOCOL, build_config, build_mapping
from heirline.core.effects import Rejected
from heirline.core.engine import Engine
from heirline.core.events import Shutdown
from heirline.core.wire import decode_effect, decode_event, encode

VECTOR_DIR = Path(__file__).resolve().parent.parent / "conformance"
VECTORS = sorted(VECTOR_DIR.glob("*.jsonl"))
REQUIRED = {
    "incident",
    "relink_refused",
    "pn_lid_mapping_learned",
    "pn_lid_no_mapping",
    "status_codes",
    "delivery_ack",
    "delivery_lost_before_io",
    "delivery_lost_after_io",
    "delivery_deadline_failed",
    "delivery_deadline_unknown",
    "delivery_duplicate_ack",
    "protocol_errors",
    # protocol 2
    "socket_attempts",
    "watchdog_closes_silent_socket",
    "watchdog_rearmed_by_activity",
    "activity_stale_rule",
    "shutdown_ends_replies",
    "end_of_input",
    "duplicate_message_id",
    "external_registry",
    "rejections",
}


@dataclass(frozen=True)
class Transcript:
    hello: bytes
    pairs: list[tuple[bytes, bytes]]
    end: bytes | None  # the server's line at end of input, if it writes one


def _split(path: Path) -> Transcript:
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"", f"{path.name}: must end with a newline"
    lines = lines[:-1]
    end = lines.pop() if len(lines) % 2 == 0 else None
    pairs = [(lines[i], lines[i + 1]) for i in range(1, len(lines), 2)]
    if end is not None:
        assert json.loads(end)["shutdown"] is True, f"{path.name}: the last line is not the end"
    for _, answer in pairs:
        assert "shutdown" not in json.loads(answer), f"{path.name}: an end line mid-session"
    return Transcript(lines[0], pairs, end)


def _events(path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)["event"]
        for line, answer in _split(path).pairs
        if b'"error":{' not in answer
    ]


def _effects(path: Path) -> list[dict[str, Any]]:
    t = _split(path)
    answers = [json.loads(a) for _, a in t.pairs] + ([json.loads(t.end)] if t.end else [])
    return [e for a in answers for e in a.get("effects", [])]


def test_every_required_vector_is_present() -> None:
    assert {p.stem for p in VECTORS} >= REQUIRED


def test_every_vector_speaks_protocol_2() -> None:
    for path in VECTORS:
        assert json.loads(_split(path).hello)["hello"]["protocol"] == PROTOCOL == 2


def test_every_status_code_decision_is_covered() -> None:
    statuses = {e["status"] for e in _events(VECTOR_DIR / "status_codes.jsonl")
                if e["type"] == "socket_closed"}  # fmt: skip
    assert {401, 403, 408, 411, 428, 440, 499, 500, 503, 515, None} < statuses
    assert statuses - {401, 403, 408, 411, 428, 440, 499, 500, 503, 515, None}  # an unknown code


def test_every_code_a_host_can_meet_is_shown_by_a_vector() -> None:
    """Every ``rejected`` code the core has is in some vector, unless no wire host can meet it."""
    shown = {e["code"] for p in VECTORS for e in _effects(p) if e["type"] == "rejected"}
    codes = engine_rejection_codes()
    assert set(UNREACHABLE_OVER_THE_WIRE) <= codes
    assert codes - set(UNREACHABLE_OVER_THE_WIRE) <= shown, sorted(codes - shown)
    assert shown <= codes


def test_the_protocol_2_stories_show_what_they_claim() -> None:
    """Each new vector pins down its fact (a regenerated vector cannot silently lose it)."""
    attempts = _effects(VECTOR_DIR / "socket_attempts.jsonl")
    opened = [(e["generation"], e["attempt"]) for e in attempts if e["type"] == "open_socket"]
    assert opened == [(1, 1), (1, 2), (1, 3), (2, 4)]  # per account, only growing
    logs = [e["code"] for e in attempts if e["type"] == "log"]
    assert logs.count("late_close") == 2
    assert {"type": "close_socket", "account": "acct", "generation": 1, "attempt": 1,
            "status": None, "reason": "stale socket: generation 1 has a newer socket"
            } in attempts  # fmt: skip

    silent = _effects(VECTOR_DIR / "watchdog_closes_silent_socket.jsonl")
    closes = [e for e in silent if e["type"] == "close_socket" and e["status"] == 499]
    assert [(c["attempt"], c["reason"]) for c in closes] == [
        (1, "watchdog: no traffic for 300000 ms")
    ]

    rearmed = _effects(VECTOR_DIR / "watchdog_rearmed_by_activity.jsonl")
    deadlines = [e["deadline_ms"] for e in rearmed if e["type"] == "start_timer"]
    assert deadlines == [301_000, 500_000, 750_000]  # from the open, then from the last activity
    assert [e["status"] for e in rearmed if e["type"] == "close_socket"] == [499, None]

    stale = _effects(VECTOR_DIR / "activity_stale_rule.jsonl")
    restarts = [e for e in stale if e["type"] == "log" and e["code"] == "health_restart"]
    assert [(r["account"], r["fields"]["reason"]) for r in restarts] == [("frames", "stale-socket")]
    assert not [e for e in stale if e["type"] == "close_socket" and e["status"] == 499]

    host = _split(VECTOR_DIR / "shutdown_ends_replies.jsonl")
    assert host.end is None  # the host shut down: nothing more at EOF
    for name, reason in (("shutdown_ends_replies", "deploy"), ("end_of_input", END_OF_INPUT)):
        ended = {
            e["reply_id"]: e["outcome"]
            for e in _effects(VECTOR_DIR / f"{name}.jsonl")
            if e["type"] == "reply_failed"
        }
        assert ended == {
            "pending": "failed",
            "waiting": "failed",
            "in_flight": "unknown",
            "waiting_after_io": "unknown",
        }, name
        assert reason in str(_effects(VECTOR_DIR / f"{name}.jsonl"))

    registry = _effects(VECTOR_DIR / "external_registry.jsonl")
    kinds = [e["type"] for e in registry if e["type"] in ("register_request", "open_socket")]
    assert kinds == ["register_request", "open_socket", "register_request"]
    stopped = [
        e["message"] for e in registry if e["type"] == "log" and e["code"].endswith("stopped")
    ]
    assert stopped == [
        "Stopped: registry refused: held by gw-b.",
        "Stopped: registry refused: lease lost.",
    ]


def _engine(hello_line: bytes) -> Engine:
    hello = json.loads(hello_line)["hello"]
    return Engine(
        build_config(hello.get("config")),
        random=random.Random(hello["seed"]).random,
        mapping=build_mapping(hello.get("mapping")),
    )


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector_against_the_engine(path: Path) -> None:
    t = _split(path)
    engine = _engine(t.hello)
    replayed = 0
    last_now = 0
    for number, (line, expected_line) in enumerate(t.pairs, start=1):
        expected = json.loads(expected_line)
        if "error" in expected:
            continue  # a protocol error: the line never reaches an engine
        msg = json.loads(line)
        effects = engine.handle(decode_event(msg["event"]), msg["now"])
        got = [encode(e) for e in effects]
        assert got == expected["effects"], f"{path.name} pair {number}: {line!r}"
        assert expected["id"] == msg.get("id")
        # The expected effects are valid effects, and decode/encode round-trips them.
        assert [encode(decode_effect(e)) for e in expected["effects"]] == expected["effects"]
        if not any(isinstance(e, Rejected) for e in effects):
            last_now = msg["now"]
        replayed += 1
    assert replayed > 0
    # At EOF the server shuts down whatever the host did not: the same answer, in process.
    assert (t.end is None) == engine.shut_down
    if t.end is not None:
        effects = engine.handle(Shutdown(reason=END_OF_INPUT), last_now)
        end = json.loads(t.end)
        assert end == {"id": None, "shutdown": True, "effects": [encode(e) for e in effects]}


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector_through_the_stdio_server(path: Path) -> None:
    t = _split(path)
    proc = subprocess.run(
        [sys.executable, "-m", "heirline.adapters.stdio"],
        input=b"".join(line + b"\n" for line in [t.hello, *(line for line, _ in t.pairs)]),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    answers = proc.stdout.split(b"\n")
    assert answers[-1] == b""
    answers = answers[:-1]
    expected = [line for _, line in t.pairs] + ([t.end] if t.end is not None else [])
    assert len(answers) == 1 + len(expected)
    hello = json.loads(answers[0])["hello"]
    assert hello["protocol"] == PROTOCOL
    assert isinstance(hello["heirline"], str)
    for number, (want, got) in enumerate(zip(expected, answers[1:], strict=True), 1):
        assert got == want, f"{path.name} answer {number}"
    errors = sum(1 for _, line in t.pairs if b'"error":{' in line)
    assert f"{len(t.pairs) + 1} lines" in proc.stderr.decode()
    assert f"{errors} errors" in proc.stderr.decode()
