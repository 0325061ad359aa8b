"""The stdio server: handshake, clock modes, and bad input that never ends the session."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heirline.adapters import stdio
from heirline.adapters.jsonio import dumps
from heirline.adapters.stdio import MAX_LINE_BYTES, Session, serve
from heirline.core.effects import Effect, LogLevel
from heirline.core.events import EVENT_TYPES, Event, Shutdown
from heirline.core.timers import HEALTH, DeadlineTimer, RetryTimer, WatchdogTimer
from heirline.core.wire import encode

HELLO = b'{"hello": {"protocol": 2, "seed": 7}}'
START = b'{"id": 1, "now": 10, "event": {"type": "start", "account": "a"}}'
#: The server's last line at EOF when nothing was open: the shutdown changed nothing visible.
QUIET_END: dict[str, object] = {"id": None, "shutdown": True, "effects": []}


def run(
    *lines: bytes, session: Session | None = None, max_line: int = MAX_LINE_BYTES
) -> tuple[list[dict[str, Any]], str]:
    """Serve ``lines`` then EOF: the answer to each line (the EOF line, if any, is left out)."""
    answers, err = run_all(*lines, session=session, max_line=max_line)
    if answers and "shutdown" in answers[-1]:
        answers.pop()
    return answers, err


def run_all(
    *lines: bytes, session: Session | None = None, max_line: int = MAX_LINE_BYTES
) -> tuple[list[dict[str, Any]], str]:
    """Serve ``lines`` then EOF: every line the server wrote, the EOF line included."""
    out, err = io.BytesIO(), io.StringIO()
    data = b"".join(line + b"\n" for line in lines)
    assert serve(io.BytesIO(data), out, err, session=session, max_line=max_line) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def error(answer: dict[str, Any]) -> tuple[object, object]:
    body = answer["error"]
    assert isinstance(body, dict)
    return body["line"], body["code"]


def test_handshake_then_one_answer_per_line() -> None:
    answers, summary = run_all(HELLO, START, b'{"now": 20, "event": {"type": "health_check"}}')
    assert answers[0] == {"hello": {"protocol": 2, "heirline": stdio.version(), "clock": "host"}}
    assert answers[1]["id"] == 1
    assert [e["type"] for e in answers[1]["effects"]][:2] == ["registered", "open_socket"]
    assert answers[1]["effects"][1] == {
        "type": "open_socket",
        "account": "a",
        "generation": 1,
        "attempt": 1,
    }
    assert answers[2] == {"id": None, "effects": []}
    # EOF: the server shuts the engine down; the last line says what that did.
    assert answers[3]["shutdown"] is True
    assert [e["type"] for e in answers[3]["effects"]] == [
        "close_socket",
        "log",
        "unregistered",
        "cancel_timer",
    ]
    assert len(answers) == 4
    assert summary == "heirline serve: 3 lines, 2 events, 0 errors, 0 rejected\n"


def test_protocol_1_is_refused_with_the_versions_spoken() -> None:
    """Protocol 2 changed the wire (socket attempts, typed timer keys): a protocol 1 host
    must not be answered in a shape it would misread."""
    answers, _ = run(b'{"hello": {"protocol": 1, "seed": 7}}', HELLO)
    assert error(answers[0]) == (1, "unsupported_protocol")
    assert answers[0]["error"]["message"] == "protocol 1 is not supported (supported: [2])"
    assert answers[1]["hello"]["protocol"] == 2


@pytest.mark.parametrize(
    ("hello", "code"),
    [
        (b'{"hello": {"protocol": 1, "seed": 7}}', "unsupported_protocol"),
        (b'{"hello": {"protocol": 3, "seed": 7}}', "unsupported_protocol"),
        (b'{"hello": {"protocol": "1", "seed": 7}}', "bad_hello"),
        (b'{"hello": {"protocol": 2}}', "bad_hello"),
        (b'{"hello": {"protocol": 2, "seed": 7, "x": 1}}', "bad_hello"),
        (b'{"hello": {"protocol": 2, "seed": 7}, "id": 1}', "bad_hello"),
        (b'{"hello": [1]}', "bad_hello"),
        (b'{"hello": {"protocol": 2, "seed": 7, "clock": "wall"}}', "bad_hello"),
        (b'{"hello": {"protocol": 2, "seed": 7, "config": []}}', "bad_hello"),
        (b'{"hello": {"protocol": 2, "seed": 7, "config": {"nope": 1}}}', "bad_hello"),
        (b'{"hello": {"protocol": 2, "seed": 7, "config": {"health": 3}}}', "bad_hello"),
        (b'{"hello": {"protocol": 2, "seed": 7, "config": {"max_transmissions": 0}}}', "bad_hello"),
        (b'{"hello": {"protocol": 2, "seed": 7, "config": {"health_timer": 1}}}', "bad_hello"),
        (b'{"hello": {"protocol": 2, "seed": 7, "config": {"watchdog_ms": 0}}}', "bad_hello"),
        (b'{"hello": {"protocol": 2, "seed": 7, "config": {"journal": true}}}', "bad_hello"),
        (b'{"hello": {"protocol": 2, "seed": 7, "config": {"watchdog_ms": "5m"}}}', "bad_hello"),
        (
            b'{"hello": {"protocol": 2, "seed": 7, "config": {"backoff": {"factor": "x"}}}}',
            "bad_hello",
        ),
        (b'{"hello": {"protocol": 2, "seed": 7, "mapping": [["1"]]}}', "bad_hello"),
        (
            b'{"hello": {"protocol": 2, "seed": 7, "mapping": [["1", "2"], ["1", "3"]]}}',
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
    assert answers[1]["hello"]["protocol"] == 2
    assert "effects" in answers[2]
    assert "1 errors" in summary


def test_config_and_mapping_reach_the_engine() -> None:
    hello = dumps(
        {
            "hello": {
                "protocol": 2,
                "seed": 1,
                "config": {
                    "reply_deadline_ms": 5,
                    "health_timer": False,
                    "resendable_kinds": ["text"],
                    "watchdog_ms": 90_000,
                    "external_registry": True,
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
    assert engine.config.lifecycle.watchdog_ms == 90_000
    assert engine.config.external_registry is True
    assert engine.mapping.lid_for("491511") == "777"


def test_log_level_is_a_name_on_the_wire_and_off_builds_no_log_records() -> None:
    session = Session()
    hello = b'{"hello": {"protocol": 2, "seed": 1, "config": {"log_level": "warning"}}}'
    run(hello, session=session)
    assert session.engine is not None
    assert session.engine.config.log_level is LogLevel.WARNING
    assert session.engine.config.lifecycle.log_level is LogLevel.WARNING
    quiet, _ = run(b'{"hello": {"protocol": 2, "seed": 1, "config": {"log_level": "off"}}}', START)
    assert [e["type"] for e in quiet[1]["effects"]] == ["registered", "open_socket", "start_timer"]
    for bad in (b'"verbose"', b"20", b'"DEBUG"', b"null"):
        answers, _ = run(
            b'{"hello": {"protocol": 2, "seed": 1, "config": {"log_level": %s}}}' % bad
        )
        assert error(answers[0]) == (1, "bad_hello"), bad
        expected = (
            "hello.config.log_level: expected one of ['debug', 'info', 'warning', 'error', 'off']"
        )
        assert answers[0]["error"]["message"].startswith(expected), answers[0]


def test_the_watchdog_can_be_turned_off_and_defaults_to_five_minutes() -> None:
    session = Session()
    run(b'{"hello": {"protocol": 2, "seed": 1, "config": {"watchdog_ms": null}}}', session=session)
    assert session.engine is not None
    assert session.engine.config.lifecycle.watchdog_ms is None
    session = Session()
    run(HELLO, session=session)
    assert session.engine is not None
    assert session.engine.config.lifecycle.watchdog_ms == 300_000


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


def test_an_engine_bug_is_reported_on_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    session = Session()
    run(HELLO, session=session)
    assert session.engine is not None

    def boom(event: object, now: int) -> list[object]:
        raise RuntimeError("boom")

    monkeypatch.setattr(session.engine, "handle", boom)
    answer = json.loads(session.feed(START))
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
    *_, last, end = (json.loads(line) for line in out.getvalue().splitlines())
    assert error(last) == (2, "line_too_long")
    assert end == QUIET_END


def test_a_last_line_without_newline_is_answered() -> None:
    out, err = io.BytesIO(), io.StringIO()
    serve(io.BytesIO(HELLO + b"\n" + START), out, err)
    *_, last, end = (json.loads(line) for line in out.getvalue().splitlines())
    assert last["id"] == 1
    assert end["shutdown"] is True  # then EOF: the engine is shut down


def test_monotonic_clock_stamps_answers() -> None:
    ticks = iter([1000, 1005, 1030, 1032])
    session = Session(monotonic_ms=lambda: next(ticks))
    hello = b'{"hello": {"protocol": 2, "seed": 7, "clock": "monotonic"}}'
    answers, _ = run_all(
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
    assert answers[4]["shutdown"] is True
    assert answers[4]["now"] == 32  # the shutdown at EOF is stamped on the server's clock too
    assert len(answers) == 5


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
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert error(answers[1]) == (2, "not_json")
    assert error(answers[2]) == (3, "line_too_long")
    assert answers[3]["id"] == 1
    assert answers[4]["effects"][0]["code"] == "unknown_controller"
    # EOF: the engine is shut down, and the last line closes the socket the start opened
    assert answers[5]["shutdown"] is True
    assert answers[5]["effects"][0] == {
        "type": "close_socket",
        "account": "a",
        "generation": 1,
        "attempt": 1,
        "status": None,
        "reason": "end of input",
    }
    assert len(answers) == 6
    assert proc.stderr.decode().strip() == "heirline serve: 5 lines, 2 events, 2 errors, 1 rejected"


# --- end of input: a shutdown like any other ------------------------------------------

GROUP = "120363000000000001@g.us"
PN = "4915123456789@s.whatsapp.net"


def _event_line(rid: int, now: int, **event: object) -> bytes:
    return dumps({"id": rid, "now": now, "event": event})


def _replies_in_every_state() -> list[bytes]:
    """Account a keeps an open socket, account b's socket closed: one reply in each state."""
    hello = dumps({"hello": {"protocol": 2, "seed": 7, "config": {"health_timer": False}}})
    lines = [hello]
    n = iter(range(1, 100))

    def add(now: int, **event: object) -> None:
        lines.append(_event_line(next(n), now, **event))

    for account in ("a", "b"):
        add(0, type="start", account=account)
    add(10, type="socket_opened", account="a", generation=1, attempt=1, pn=PN)
    add(10, type="socket_opened", account="b", generation=1, attempt=1, pn=PN)
    captured = {"a": ["pending", "in_flight", "delivered"], "b": ["waiting", "waiting_io"]}
    for account, ids in captured.items():
        for rid in ids:
            add(20, type="reply_captured", reply_id=rid, account=account, generation=1, chat=GROUP)
    add(30, type="reply_ready", reply_id="in_flight", payload="x")
    add(30, type="reply_ready", reply_id="delivered", payload="x")
    add(31, type="transmit_acked", reply_id="delivered", generation=1, attempt=1)
    add(32, type="reply_ready", reply_id="waiting_io", payload="x")
    add(33, type="socket_closed", account="b", generation=1, attempt=1, status=408)
    add(34, type="reply_ready", reply_id="waiting", payload="x")
    return lines


