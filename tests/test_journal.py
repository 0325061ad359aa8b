"""The durable journal: the engine's durable state survives in SQLite and comes back exactly.

Real SQLite files in a temporary directory. A run is journaled step by step
(``take_changes`` -> ``SqliteJournal.write``); at any cut, a fresh engine
restored from the file must hold the same open replies (the same records),
the same counters, the same memory of ended replies -- and then behave as
the journal promises: every socket is gone, in-flight replies wait to be
resent with the same message id or end unknown, waiting replies still wait
for a same-identity successor.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heirline.adapters.journal import SqliteJournal, config_fingerprint
from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.book import record
from heirline.core.engine import Engine, EngineConfig
from heirline.core.journal import (
    AccountRecord,
    EndedRecord,
    JournalError,
    ReplyRecord,
    Snapshot,
    from_json,
    to_json,
)
from heirline.core.timers import DeadlineTimer

PN = "4915123456789@s.whatsapp.net"
OTHER = "4917000000001@s.whatsapp.net"
CONFIG = EngineConfig(journal=True, resendable_kinds=frozenset({"text", "media"}))


class Journaled:
    """An engine whose every step is written to a SQLite journal, as an adapter would."""

    def __init__(self, path: Path, config: EngineConfig = CONFIG) -> None:
        self.engine = Engine(config, random=random.Random(1).random)
        self.journal = SqliteJournal(path, config)

    def step(self, event: ev.Event, now: int) -> list[fx.Effect]:
        out = self.engine.handle(event, now)
        self.journal.write(self.engine.take_changes())
        return out


def restored(path: Path, config: EngineConfig = CONFIG) -> tuple[Engine, list[fx.Effect]]:
    engine = Engine(config, random=random.Random(2).random)
    with SqliteJournal(path, config) as journal:
        out = engine.restore(journal.load())
    return engine, out


def open_records(engine: Engine) -> dict[str, ReplyRecord]:
    return {rid: record(r) for rid, r in engine._book._open.items()}


def busy_run(path: Path) -> Journaled:
    """One account; replies in every state: pending, waiting, in flight, delivered."""
    run = Journaled(path)
    run.step(ev.Start(account="a"), 0)
    run.step(ev.SocketOpened(account="a", generation=1, attempt=1, pn=PN), 10)
    for rid, kind in (("pending", "text"), ("flying", "text"), ("receipt", "read_receipt")):
        run.step(ev.ReplyCaptured(reply_id=rid, account="a", generation=1, chat="c", kind=kind), 20)
    run.step(ev.ReplyCaptured(reply_id="done", account="a", generation=1, chat="c"), 20)
    for rid in ("flying", "receipt", "done"):
        run.step(ev.ReplyReady(reply_id=rid, payload=f"body of {rid}"), 30)
    run.step(ev.TransmitAcked(reply_id="done", generation=1, attempt=1), 40)
    run.step(ev.MappingLearned(pn=PN, lid="123456789012345@lid"), 50)
    return run


def test_a_restored_engine_holds_exactly_what_the_journal_wrote(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    run = busy_run(path)
    before = open_records(run.engine)
    assert set(before) == {"pending", "flying", "receipt"}
    engine, _ = restored(path)
    assert engine.mapping.pairs == (("4915123456789", "123456789012345"),)
    after = open_records(engine)
    # The read receipt was in flight and may not be resent: it ended at restore (see below).
    assert set(after) == set(before) - {"receipt"}
    assert engine.reply_state("receipt") == "unknown"
    for rid, rec in after.items():
        rec = before[rid]
        # Identity, deadline, message id, payload and what was sent survive as they were.
        same = ("account", "origin", "chat", "kind", "message_id", "deadline_ms", "pn", "e164")
        assert [getattr(after[rid], f) for f in same] == [getattr(rec, f) for f in same], rid
        assert after[rid].sent == rec.sent
        assert after[rid].payload == rec.payload
        assert after[rid].transmissions == rec.transmissions
        # The identity is resolved through the restored mapping: the same keys route it.
        original, back = run.engine._book.get(rid), engine._book.get(rid)
        assert original is not None
        assert back is not None
        assert back.keys == original.keys
    # Every socket is gone: nothing is in flight any more, and no generation is live.
    assert engine.in_flight() == {}
    assert engine.current("a") is None
    assert engine.reply_state("done") == "delivered"  # remembered as ended


def test_recovery_treats_every_socket_as_gone(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    busy_run(path)
    engine, out = restored(path)
    # The read receipt was in flight and is never resent: unknown, at once, with a reason.
    failed = [e for e in out if isinstance(e, fx.ReplyFailed)]
    assert [(f.reply_id, f.outcome) for f in failed] == [("receipt", "unknown")]
    assert "never resent" in failed[0].reason
    # Every open reply's deadline timer is armed again.
    timers = {
        e.timer.reply_id
        for e in out
        if isinstance(e, fx.StartTimer) and isinstance(e.timer, DeadlineTimer)
    }
    assert timers == {"pending", "flying", "receipt"}
    # The text in flight waits and goes out again with the same message id, once a
    # same-identity successor opens -- through a newer generation than any before.
    start = engine.handle(ev.Start(account="a"), 100)
    assert fx.Registered(account="a", generation=2, predecessor=None) in start
    opened = engine.handle(ev.SocketOpened(account="a", generation=2, attempt=2, pn=PN), 110)
    sent = [e for e in opened if isinstance(e, fx.Transmit)]
    assert [(t.reply_id, t.message_id, t.transmission) for t in sent] == [("flying", "flying", 2)]


def test_a_waiting_reply_refuses_a_relinked_successor_after_recovery(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    busy_run(path)
    engine, _ = restored(path)
    engine.handle(ev.Start(account="a"), 100)
    out = engine.handle(ev.SocketOpened(account="a", generation=2, attempt=2, pn=OTHER), 110)
    outcomes = {e.reply_id: e.outcome for e in out if isinstance(e, fx.ReplyFailed)}
    # "flying" may have reached the receiver once already: unknown, not refused.
    assert outcomes == {"flying": "unknown"}
    assert not any(isinstance(e, fx.Transmit) for e in out)


def test_the_memory_of_ended_replies_survives(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    busy_run(path)
    engine, _ = restored(path)
    late = engine.handle(ev.TransmitAcked(reply_id="done", generation=1, attempt=1), 100)
    assert [e.code for e in late if isinstance(e, fx.Rejected)] == ["duplicate_ack"]
    reuse = engine.handle(
        ev.ReplyCaptured(reply_id="new", account="a", generation=1, chat="c", message_id="done"),
        100,
    )
    assert [e.code for e in reuse if isinstance(e, fx.Rejected)] == ["duplicate_message_id"]


def test_counters_only_grow_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    run = Journaled(path)
    run.step(ev.Start(account="a"), 0)
    run.step(ev.SocketOpened(account="a", generation=1, attempt=1, pn=PN), 1)
    run.step(ev.SocketClosed(account="a", generation=1, attempt=1, status=515), 5)  # attempt 2
    run.step(ev.Start(account="a"), 6)  # generation 2, attempt 3
    engine, _ = restored(path)
    out = engine.handle(ev.Start(account="a"), 10)
    assert fx.OpenSocket(account="a", generation=3, attempt=4) in out


def test_ended_replies_are_bounded_in_the_file_too(tmp_path: Path) -> None:
    config = EngineConfig(journal=True, remember_ended=3)
    path = tmp_path / "j.sqlite"
    run = Journaled(path, config)
    run.step(ev.Start(account="a"), 0)
    run.step(ev.SocketOpened(account="a", generation=1, attempt=1, pn=PN), 1)
    for i in range(10):
        at = 2 + i * 300_000
        run.step(ev.ReplyCaptured(reply_id=f"r{i}", account="a", generation=1, chat="c"), at)
        ended = run.step(ev.TimerFired(timer=DeadlineTimer(f"r{i}")), at + 300_000)
        assert [type(e) for e in ended] == [fx.CancelTimer, fx.ReplyFailed]
    assert run.journal.stats()["ended"] == 3
    engine, _ = restored(path, config)
    assert [engine.reply_state(f"r{i}") for i in range(10)] == [None] * 7 + ["failed"] * 3


# -- refusing what is not ours to read -------------------------------------------------------


def test_a_file_that_is_not_a_journal_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    before = path.read_bytes()
    with pytest.raises(JournalError, match="not a heirline journal, or corrupt"):
        SqliteJournal(path, CONFIG)
    assert path.read_bytes() == before


def test_another_sqlite_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    before = path.read_bytes()
    with pytest.raises(JournalError, match=r"not a heirline journal \(tables \['invoices'\]"):
        SqliteJournal(path, CONFIG)
    assert path.read_bytes() == before


def test_a_journal_from_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    SqliteJournal(path, CONFIG).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'format'")
    with pytest.raises(JournalError, match=r"written by journal format 99.*upgrade heirline"):
        SqliteJournal(path, CONFIG)


def test_a_journal_from_another_engine_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    SqliteJournal(path, CONFIG).close()
    other = EngineConfig(journal=True, max_transmissions=2)
    assert config_fingerprint(other) != config_fingerprint(CONFIG)
    with pytest.raises(JournalError, match="written by an engine with another configuration"):
        SqliteJournal(path, other)


def test_a_corrupt_record_is_named_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    busy_run(path).journal.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE replies SET body = '{\"record\": \"reply\"}' WHERE reply_id = 'pending'")
    with SqliteJournal(path, CONFIG) as journal, pytest.raises(JournalError, match="missing"):
        journal.load()


def test_durability_must_be_one_of_the_two_levels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        SqliteJournal(tmp_path / "j.sqlite", CONFIG, durability="eventually")


def test_restoring_into_an_engine_that_knows_the_account_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    busy_run(path).journal.close()
    engine = Engine(CONFIG, random=random.Random(3).random)
    engine.handle(ev.Start(account="a"), 0)
    with SqliteJournal(path, CONFIG) as journal, pytest.raises(JournalError, match="already known"):
        engine.restore(journal.load())


# -- records ---------------------------------------------------------------------------------

_text = st.text(max_size=8)
_num = st.integers(min_value=1, max_value=2**53 - 1)
_sent = st.lists(st.tuples(_num, _num), max_size=3).map(tuple)
RECORDS = st.one_of(
    st.builds(AccountRecord, account=_text, generation=st.integers(0, 2**53 - 1), attempt=_num),
    st.builds(ReplyRecord, sent=_sent, deadline_ms=_num, origin=_num, transmissions=_num),
    st.builds(EndedRecord, sent=_sent, acked_attempt=st.none() | _num),
)


@given(RECORDS)
def test_every_record_round_trips_through_json(
    rec: AccountRecord | ReplyRecord | EndedRecord,
) -> None:
    assert from_json(to_json(rec)) == rec


@given(st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(max_size=4)))
def test_anything_else_is_a_journal_error(data: dict[str, object]) -> None:
    try:
        from_json(data)
    except JournalError:
        return
    raise AssertionError(f"{data!r} was read as a record")


def test_a_snapshot_of_nothing_restores_nothing() -> None:
    engine = Engine(CONFIG, random=random.Random(4).random)
    assert engine.restore(Snapshot(None, (), (), (), ())) == []
    assert engine.open_replies() == ()
