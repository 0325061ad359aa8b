"""Durable sessions: ``serve --stdio --journal FILE`` and ``AsyncGateway(journal=FILE)``.

Real SQLite files, real sessions: what a session was told survives it, the
next session carries on from the journal and says what came back, a journal
that cannot be used is a clear error, and time goes on across a restart.
"""

from __future__ import annotations

import asyncio
import io
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from heirline.adapters import cli, jsonio
from heirline.adapters.aio import AsyncGateway
from heirline.adapters.channel import ChannelServer
from heirline.adapters.durable import Durable, JournalWriteError, journaled
from heirline.adapters.stdio import Session, build_config, serve
from heirline.core.engine import Engine, EngineConfig
from heirline.core.events import ReplyCaptured, ReplyReady, Start
from heirline.core.journal import JournalError

PN = "4915123456789@s.whatsapp.net"
OTHER = "4917000000001@s.whatsapp.net"
CONFIG = {"health_timer": False, "resendable_kinds": ["text", "media"]}
HELLO = jsonio.dumps({"hello": {"protocol": 2, "seed": 7, "config": CONFIG}})


def line(now: int | None, event: dict[str, Any], rid: int | None = None) -> bytes:
    body: dict[str, Any] = {"id": rid, "event": event}
    if now is not None:
        body["now"] = now
    return jsonio.dumps(body)


def answer(raw: bytes) -> dict[str, Any]:
    out = jsonio.loads(raw)
    assert isinstance(out, dict)
    return out


def effects(raw: bytes, kind: str | None = None) -> list[dict[str, Any]]:
    body = answer(raw)
    assert "effects" in body, body
    found: list[dict[str, Any]] = body["effects"]
    return [e for e in found if kind is None or e["type"] == kind]


def busy_session(path: Path) -> Session:
    """Account a, open as PN; 'waiting' captured (no payload), 'flying' and 'receipt' in flight."""
    s = Session(journal=str(path))
    hello = answer(s.feed(HELLO))["hello"]
    assert hello["restored"] == {"accounts": 0, "replies": 0, "ended": 0, "now": None}
    assert hello["effects"] == []
    s.feed(line(0, {"type": "start", "account": "a"}))
    s.feed(
        line(10, {"type": "socket_opened", "account": "a", "generation": 1, "attempt": 1, "pn": PN})
    )
    for rid, kind in (("waiting", "text"), ("flying", "text"), ("receipt", "read_receipt")):
        captured = {"reply_id": rid, "account": "a", "generation": 1, "chat": "c", "kind": kind}
        s.feed(line(20, {"type": "reply_captured", **captured}))
    for rid in ("flying", "receipt"):
        sent = effects(s.feed(line(30, {"type": "reply_ready", "reply_id": rid, "payload": rid})))
        assert [e["type"] for e in sent if e["type"] == "transmit"] == ["transmit"]
    return s


# -- the stdio session -----------------------------------------------------------------------


def test_a_new_session_carries_on_from_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    first = busy_session(path)
    assert first.end() == b""  # EOF ends nothing with a journal: no shutdown line
    second = Session(journal=str(path))
    hello = answer(second.feed(HELLO))["hello"]
    # The receipt was in flight and is never resent: it ends at the restore, with a reason.
    assert hello["restored"] == {"accounts": 1, "replies": 2, "ended": 1, "now": 30}
    outcomes = [
        (e["reply_id"], e["outcome"]) for e in hello["effects"] if e["type"] == "reply_failed"
    ]
    assert outcomes == [("receipt", "unknown")]
    timers = sorted(e["timer"] for e in hello["effects"] if e["type"] == "start_timer")
    assert timers == ["deadline/flying", "deadline/receipt", "deadline/waiting"]
    # The account starts again above every generation the journal holds; the same identity
    # gets the text that was in flight, with the same message id (the receiver dedups).
    start = effects(second.feed(line(40, {"type": "start", "account": "a"})), "open_socket")
    assert start == [{"type": "open_socket", "account": "a", "generation": 2, "attempt": 2}]
    opened = {"type": "socket_opened", "account": "a", "generation": 2, "attempt": 2, "pn": PN}
    sent = effects(second.feed(line(50, opened)), "transmit")
    assert [(t["reply_id"], t["message_id"], t["transmission"]) for t in sent] == [
        ("flying", "flying", 2)
    ]