#: How each reply ends at EOF: never sent -> failed; may have reached the receiver -> unknown.
EOF_OUTCOMES = {
    "pending": ("failed", "end of input before the reply was sent"),
    "waiting": ("failed", "end of input before the reply was sent"),
    "in_flight": (
        "unknown",
        "end of input; a transmission may have reached the receiver without an ack",
    ),
    "waiting_io": (
        "unknown",
        "end of input; a transmission may have reached the receiver without an ack",
    ),
}


def test_at_eof_every_open_reply_ends_exactly_once_and_ended_ones_stay_ended() -> None:
    session = Session()
    lines = _replies_in_every_state()
    for line in lines:
        assert "error" not in json.loads(session.feed(line))
    engine = session.engine
    assert engine is not None
    states = {rid: engine.reply_state(rid) for rid in (*EOF_OUTCOMES, "delivered")}
    assert states == {
        "pending": "pending",
        "waiting": "waiting",
        "in_flight": "in_flight",
        "waiting_io": "waiting",
        "delivered": "delivered",
    }
    end = json.loads(session.end())
    assert set(end) == {"id", "shutdown", "effects"}
    assert end["id"] is None
    assert end["shutdown"] is True
    ended = [
        (e["reply_id"], (e["outcome"], e["reason"]))
        for e in end["effects"]
        if e["type"] == "reply_failed"
    ]
    assert sorted(ended) == sorted(EOF_OUTCOMES.items())  # each open reply once, no other
    assert not any(e["type"] in ("reply_delivered", "transmit") for e in end["effects"])
    # Both controllers stop: a's open socket is closed, b's retry timer cancelled.
    assert {"type": "close_socket", "account": "a", "generation": 1, "attempt": 1,
            "status": None, "reason": "end of input"} in end["effects"]  # fmt: skip
    assert {"type": "cancel_timer", "timer": "retry/b/1"} in end["effects"]
    assert [e["generation"] for e in end["effects"] if e["type"] == "unregistered"] == [1, 1]
    for rid, (outcome, _) in EOF_OUTCOMES.items():
        assert engine.reply_state(rid) == outcome
    assert engine.reply_state("delivered") == "delivered"
    assert session.end() == b""  # once: the engine is shut down now


