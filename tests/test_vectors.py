"""Replay every conformance vector (``conformance/*.jsonl``) against the engine and the server.

A vector is one session: line 1 is the hello, then input line / expected answer
line pairs. Each vector is replayed twice: against an in-process ``Engine``
(event lines only: protocol errors never reach an engine) and through a real
``python -m heirline.adapters.stdio`` subprocess, where every answer line must
equal the expected one byte for byte.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from heirline.adapters.stdio import PROTOCOL, build_config, build_mapping
from heirline.core.engine import Engine
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
}


def _split(path: Path) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"", f"{path.name}: must end with a newline"
    lines = lines[:-1]
    assert len(lines) % 2 == 1, f"{path.name}: hello, then input/answer pairs"
    return lines[0], [(lines[i], lines[i + 1]) for i in range(1, len(lines), 2)]


def test_every_required_vector_is_present() -> None:
    assert {p.stem for p in VECTORS} >= REQUIRED


def test_every_status_code_decision_is_covered() -> None:
    _, pairs = _split(VECTOR_DIR / "status_codes.jsonl")
    statuses = set()
    for line, _ in pairs:
        event = orjson.loads(line)["event"]
        if event["type"] == "socket_closed":
            statuses.add(event["status"])
    assert {401, 403, 408, 411, 428, 440, 499, 500, 503, 515, None} < statuses
    assert statuses - {401, 403, 408, 411, 428, 440, 499, 500, 503, 515, None}  # an unknown code


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector_against_the_engine(path: Path) -> None:
    hello_line, pairs = _split(path)
    hello = orjson.loads(hello_line)["hello"]
    engine = Engine(
        build_config(hello.get("config")),
        random=random.Random(hello["seed"]).random,
        mapping=build_mapping(hello.get("mapping")),
    )
    replayed = 0
    for number, (line, expected_line) in enumerate(pairs, start=1):
        expected = orjson.loads(expected_line)
        if "error" in expected:
            continue  # a protocol error: the line never reaches an engine
        msg = orjson.loads(line)
        effects = engine.handle(decode_event(msg["event"]), msg["now"])
        got = [encode(e) for e in effects]
        assert got == expected["effects"], f"{path.name} pair {number}: {line!r}"
        assert expected["id"] == msg.get("id")
        # The expected effects are valid effects, and decode/encode round-trips them.
        assert [encode(decode_effect(e)) for e in expected["effects"]] == expected["effects"]
        replayed += 1
    assert replayed > 0


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector_through_the_stdio_server(path: Path) -> None:
    hello_line, pairs = _split(path)
    proc = subprocess.run(
        [sys.executable, "-m", "heirline.adapters.stdio"],
        input=b"".join(line + b"\n" for line in [hello_line, *(line for line, _ in pairs)]),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    answers = proc.stdout.split(b"\n")
    assert answers[-1] == b""
    answers = answers[:-1]
    assert len(answers) == 1 + len(pairs)
    hello = orjson.loads(answers[0])["hello"]
    assert hello["protocol"] == PROTOCOL
    assert isinstance(hello["heirline"], str)
    for number, ((line, expected), got) in enumerate(zip(pairs, answers[1:], strict=True), 1):
        assert got == expected, f"{path.name} pair {number}: {line!r}"
    errors = sum(1 for _, expected in pairs if b'"error":{' in expected)
    assert f"{len(pairs) + 1} lines" in proc.stderr.decode()
    assert f"{errors} errors" in proc.stderr.decode()