def test_a_restart_right_after_a_restart_ends_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    busy_session(path).end()
    Session(journal=str(path)).feed(HELLO)  # ends the receipt, and writes that down
    third = answer(Session(journal=str(path)).feed(HELLO))["hello"]
    assert third["restored"] == {"accounts": 1, "replies": 2, "ended": 0, "now": 30}
    assert [e for e in third["effects"] if e["type"] == "reply_failed"] == []


def test_the_answer_goes_out_only_after_the_step_is_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    s = busy_session(path)
    # Read the file through another connection while the session is still open.
    with sqlite3.connect(path) as db:
        ids = {row[0] for row in db.execute("SELECT reply_id FROM replies")}
    assert ids == {"waiting", "flying", "receipt"}
    s.end()


def test_a_file_that_is_not_a_journal_refuses_the_hello(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"my notes\n" * 200)
    s = Session(journal=str(path))
    error = answer(s.feed(HELLO))["error"]
    assert error["code"] == "journal_error"
    assert "not a heirline journal, or corrupt" in error["message"]
    assert s.engine is None  # the session still waits for a hello it can take
    assert path.read_bytes() == b"my notes\n" * 200


def test_a_journal_of_another_config_refuses_the_hello(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    busy_session(path).end()
    other = jsonio.dumps({"hello": {"protocol": 2, "seed": 7, "config": {"max_transmissions": 2}}})
    error = answer(Session(journal=str(path)).feed(other))["error"]
    assert error["code"] == "journal_error"
    assert "another configuration" in error["message"]


def test_the_host_clock_must_go_on_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    busy_session(path).end()
    s = Session(journal=str(path))
    s.feed(HELLO)
    error = answer(s.feed(line(29, {"type": "start", "account": "a"}, rid=1)))["error"]
    assert error["code"] == "now_backwards"
    assert "before the journal's last now 30" in error["message"]
    assert effects(s.feed(line(30, {"type": "start", "account": "a"})), "registered")


def test_the_monotonic_clock_resumes_at_the_journals_now(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    busy_session(path).end()
    ticks = iter([5_000_000, 5_000_000 + 70])  # another process: another origin entirely
    s = Session(journal=str(path), monotonic_ms=lambda: next(ticks))
    hello = jsonio.dumps(
        {"hello": {"protocol": 2, "seed": 7, "clock": "monotonic", "config": CONFIG}}
    )
    s.feed(hello)
    started = answer(s.feed(line(None, {"type": "start", "account": "a"})))
    assert started["now"] == 30 + 70  # the journal's now, plus the time since the hello


def test_a_failed_write_breaks_the_session_and_withholds_the_effects(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    s = busy_session(path)
    assert s.durable is not None
    s.durable.journal._db.close()  # the disk went away under it
    failed = answer(
        s.feed(line(40, {"type": "reply_ready", "reply_id": "waiting", "payload": "x"}))
    )
    assert failed["error"]["code"] == "journal_error"
    assert "effects were withheld" in failed["error"]["message"]
    later = answer(s.feed(line(50, {"type": "start", "account": "b"})))["error"]
    assert later["code"] == "engine_broken"
    assert "the journal failed on line" in later["message"]
    # The journal holds the state before the failed step: the payload never arrived.
    journal = Durable.open(path, build_config(CONFIG)).journal
    waiting = [r for r in journal.load().replies if r.reply_id == "waiting"]
    journal.close()
    assert [(r.payload, r.in_flight) for r in waiting] == [(None, False)]


def test_eof_with_a_journal_keeps_every_reply(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    lines = [HELLO, line(0, {"type": "start", "account": "a"})]
    lines.append(
        line(5, {"type": "socket_opened", "account": "a", "generation": 1, "attempt": 1, "pn": PN})
    )
    lines.append(
        line(
            9,
            {
                "type": "reply_captured",
                "reply_id": "r",
                "account": "a",
                "generation": 1,
                "chat": "c",
            },
        )
    )
    out, err = io.BytesIO(), io.StringIO()
    session = Session(journal=str(path))
    assert serve(io.BytesIO(b"\n".join(lines) + b"\n"), out, err, session=session) == 0
    answers = out.getvalue().splitlines()
    assert len(answers) == 4  # one per line, and no end-of-input line
    assert all("shutdown" not in answer(a) for a in answers)
    again = answer(Session(journal=str(path)).feed(HELLO))["hello"]
    assert again["restored"]["replies"] == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--stdio", "--durability", "power"], "--durability needs --journal FILE"),
        (["serve", "--stdio", "--journal", "/nonexistent/dir/j.sqlite"], "does not exist"),
        (["serve", "--stdio", "--journal", "."], "is a directory"),
    ],
)
def test_bad_journal_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


# -- the Durable helper ----------------------------------------------------------------------


def test_restore_is_once_and_a_write_error_says_what_to_do(tmp_path: Path) -> None:
    config = journaled(EngineConfig())
    durable = Durable.open(tmp_path / "j.sqlite", config)
    engine = Engine(config, random=random.Random(1).random)
    restored, out = durable.restore(engine)
    assert restored.empty
    assert out == []
    with pytest.raises(RuntimeError, match="already restored"):
        durable.restore(engine)
    engine.handle(Start(account="a"), 0)
    durable.journal._db.close()
    with pytest.raises(JournalWriteError, match="restart on the journal"):
        durable.commit(engine)
    assert issubclass(JournalWriteError, JournalError)


# -- the asyncio runtime ---------------------------------------------------------------------


def test_the_asyncio_gateway_carries_a_reply_across_a_restart(tmp_path: Path) -> None:
    """A reply in flight when the gateway stops without ending it is delivered by the next
    gateway on the same journal: same identity, same message id, one copy kept."""
    path = tmp_path / "j.sqlite"
    config = EngineConfig(health_timer=False)

    async def main() -> tuple[Any, ...]:
        async with ChannelServer() as server:
            server.add_account("a", pn=PN)
            server.set_ack_delay(60_000, "a")  # the first transmission is never acked
            gw = AsyncGateway.over_channel(
                server.port, config, random=random.Random(1).random, journal=path, speed=20
            )
            await gw.start()
            assert gw.restored is not None
            assert gw.restored.empty
            gw.feed(Start(account="a"))
            assert await gw.wait_until(lambda: gw.engine.controller_state("a", 1) == "open", 5_000)
            gw.feed(ReplyCaptured(reply_id="r", account="a", generation=1, chat="c@g.us"))
            gw.feed(ReplyReady(reply_id="r", payload="hello"))
            for _ in range(500):  # the receiver has the first copy (bounded: 5 s)
                if server.ledger.total == 1:
                    break
                await asyncio.sleep(0.01)
            stopped_at = gw.now_ms()
            await gw.aclose(end_replies=False)  # as after a crash: nothing ends
            assert "r" not in gw.outcomes
            server.set_ack_delay(0, "a")
            gw2 = AsyncGateway.over_channel(
                server.port, config, random=random.Random(2).random, journal=path, speed=20
            )
            await gw2.start()
            restored = gw2.restored
            resumed = gw2.now_ms()
            gw2.feed(Start(account="a"))
            assert await gw2.wait_until(lambda: "r" in gw2.outcomes, 5_000)
            outcome = gw2.outcomes["r"]
            sent = [(t.generation, t.message_id, t.transmission) for t in gw2.transmissions]
            await gw2.aclose()
            summary = server.ledger.summary()
        return restored, stopped_at, resumed, outcome, sent, summary

    restored, stopped_at, resumed, outcome, sent, summary = asyncio.run(
        asyncio.wait_for(main(), 30)
    )
    assert restored.replies == 1
    assert restored.now >= stopped_at - 1_000  # the journal's clock: the last step's now
    assert resumed >= restored.now  # engine time goes on from the journal's clock
    assert outcome.outcome == "delivered"
    assert sent == [(2, "r", 2)]
    assert summary.total == 1  # one message kept, the resend suppressed as a duplicate
    assert summary.duplicates_suppressed == 1
    assert summary.cross_identity == ()


def test_the_asyncio_gateway_refuses_a_journal_it_cannot_use(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a journal\n" * 100)

    async def main() -> None:
        gw = AsyncGateway.over_channel(1, random=random.Random(1).random, journal=path)
        await gw.start()

    with pytest.raises(JournalError, match="not a heirline journal"):
        asyncio.run(main())
    assert path.read_text() == "not a journal\n" * 100