def test_serve_writes_the_eof_line_last_and_it_is_the_engines_own_answer() -> None:
    """Through ``serve``: one answer per line, then the EOF line, which is exactly what the
    engine answers a ``Shutdown("end of input")`` at the last accepted ``now``."""
    lines = _replies_in_every_state()
    answers, summary = run_all(*lines)
    assert len(answers) == len(lines) + 1
    twin = Session()
    for line in lines:
        twin.feed(line)
    assert twin.engine is not None
    effects = twin.engine.handle(Shutdown(reason=stdio.END_OF_INPUT), 34)
    assert answers[-1] == {"id": None, "shutdown": True, "effects": [encode(e) for e in effects]}
    assert (
        summary
        == f"heirline serve: {len(lines)} lines, {len(lines) - 1} events, 0 errors, 0 rejected\n"
    )


def test_after_the_hosts_own_shutdown_eof_adds_nothing() -> None:
    """The host may shut the engine down itself: its answer ends the replies, and EOF then
    writes no second line (nothing is ended twice)."""
    lines = _replies_in_every_state()
    shutdown = b'{"id": "bye", "now": 40, "event": {"type": "shutdown", "reason": "deploy"}}'
    late = b'{"id": "late", "now": 41, "event": {"type": "health_check"}}'
    answers, _ = run_all(*lines, shutdown, late)
    assert len(answers) == len(lines) + 2
    bye, after = answers[-2:]
    assert bye["id"] == "bye"
    ended = sorted(e["reply_id"] for e in bye["effects"] if e["type"] == "reply_failed")
    assert ended == sorted(EOF_OUTCOMES)
    assert "deploy before the reply was sent" in str(bye)
    assert after == {
        "id": "late",
        "effects": [
            {
                "type": "rejected",
                "code": "shut_down",
                "message": "the engine was shut down (deploy)",
            }
        ],
    }


