"""The registry as a port: with ``external_registry=True`` the engine asks and waits for the answer.

``Start`` emits ``RegisterRequest`` and the new generation opens no socket
until a ``RegistryAnswer`` grants it; a refusal (or a later revocation) stops
it with the registry's reason. The default in-memory registry answers within
the same step, so nothing changes for it.
"""

from __future__ import annotations

from engine_support import ACCOUNT, GROUP, PN, Run, codes, fingerprint, of

from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.engine import EngineConfig
from heirline.core.lifecycle import State
from heirline.core.timers import HEALTH, DeadlineTimer

EXTERNAL = EngineConfig(external_registry=True)


def granted_and_open() -> Run:
    run = Run(EXTERNAL)
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(10, ev.RegistryAnswer(account=ACCOUNT, generation=1, granted=True))
    run.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    return run


def test_start_asks_the_registry_and_opens_nothing_until_granted() -> None:
    run = Run(EXTERNAL)
    out = run.at(0, ev.Start(account=ACCOUNT))
    assert out[:2] == [
        fx.RegisterRequest(account=ACCOUNT, generation=1),
        fx.StartTimer(timer=HEALTH, deadline_ms=300_000),
    ]
    assert codes(out) == ["registry_requested"]
    assert not of(fx.OpenSocket, out)
    assert not of(fx.Registered, out)
    assert run.engine.controller_state(ACCOUNT, 1) is State.IDLE
    assert run.engine.current(ACCOUNT) is None
    # Nothing happens while the registry thinks.
    assert not of(fx.OpenSocket, run.at(5_000, ev.HealthCheck()))
    granted = run.at(6_000, ev.RegistryAnswer(account=ACCOUNT, generation=1, granted=True))
    assert granted[:2] == [
        fx.Registered(account=ACCOUNT, generation=1, predecessor=None),
        fx.OpenSocket(account=ACCOUNT, generation=1, attempt=1),
    ]
    assert run.engine.current(ACCOUNT) == 1
    assert run.engine.controller_state(ACCOUNT, 1) is State.CONNECTING
    # A second grant (a lease renewal) changes nothing.
    renewed = run.at(7_000, ev.RegistryAnswer(account=ACCOUNT, generation=1, granted=True))
    assert codes(renewed) == ["registry_renewed"]
    assert len(renewed) == 1


def test_a_refusal_stops_the_generation_and_its_replies_keep_waiting_until_their_deadline() -> None:
    run = granted_and_open()
    run.at(1_500, ev.ReplyCaptured(reply_id="r1", account=ACCOUNT, generation=1, chat=GROUP))
    run.at(1_600, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=401))
    run.at(1_700, ev.ReplyReady(reply_id="r1", payload="x"))
    assert run.engine.reply_state("r1") == "waiting"
    out = run.at(2_000, ev.Start(account=ACCOUNT))
    assert of(fx.RegisterRequest, out) == [fx.RegisterRequest(account=ACCOUNT, generation=2)]
    refused = run.at(
        2_100,
        ev.RegistryAnswer(account=ACCOUNT, generation=2, granted=False, reason="held by host-b"),
    )
    assert not of(fx.OpenSocket, refused)
    assert not of(fx.Transmit, refused)
    assert not of(fx.ReplyFailed, refused)
    (stopped,) = [log for log in of(fx.Log, refused) if log.code == "lifecycle.stopped"]
    assert stopped.message == "Stopped: registry refused: held by host-b."
    assert run.engine.controller_state(ACCOUNT, 2) is State.STOPPED
    assert run.engine.reply_state("r1") == "waiting"
    ended = run.at(301_500, ev.TimerFired(timer=DeadlineTimer("r1")))
    assert of(fx.ReplyFailed, ended) == [
        fx.ReplyFailed(
            reply_id="r1", outcome="failed", reason="deadline passed: no successor registered yet"
        )
    ]


def test_a_refusal_without_a_reason_names_another_owner() -> None:
    run = Run(EXTERNAL)
    run.at(0, ev.Start(account=ACCOUNT))
    out = run.at(1, ev.RegistryAnswer(account=ACCOUNT, generation=1, granted=False))
    assert [log.message for log in of(fx.Log, out) if log.code == "lifecycle.stopped"] == [
        "Stopped: registry refused: another owner holds the account."
    ]


