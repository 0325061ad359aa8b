"""The stdio server: handshake, clock modes, and bad input that never ends the session."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from typing import Any

import orjson
import pytest

from heirline.adapters import stdio
from heirline.adapters.stdio import MAX_LINE_BYTES, Session, serve

HELLO = b'{"hello": {"protocol": 1, "seed": 7}}'
START = b'{"id": 1, "now": 10, "event": {"type": "start", "account": "a"}}'


def run(
    *lines: bytes, session: Session | None = None, max_line: int = MAX_LINE_BYTES
) -> tuple[list[dict[str, Any]], str]:
    out, err = io.BytesIO(), io.StringIO()
    data = b"".join(line + b"\n" for line in lines)
    assert serve(io.BytesIO(data), out, err, session=session, max_line=max_line) == 0
    return [orjson.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def error(answer: dict[str, Any]) -> tuple[object, object]:
    body = answer["error"]
    assert isinstance(body, dict)
    return body["line"], body["code"]


def test_handshake_then_one_answer_per_line() -> None:
    answers, summary = run(HELLO, START, b'{"now": 20, "event": {"type": "health_check"}}')
    assert answers[0] == {"hello": {"protocol": 1, "heirline": stdio.version(), "clock": "host"}}
    assert answers[1]["id"] == 1
    assert [e["type"] for e in answers[1]["effects"]][:2] == ["registered", "open_socket"]
    assert answers[2] == {"id": None, "effects": []}
    assert summary == "heirline serve: 3 lines, 2 events, 0 errors, 0 rejected\n"


@pytest.mark.parametrize(
    ("hello", "code"),
    [
        (b'{"hello": {"protocol": 2, "seed": 7}}', "unsupported_protocol"),
        (b'{"hello": {"protocol": "1", "seed": 7}}', "bad_hello"),
        (b'{"hello": {"protocol": 1}}', "bad_hello"),
        (b'{"hello": {"protocol": 1, "seed": 7, "x": 1}}', "bad_hello"),
        (b'{"hello": {"protocol": 1, "seed": 7}, "id": 1}', "bad_hello"),
        (b'{"hello": [1]}', "bad_hello"),
        (b'{"hello": {"protocol": 1, "seed": 7, "clock": "wall"}}', "bad_hello"),
        (b'{"hello": {"protocol": 1, "seed": 7, "config": []}}', "bad_hello"),
        (b'{"hello": {"protocol": 1, "seed": 7, "config": {"nope": 1}}}', "bad_hello"),
        (b'{"hello": {"protocol": 1, "seed": 7, "config": {"health": 3}}}', "bad_hello"),
        (b'{"hello": {"protocol": 1, "seed": 7, "config": {"max_transmissions": 0}}}', "bad_hello"),
        (b'{"hello": {"protocol": 1, "seed": 7, "config": {"health_timer": 1}}}', "bad_hello"),
        (
            b'{"hello": {"protocol": 1, "seed": 7, "config": {"backoff": {"factor": "x"}}}}',
            "bad_hello",
        ),
        (b'{"hello": {"protocol": 1, "seed": 7, "mapping": [["1"]]}}', "bad_hello"),
        (
            b'{"hello": {"protocol": 1, "seed": 7, "mapping": [["1", "2"], ["1", "3"]]}}',
            "bad_hello",
        ),
        (START, "hello_required"),
    ],
)
def test_a_bad_hello_is_answered_and_the_session_waits_for_a_good_one(
    hello: bytes, code: str
) -> None:
    answers, summary = run(hello, HELLO, START)
    assert error(answers[0]) == (1, code)
    assert answers[1]["hello"]["protocol"] == 1
    assert "effects" in answers[2]
    assert "1 errors" in summary


def test_config_and_mapping_reach_the_engine() -> None:
    hello = orjson.dumps(
        {
            "hello": {
                "protocol": 1,
                "seed": 1,
                "config": {
                    "reply_deadline_ms": 5,
                    "health_timer": False,
                    "resendable_kinds": ["text"],
                    "health": {"retry_grace_ms": None},
                    "backoff": {"factor": 2, "max_attempts": 3},
                },
                "mapping": [["491511@s.whatsapp.net", "777@lid"]],
            }
        }
    )
    session = Session()
    run(hello, session=session)
    engine = session.engine
    assert engine is not None
    assert engine.config.reply_deadline_ms == 5
    assert engine.config.resendable_kinds == frozenset({"text"})
    assert engine.config.health.retry_grace_ms is None
    assert engine.config.lifecycle.backoff.max_attempts == 3
    assert engine.mapping.lid_for("491511") == "777"


def test_bad_lines_get_errors_naming_the_line_and_state_is_untouched() -> None:
    answers, summary = run(
        HELLO,
        START,
        b"{not json",
        b"   ",
        b'"a string"',
        b'{"id": 2, "now": 5, "event": {"type": "health_check"}}',
        b'{"id": 3, "now": 20, "event": {"type": "stop", "account": "a", "generation": true}}',
        b'{"id": 4, "now": 20, "event": {"type": "stop", "account": "a", "generation": 1}}',
        b'{"id": 5, "now": 20, "event": {"type": "stop", "account": "a", "generation": 1}}',
        b'{"id": 6, "now": 20, "event": "start"}',
        b'{"id": {}, "now": 20, "event": {"type": "health_check"}}',
        b'{"id": "x", "now": 1.5, "event": {"type": "health_check"}}',
        b'{"id": "y", "now": 20, "event": {"type": "health_check"}, "clock": 1}',
    )
    assert error(answers[2]) == (3, "not_json")
    assert error(answers[3]) == (4, "empty_line")
    assert error(answers[4]) == (5, "not_object")
    assert error(answers[5]) == (6, "now_backwards")
    assert answers[5]["id"] == 2
    assert error(answers[6]) == (7, "bad_event")
    assert "stop.generation" in str(answers[6])
    assert "unregistered" in str(answers[7])  # the stop went through once ...
    assert "stop_ignored" in str(answers[8])  # ... and only once
    assert error(answers[9]) == (10, "bad_event")
    assert error(answers[10]) == (11, "bad_envelope")
    assert answers[10]["id"] is None
    assert error(answers[11]) == (12, "bad_now")
    assert answers[11]["id"] == "x"
    assert error(answers[12]) == (13, "bad_envelope")
    assert summary.startswith("heirline serve: 13 lines, 3 events, 9 errors, 0 rejected")


def test_an_engine_bug_is_reported_and_the_session_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    session = Session()
    run(HELLO, session=session)
    assert session.engine is not None

    def boom(event: object, now: int) -> list[object]:
        raise RuntimeError("boom")

    monkeypatch.setattr(session.engine, "handle", boom)
    answer = orjson.loads(session.feed(START))
    assert answer["error"]["code"] == "internal_error"
    assert "boom" in answer["error"]["message"]


def test_oversized_lines_are_skipped_whole() -> None:
    big = b'{"id": 9, "now": 11, "event": {"type": "start", "account": "' + b"x" * 200 + b'"}}'
    answers, _ = run(
        HELLO, START, big, b'{"id": 3, "now": 12, "event": {"type": "health_check"}}', max_line=100
    )
    assert error(answers[2]) == (3, "line_too_long")
    assert answers[3]["id"] == 3
    # an oversized last line without a newline, split over several reads
    out, err = io.BytesIO(), io.StringIO()
    serve(io.BytesIO(HELLO + b"\n" + b"y" * 300_000), out, err, max_line=1000)
    last = orjson.loads(out.getvalue().splitlines()[-1])
    assert error(last) == (2, "line_too_long")


def test_a_last_line_without_newline_is_answered() -> None:
    out, err = io.BytesIO(), io.StringIO()
    serve(io.BytesIO(HELLO + b"\n" + START), out, err)
    assert orjson.loads(out.getvalue().splitlines()[-1])["id"] == 1


def test_monotonic_clock_stamps_answers() -> None:
    ticks = iter([1000, 1005, 1030])
    session = Session(monotonic_ms=lambda: next(ticks))
    hello = b'{"hello": {"protocol": 1, "seed": 7, "clock": "monotonic"}}'
    answers, _ = run(
        hello,
        b'{"id": 1, "event": {"type": "start", "account": "a"}}',
        b'{"id": 2, "now": 40, "event": {"type": "health_check"}}',
        b'{"id": 3, "event": {"type": "health_check"}}',
        session=session,
    )
    assert answers[0]["hello"]["clock"] == "monotonic"
    assert answers[1]["now"] == 5
    assert error(answers[2]) == (3, "bad_now")
    assert answers[3]["now"] == 30


class _Closed(io.BytesIO):
    def write(self, data: bytes, /) -> int:  # type: ignore[override]
        raise BrokenPipeError


def test_a_closed_output_pipe_ends_the_session() -> None:
    err = io.StringIO()
    assert serve(io.BytesIO(HELLO + b"\n"), _Closed(), err) == 1
    assert "closed the output pipe" in err.getvalue()


def test_serve_parser_and_run_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser(prog="heirline")
    stdio.add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve"])
    assert stdio.run_serve(args) == 2
    args = parser.parse_args(["serve", "--stdio"])
    fake_in = io.TextIOWrapper(io.BytesIO(HELLO + b"\n"))
    fake_out = io.TextIOWrapper(io.BytesIO())
    monkeypatch.setattr(sys, "stdin", fake_in)
    monkeypatch.setattr(sys, "stdout", fake_out)
    assert stdio.run_serve(args) == 0
    assert stdio.main([]) == 0


def test_the_real_process_survives_bad_input_and_exits_cleanly_on_eof() -> None:
    big = (
        b'{"now": 1, "event": {"type": "start", "account": "'
        + b"z" * (MAX_LINE_BYTES + 10)
        + b'"}}'
    )
    data = (
        b"\n".join(
            [
                HELLO,
                b"\xff\xfe",
                big,
                START,
                b'{"now": 11, "event": {"type": "stop", "account": "q", "generation": 1}}',
            ]
        )
        + b"\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "heirline.adapters.stdio"],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    answers = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert error(answers[1]) == (2, "not_json")
    assert error(answers[2]) == (3, "line_too_long")
    assert answers[3]["id"] == 1
    assert answers[4]["effects"][0]["code"] == "unknown_controller"
    assert proc.stderr.decode().strip() == "heirline serve: 5 lines, 2 events, 2 errors, 1 rejected"