def test_eof_before_any_hello_writes_no_last_line() -> None:
    answers, summary = run_all(b"{not json", b'{"hello": {"protocol": 1, "seed": 7}}')
    assert [a["error"]["code"] for a in answers] == ["not_json", "unsupported_protocol"]
    assert summary.startswith("heirline serve: 2 lines, 0 events, 2 errors")
    answers, _ = run_all()
    assert answers == []


def test_eof_after_only_a_hello_shuts_down_an_idle_engine() -> None:
    answers, _ = run_all(HELLO)
    assert answers[1:] == [QUIET_END]


def test_a_broken_engine_gets_no_eof_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken engine may be half-updated: its replies cannot be trusted to end correctly, so
    the server does not pretend (the exit status and every later line said it broke)."""
    session = started()
    _broken_engine(session, monkeypatch, on_call=1)
    out, err = io.BytesIO(), io.StringIO()
    assert serve(io.BytesIO(START + b"\n"), out, err, session=session) == 1
    (answer,) = (json.loads(line) for line in out.getvalue().splitlines())
    assert answer["error"]["code"] == "internal_error"


def test_an_engine_that_raises_at_eof_says_so_on_the_last_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = started()
    _broken_engine(session, monkeypatch, on_call=2)  # the start works, the shutdown raises
    out, err = io.BytesIO(), io.StringIO()
    assert serve(io.BytesIO(START + b"\n"), out, err, session=session) == 1
    answer, end = (json.loads(line) for line in out.getvalue().splitlines())
    assert "effects" in answer
    assert end == {
        "id": None,
        "shutdown": True,
        "error": {
            "line": 3,
            "code": "internal_error",
            "message": "the engine failed at the end of input (RuntimeError: boom)",
        },
    }
    assert "failed at the end of input" in err.getvalue()


# --- hostile input: every line gets a typed answer and changes nothing ----------------


def feed_all(session: Session, *lines: bytes) -> list[dict[str, Any]]:
    return [json.loads(session.feed(line)) for line in lines]


def started() -> Session:
    session = Session()
    assert "hello" in feed_all(session, HELLO)[0]
    return session


@pytest.mark.parametrize(
    "tag", [["start"], {"start": 1}, {}, [], 1, 1.5, True, None, "", "Start"], ids=repr
)
def test_any_json_value_as_the_event_type_is_an_error_line(tag: object) -> None:
    """``{"type": ["start"]}`` used to kill the server (an unhashable set lookup)."""
    session = started()
    line = dumps({"id": 1, "now": 0, "event": {"type": tag, "account": "a"}})
    answer, after = feed_all(session, line, START)
    assert answer["id"] == 1
    assert answer["error"]["code"] == "unknown_event_type"
    assert [e["type"] for e in after["effects"]][:2] == ["registered", "open_socket"]


P = stdio.PROTOCOL
_BIG = 2**53  # one past what every binding holds exactly
_HUGE = 18446744073709551000  # near 2**64: its timer deadline used to overflow the encoder


@pytest.mark.parametrize(
    ("line", "code", "fragment"),
    [
        (b'{"now": %d, "event": {"type": "health_check"}}' % _BIG, "bad_now", "2**53-1"),
        (b'{"now": %d, "event": {"type": "start", "account": "a"}}' % _HUGE, "bad_now", "outside"),
        (b'{"now": 123456789012345678901234567, "event": {"type": "health_check"}}', "bad_now", ""),
        (b'{"now": -1, "event": {"type": "health_check"}}', "bad_now", "non-negative"),
        (b'{"id": %d, "now": 1, "event": {"type": "health_check"}}' % _BIG, "bad_envelope", "id"),
        (b'{"id": %d, "now": 1, "event": {"type": "health_check"}}' % -_BIG, "bad_envelope", "id"),
        (
            b'{"now": 1, "event": {"type": "stop", "account": "a", "generation": %d}}' % _BIG,
            "bad_event",
            "stop.generation: integer 9007199254740992 is outside",
        ),
        (
            b'{"now": 1, "event": {"type": "stop", "account": "a", "generation": %d}}' % -_BIG,
            "bad_event",
            "stop.generation: integer -9007199254740992 is outside",
        ),
        (
            b'{"now": 1, "event": {"type": "reply_captured", "reply_id": "r", "account": "a",'
            b' "generation": 1, "chat": "c@g.us", "deadline_ms": %d}}' % _HUGE,
            "bad_event",
            "reply_captured.deadline_ms",
        ),
    ],
)
def test_integers_beyond_2_53_are_refused_at_decode_and_change_nothing(
    line: bytes, code: str, fragment: str
) -> None:
    session = started()
    answer, ok = feed_all(session, line, START)
    assert answer["error"]["code"] == code
    assert fragment in answer["error"]["message"]
    assert "effects" in ok  # the session, its clock and its engine are as before


@pytest.mark.parametrize(
    ("hello", "fragment"),
    [
        (b'{"hello": {"protocol": %d, "seed": %d}}' % (P, _BIG), "hello.seed: integer 900719925"),
        (b'{"hello": {"protocol": %d, "seed": %d}}' % (P, -_HUGE), "hello.seed"),
        (b'{"hello": {"protocol": %d, "seed": 1}}' % _HUGE, "hello.protocol"),
        (
            b'{"hello": {"protocol": %d, "seed": 1, "config": {"reply_deadline_ms": %d}}}'
            % (P, _BIG),
            "hello.config.reply_deadline_ms: integer 9007199254740992 is outside",
        ),
        (
            b'{"hello": {"protocol": %d, "seed": 1, "config": {"backoff": {"max_ms": %d}}}}'
            % (P, _HUGE),
            "hello.config.backoff.max_ms",
        ),
    ],
)
def test_hello_integers_beyond_2_53_are_refused(hello: bytes, fragment: str) -> None:
    answers, _ = run(hello, HELLO, START)
    assert error(answers[0]) == (1, "bad_hello")
    assert fragment in answers[0]["error"]["message"]
    assert answers[1]["hello"]["protocol"] == P


def test_the_largest_now_on_the_wire_reaches_the_engine_and_its_answer_encodes() -> None:
    """2**53-1 passes decode; whatever the engine answers (effects, or its own rejection of a
    now too close to the bound for its deadlines), the answer is one normal, encodable line."""
    session = started()
    line = b'{"now": %d, "event": {"type": "start", "account": "a"}}' % (2**53 - 1)
    (answer,) = feed_all(session, line)
    assert "error" not in answer
    assert answer["effects"]
    assert session.broken is None


def test_only_an_accepted_line_moves_the_clock() -> None:
    """A rejected or refused line changes nothing, so a huge ``now`` cannot brick the session."""
    session = started()
    answers = feed_all(
        session,
        b'{"id": 1, "now": 100, "event": {"type": "start", "account": "a"}}',
        # refused at decode: the clock stays at 100
        b'{"id": 2, "now": %d, "event": {"type": "health_check"}}' % _HUGE,
        # rejected by the engine (no such controller): the clock stays at 100
        b'{"id": 3, "now": 9000000000000000, "event": {"type": "stop", "account": "zz",'
        b' "generation": 7}}',
        b'{"id": 4, "now": 150, "event": {"type": "health_check"}}',  # accepted: clock -> 150
        b'{"id": 5, "now": 149, "event": {"type": "health_check"}}',
        b'{"id": 6, "now": 150, "event": {"type": "health_check"}}',
    )
    assert answers[1]["error"]["code"] == "bad_now"
    assert [e["type"] for e in answers[2]["effects"]] == ["rejected"]
    assert answers[2]["effects"][0]["code"] == "unknown_controller"
    assert answers[3] == {"id": 4, "effects": []}
    assert answers[4]["error"]["code"] == "now_backwards"
    assert "previous now 150" in answers[4]["error"]["message"]
    assert answers[5] == {"id": 6, "effects": []}
    assert session.rejected == 1


def _broken_engine(session: Session, monkeypatch: pytest.MonkeyPatch, on_call: int) -> None:
    """Make the session's engine raise on its ``on_call``-th event (a simulated engine bug)."""
    engine = session.engine
    assert engine is not None
    real = engine.handle
    calls: list[Event] = []

    def handle(event: Event, now: int) -> list[Effect]:
        calls.append(event)
        if len(calls) == on_call:
            raise RuntimeError("boom")
        return real(event, now)

    monkeypatch.setattr(engine, "handle", handle)