def test_a_grant_for_an_older_generation_after_a_newer_start_stops_the_older() -> None:
    run = Run(EXTERNAL)
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(10, ev.Start(account=ACCOUNT))
    assert run.engine.generations(ACCOUNT) == (1, 2)  # both waiting for the registry
    late = run.at(20, ev.RegistryAnswer(account=ACCOUNT, generation=1, granted=True))
    assert not of(fx.OpenSocket, late)
    assert not of(fx.Registered, late)
    assert [log.message for log in of(fx.Log, late) if log.code == "lifecycle.stopped"] == [
        "Stopped: a newer generation was started."
    ]
    assert run.engine.generations(ACCOUNT) == (2,)
    assert run.engine.current(ACCOUNT) is None
    granted = run.at(30, ev.RegistryAnswer(account=ACCOUNT, generation=2, granted=True))
    assert granted[:2] == [
        fx.Registered(account=ACCOUNT, generation=2, predecessor=None),
        fx.OpenSocket(account=ACCOUNT, generation=2, attempt=1),
    ]
    # An answer for generation 1 now is late.
    assert codes(run.at(40, ev.RegistryAnswer(account=ACCOUNT, generation=1, granted=True))) == [
        "late_registry_answer"
    ]


def test_the_old_generation_serves_until_the_new_one_is_granted() -> None:
    run = granted_and_open()
    run.at(1_500, ev.ReplyCaptured(reply_id="r1", account=ACCOUNT, generation=1, chat=GROUP))
    run.at(2_000, ev.Start(account=ACCOUNT))
    sent = run.at(2_100, ev.ReplyReady(reply_id="r1", payload="x"))
    assert [(t.generation, t.attempt) for t in of(fx.Transmit, sent)] == [(1, 1)]
    run.at(2_200, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))
    granted = run.at(3_000, ev.RegistryAnswer(account=ACCOUNT, generation=2, granted=True))
    assert of(fx.Registered, granted) == [
        fx.Registered(account=ACCOUNT, generation=2, predecessor=1)
    ]
    assert (
        fx.CloseSocket(
            account=ACCOUNT, generation=1, attempt=1, reason="superseded by generation 2"
        )
        in granted
    )
    assert of(fx.OpenSocket, granted) == [fx.OpenSocket(account=ACCOUNT, generation=2, attempt=2)]


def test_a_revocation_of_the_current_generation_stops_it_and_nothing_is_sent_after() -> None:
    run = granted_and_open()
    run.at(1_500, ev.ReplyCaptured(reply_id="r1", account=ACCOUNT, generation=1, chat=GROUP))
    run.at(1_500, ev.ReplyCaptured(reply_id="r2", account=ACCOUNT, generation=1, chat=GROUP))
    run.at(1_600, ev.ReplyReady(reply_id="r2", payload="y"))  # in flight on socket 1
    revoked = run.at(
        2_000,
        ev.RegistryAnswer(account=ACCOUNT, generation=1, granted=False, reason="lease lost"),
    )
    assert (
        fx.CloseSocket(
            account=ACCOUNT, generation=1, attempt=1, reason="registry refused: lease lost"
        )
        in revoked
    )
    assert fx.Unregistered(account=ACCOUNT, generation=1) in revoked
    assert run.engine.controller_state(ACCOUNT, 1) is State.STOPPED
    assert run.engine.current(ACCOUNT) is None
    assert run.engine.in_flight() == {}
    late = run.at(2_100, ev.ReplyReady(reply_id="r1", payload="x"))
    assert not of(fx.Transmit, late)
    assert run.engine.reply_state("r1") == "waiting"
    assert run.engine.reply_state("r2") == "waiting"
    assert [t.reply_id for t in run.transmits()] == ["r2"]  # only the one before the revocation


def test_the_in_memory_registry_answers_at_once_and_refuses_answers() -> None:
    run = Run()
    out = run.at(0, ev.Start(account=ACCOUNT))
    assert not of(fx.RegisterRequest, out)
    assert out[:2] == [
        fx.Registered(account=ACCOUNT, generation=1, predecessor=None),
        fx.OpenSocket(account=ACCOUNT, generation=1, attempt=1),
    ]
    before = fingerprint(run.engine)
    answer = run.at(10, ev.RegistryAnswer(account=ACCOUNT, generation=1, granted=False))
    assert codes(answer) == ["no_external_registry"]
    assert len(answer) == 1
    assert fingerprint(run.engine) == before
    assert run.engine.controller_state(ACCOUNT, 1) is State.CONNECTING