def test_an_engine_exception_breaks_the_session_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    session = started()
    _broken_engine(session, monkeypatch, on_call=2)
    out, err = io.BytesIO(), io.StringIO()
    lines = [
        START,
        b'{"id": 2, "now": 20, "event": {"type": "health_check"}}',  # the engine raises here
        b'{"id": 3, "now": 30, "event": {"type": "health_check"}}',
        HELLO,
        b"{not json",
        b"",
        b'{"id": 4, "now": 40, "event": {"type": "start", "account": "b"}}',
        b"x" * 200,  # too long
    ]
    code = serve(io.BytesIO(b"\n".join(lines) + b"\n"), out, err, session=session, max_line=100)
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(answers) == len(lines)
    assert "effects" in answers[0]
    assert answers[1]["id"] == 2
    assert answers[1]["error"]["code"] == "internal_error"
    assert "RuntimeError: boom" in answers[1]["error"]["message"]
    assert [a["id"] for a in answers[2:]] == [3, None, None, None, 4, None]  # echoed if readable
    for line_no, answer in enumerate(answers[2:], start=4):
        assert error(answer) == (line_no, "engine_broken")
        assert "failed on line 3 (RuntimeError: boom)" in answer["error"]["message"]
        assert "restart" in answer["error"]["message"]
    assert code == 1  # the host learns from the exit status too
    assert "failed on line 3" in err.getvalue()
    assert session.broken is not None


def test_answers_computed_in_one_read_survive_a_failed_encoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three lines arrive in one read; the second one's answer cannot be encoded."""
    session = started()
    engine = session.engine
    assert engine is not None
    real_handle = engine.handle
    seen: list[int] = []

    def handle(event: Event, now: int) -> list[Effect]:
        seen.append(now)
        return real_handle(event, now)

    def broken_encode(message: Event | Effect) -> dict[str, object]:
        out = encode(message)  # heirline.core.wire.encode, what the session calls
        if seen[-1] == 20:  # a value JSON cannot encode (a bug that once made one)
            out["n"] = {5}
        return out

    monkeypatch.setattr(engine, "handle", handle)
    monkeypatch.setattr(stdio, "encode", broken_encode)
    data = (
        START
        + b'\n{"id": 2, "now": 20, "event": {"type": "start", "account": "b"}}'
        + b'\n{"id": 3, "now": 30, "event": {"type": "health_check"}}\n'
    )
    out, err = io.BytesIO(), io.StringIO()
    assert serve(io.BytesIO(data), out, err, session=session) == 1
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(answers) == 3
    assert [e["type"] for e in answers[0]["effects"]][:2] == ["registered", "open_socket"]
    assert answers[1]["id"] == 2
    assert answers[1]["error"]["code"] == "internal_error"
    assert "not JSON serializable" in answers[1]["error"]["message"]
    assert answers[2]["id"] == 3
    assert answers[2]["error"]["code"] == "engine_broken"


def test_a_bug_outside_the_engine_is_answered_and_the_session_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A decoder bug changes nothing (the engine never saw the line): answer it, keep serving."""
    session = started()

    def broken_decode(data: object) -> object:
        raise KeyError("decoder bug")

    monkeypatch.setattr(stdio, "decode_event", broken_decode)
    (answer,) = feed_all(session, START)
    assert answer["error"]["code"] == "internal_error"
    assert "KeyError" in answer["error"]["message"]
    assert session.broken is None
    monkeypatch.undo()
    (answer,) = feed_all(session, START)
    assert [e["type"] for e in answer["effects"]][:2] == ["registered", "open_socket"]


# --- fuzz: arbitrary JSON values and arbitrary bytes ----------------------------------

_EDGE_INTS = [0, 1, -1, 2**53 - 1, 2**53, -(2**53), 2**63, 2**64 - 1, 2**64, 10**30]
_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(_EDGE_INTS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
_json_value = st.recursive(
    _json_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
# Small pools, so that generated events often name controllers and replies that exist.
_POOLS: dict[str, st.SearchStrategy[object]] = {
    "account": st.sampled_from(["a", "b"]),
    "generation": st.integers(0, 3),
    "reply_id": st.sampled_from(["r1", "r2"]),
    "attempt": st.integers(0, 3),
    "timer": st.sampled_from(
        [HEALTH, RetryTimer("a", 1), RetryTimer("b", 2), WatchdogTimer("a", 1), DeadlineTimer("r1")]
    ),
    "pn": st.sampled_from(["4915123456789@s.whatsapp.net", "4915000000001", "1@lid"]),
    "lid": st.sampled_from(["123456789012345@lid", "123456789012345", "x"]),
    "e164": st.none(),
    "status": st.sampled_from([None, 401, 408, 428, 440, 500, 515]),
    "deadline_ms": st.none(),
    "silent_ms": st.integers(0, 10**6),
}


@st.composite
def _event(draw: st.DrawFn) -> object:
    """A well-formed event, or one whose field (or type) is any JSON value."""
    cls = draw(st.sampled_from(EVENT_TYPES))
    names = {f.name for f in dataclasses.fields(cls)}
    event = draw(st.builds(cls, **{k: v for k, v in _POOLS.items() if k in names}))
    data: dict[str, object] = encode(event)
    how = draw(st.sampled_from(["as is", "as is", "field", "extra", "drop"]))
    if how == "field":
        data[draw(st.sampled_from(sorted(data)))] = draw(_json_value)
    elif how == "extra":
        data[draw(st.text(max_size=5))] = draw(_json_value)
    elif how == "drop":
        del data[draw(st.sampled_from(sorted(data)))]
    return data


@st.composite
def _line(draw: st.DrawFn) -> bytes:
    """One input line: any JSON value, or an envelope with any value in any position."""
    if draw(st.integers(0, 5)) == 0:
        return json.dumps(draw(_json_value)).encode()
    envelope: dict[str, object] = {}
    if draw(st.booleans()):
        envelope["id"] = draw(st.one_of(st.integers(0, 9), _json_value))
    if draw(st.integers(0, 9)):
        envelope["now"] = draw(st.one_of(st.integers(0, 10**7), st.integers(0, 10**7), _json_value))
    if draw(st.integers(0, 9)):
        envelope["event"] = draw(st.one_of(_event(), _event(), _json_value))
    if not draw(st.integers(0, 9)):
        envelope[draw(st.sampled_from(["hello", "x", "id"]))] = draw(_json_value)
    # json, not orjson: integers beyond 64 bits must reach the server too
    return json.dumps(envelope).encode()


def _one_answer(answer: bytes) -> dict[str, Any]:
    assert answer.endswith(b"\n")
    assert answer.count(b"\n") == 1
    body = json.loads(answer)
    assert isinstance(body, dict)
    assert len({"hello", "effects", "error"} & set(body)) == 1, body
    return body


@given(lines=st.lists(_line(), max_size=12))
def test_fuzz_every_json_line_gets_one_answer_and_error_lines_change_nothing(
    lines: list[bytes],
) -> None:
    """Any JSON in any position: one answer line each, the session survives, and a line
    answered with an error changes nothing -- a second session fed only the other lines
    gives byte-identical answers (engine state, clock and randomness all untouched)."""
    session = Session()
    first = session.feed(HELLO)
    answers = [session.feed(line) for line in lines]
    assert session.broken is None, session.broken
    bodies = [_one_answer(a) for a in answers]
    for body in bodies:
        if "error" in body:
            assert body["error"]["code"] in stdio.ERROR_CODES
            assert body["error"]["code"] not in ("internal_error", "engine_broken"), body
    kept = [(ln, a) for ln, a, b in zip(lines, answers, bodies, strict=True) if "error" not in b]
    twin = Session()
    assert twin.feed(HELLO) == first
    for line, answer in kept:
        if json.loads(answer).get("hello") is None:
            assert twin.feed(line) == answer


def test_fuzz_the_differential_check_sees_state_changes() -> None:
    """Sanity of the fuzz's oracle: dropping an *accepted* line does change later answers."""
    one, two = Session(), Session()
    one.feed(HELLO)
    two.feed(HELLO)
    one.feed(START)
    again = b'{"id": 1, "now": 10, "event": {"type": "start", "account": "a"}}'
    assert one.feed(again) != two.feed(again)


class _Chunks:
    """A reader that hands out ``data`` in the given chunk sizes (then the rest, then EOF)."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data = data
        self.sizes = sizes

    def read(self, size: int = -1, /) -> bytes:
        n = self.sizes.pop(0) if self.sizes else len(self.data)
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk


@given(
    hello=st.booleans(),
    data=st.binary(max_size=400),
    pieces=st.lists(st.sampled_from([b"\n", b"{", b"}", b'"', b"\xff", b" ", START]), max_size=8),
    sizes=st.lists(st.integers(1, 64), max_size=10),
)
def test_fuzz_arbitrary_bytes_get_one_answer_per_line(
    hello: bool, data: bytes, pieces: list[bytes], sizes: list[int]
) -> None:
    stream = (HELLO + b"\n" if hello else b"") + data + b"".join(pieces)
    out, err = io.BytesIO(), io.StringIO()
    assert serve(_Chunks(stream, sizes), out, err, max_line=64) == 0
    expected = stream.count(b"\n") + (1 if stream and not stream.endswith(b"\n") else 0)
    answers = out.getvalue()
    # ... and after a valid hello, the EOF line (a valid hello can only be the first line here)
    assert answers.count(b"\n") == expected + hello
    if hello:
        *lines, end = answers.splitlines()
        assert json.loads(end)["shutdown"] is True
        answers = b"".join(line + b"\n" for line in lines)
    bodies = [_one_answer(line + b"\n") for line in answers.splitlines()]
    codes = [body.get("error", {}).get("code") for body in bodies]
    assert "internal_error" not in codes
    assert "engine_broken" not in codes
    assert err.getvalue().startswith(f"heirline serve: {expected} lines")


@pytest.mark.parametrize(
    "runner",
    [
        "import runpy; runpy.run_module('heirline.adapters.stdio', run_name='__main__')",
        "import runpy; runpy.run_module('heirline.adapters.stdio', run_name='__main__', "
        "alter_sys=True)",
    ],
)
def test_the_server_runs_as_main_however_it_is_started(runner: str) -> None:
    """A host that wraps the server (the Node tests record its pid this way; profilers run it
    as ``__main__`` too) gets the same server as ``python -m``: the hello's dataclass has its
    annotations read in heirline.adapters.stdio, not in whatever module ``__main__`` is."""
    proc = subprocess.run(
        [sys.executable, "-c", runner],
        input=HELLO + b"\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert answers[0]["hello"]["protocol"] == 2
    assert answers[-1]["shutdown"] is True
