"""The invariant checker can disagree with the engine: one mutant per invariant.

Each test breaks the engine in one place (monkeypatched for that test only) and
shows that the checker -- or the explorer that drives it -- reports a violation,
so the checks of ``tests/invariants.py`` are not ones that pass whatever the
engine does. The identity mutants matter most: the checker judges identity from
the test world's hand-written ground truth, so a verdict bug that heirline's own
``compare()`` shares (and would therefore approve) is still caught.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from heirline.core import identity, routing
from heirline.core.accounts import Accounts
from heirline.core.book import ReplyBook
from heirline.core.controller import Controller
from heirline.core.effects import CloseSocket, Effect, Rejected, Transmit
from heirline.core.engine import Engine
from heirline.core.events import (
    Event,
    HealthCheck,
    ReplyCaptured,
    ReplyReady,
    Shutdown,
    SocketClosed,
    SocketOpened,
    Start,
    Stop,
    TimerFired,
    TransmitAcked,
    TransmitFailed,
    WatchdogSilence,
)
from heirline.core.identity import LidMapping, SelfIdentity, Verdict, VerdictKind, compare
from heirline.core.lifecycle import State
from heirline.core.registry import ChangeKind, RegistryChange, RegistryEntry
from heirline.core.routing import RouteKind
from heirline.core.timers import DeadlineTimer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from invariants import InvariantViolation
from test_explore import (
    ACCOUNT,
    ALICE_LID,
    ALICE_PN,
    VARIANTS,
    _check_rejected,
    explore,
    new_world,
    restore,
    root_world,
    snapshot,
)

ORIGIN = VARIANTS["origin"].fields
Handler = Callable[..., list[Effect]]


def _verdicts_say_same_for(monkeypatch: pytest.MonkeyPatch, kind: VerdictKind) -> None:
    """The mutant: the identity guard answers "same" wherever it should answer ``kind``.

    Patched where the engine and ``compare()`` both read it (the precomputed verdicts),
    and the routing tables rebuilt from them, as a bug in ``_verdict_for`` would do.
    """
    mutated = tuple(
        Verdict(VerdictKind.SAME, (*v.matched, *v.contradicted), (), f"mutant: {v.reason}")
        if v.kind is kind
        else v
        for v in identity.VERDICTS
    )
    monkeypatch.setattr(identity, "VERDICTS", mutated)
    monkeypatch.setattr(routing, "VERDICTS", mutated)
    for role, route in (("origin", RouteKind.ORIGIN), ("successor", RouteKind.SUCCESSOR)):
        monkeypatch.setitem(routing._THROUGH, role, routing._through_routes(role, route))


def test_under_the_identity_mutants_compare_approves_what_the_world_forbids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Why ground truth: a checker that asked compare() would share the engine's bug."""
    mapping = LidMapping.from_pairs([(ALICE_PN, ALICE_LID)])
    captured = SelfIdentity.parse(**ORIGIN)
    conflicting = SelfIdentity.parse(**VARIANTS["conflicting"].fields)
    relinked = SelfIdentity.parse(**VARIANTS["relinked"].fields)
    assert compare(captured, conflicting, mapping).kind is VerdictKind.CONFLICTING
    assert compare(captured, relinked, mapping).kind is VerdictKind.DIFFERENT
    _verdicts_say_same_for(monkeypatch, VerdictKind.CONFLICTING)
    _verdicts_say_same_for(monkeypatch, VerdictKind.DIFFERENT)
    assert compare(captured, conflicting, mapping).kind is VerdictKind.SAME
    assert compare(captured, relinked, mapping).kind is VerdictKind.SAME
    # The world: the reply is Alice's, both sockets are Bob's.
    assert VARIANTS["origin"].owner == "alice"
    assert VARIANTS["conflicting"].owner == VARIANTS["relinked"].owner == "bob"


@pytest.mark.parametrize("kind", [VerdictKind.CONFLICTING, VerdictKind.DIFFERENT])
def test_the_explorer_catches_a_guard_that_says_same_for_two_people(
    monkeypatch: pytest.MonkeyPatch, kind: VerdictKind
) -> None:
    # From the "learned" root: restart, the successor opens as Bob (relinked, or his number
    # with Alice's LID), the reply is ready. The unmutated engine refuses it.
    assert explore({"learned": 3}, hostile=False).deliveries > 0
    _verdicts_say_same_for(monkeypatch, kind)
    with pytest.raises(InvariantViolation, match=r"\[identity\].*really logged in as bob"):
        explore({"learned": 3}, hostile=False)


def _wrap(
    monkeypatch: pytest.MonkeyPatch,
    cls: type[object],
    name: str,
    mutant: Callable[[Handler, object, tuple[object, ...]], list[Effect]],
) -> None:
    """Replace ``cls.name`` with ``mutant(original, self, args)`` (for engines built later)."""
    original: Handler = getattr(cls, name)

    def wrapper(self: object, *args: object) -> list[Effect]:
        return mutant(original, self, args)

    monkeypatch.setattr(cls, name, wrapper)


def _engine(obj: object) -> Engine:
    assert isinstance(obj, Engine)
    return obj


def test_a_capture_with_a_stale_identity_is_an_untrue_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The old engine captured with the *open* socket's identity: after a close, nobody's."""

    def forget_last(original: Handler, self: object, args: tuple[object, ...]) -> list[Effect]:
        out = original(self, *args)
        engine = _engine(self)
        for ctl in list(engine._accounts.controllers()):
            ctl.last_identity = ctl.identity
        return out

    _wrap(monkeypatch, Engine, "_on_closed", forget_last)
    world = new_world()
    world.step(Start(account=ACCOUNT))
    world.step(SocketOpened(account=ACCOUNT, generation=1, attempt=1, **ORIGIN))
    world.step(SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=408))
    world.step(ReplyCaptured(reply_id="r1", account=ACCOUNT, generation=1, chat="c@g.us"))
    with pytest.raises(InvariantViolation, match=r"honest outcome.*really alice's"):
        world.step(ReplyReady(reply_id="r1"))


def test_a_stop_of_the_newest_generation_must_take_the_account_off_health_watch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def keep_watching(original: Handler, self: object, args: tuple[object, ...]) -> list[Effect]:
        out = original(self, *args)
        accounts = _engine(self)._accounts
        acct = accounts.get(ACCOUNT)
        assert acct is not None
        acct.watched = True
        accounts.place(acct)
        return out

    _wrap(monkeypatch, Engine, "_on_stop", keep_watching)
    world = new_world()
    world.step(Start(account=ACCOUNT))
    with pytest.raises(InvariantViolation, match=r"stop means stop: engine\.watched"):
        world.step(Stop(account=ACCOUNT, generation=1))


def test_a_late_open_must_be_closed_not_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    def reject_late(original: Handler, self: object, args: tuple[object, ...]) -> list[Effect]:
        out = original(self, *args)
        if [type(e) for e in out] == [CloseSocket]:
            return [Rejected(code="unknown_controller", message="mutant: late open rejected")]
        return out

    _wrap(monkeypatch, Engine, "_on_opened", reject_late)
    world = new_world()
    world.step(Start(account=ACCOUNT))
    world.step(Stop(account=ACCOUNT, generation=1))  # asks to close socket 1, still connecting
    with pytest.raises(InvariantViolation, match="a late open must be closed, not rejected"):
        world.step(SocketOpened(account=ACCOUNT, generation=1, attempt=1, **ORIGIN))


def test_a_resend_under_a_new_message_id_shows_the_reply_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def renumber(original: Handler, self: object, args: tuple[object, ...]) -> list[Effect]:
        return [
            dataclasses.replace(e, message_id=f"{e.message_id}#{e.transmission}")
            if isinstance(e, Transmit) and e.transmission > 1
            else e
            for e in original(self, *args)
        ]

    _wrap(monkeypatch, ReplyBook, "apply", renumber)
    world = root_world("captured")
    world.step(ReplyReady(reply_id="r1"))  # transmission 1 through the origin
    with pytest.raises(InvariantViolation, match=r"receiver: reply 'r1' shown 2 times"):
        # I/O may have started: a text is resent at once, through the same socket.
        world.step(
            TransmitFailed(reply_id="r1", generation=1, attempt=1, io_started=True, error="x")
        )


def test_two_replies_under_one_message_id_lose_one_at_the_receiver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The receiver model drops a second reply that reuses a message id (a lost reply).

    The engine refuses such a capture now; the mutant takes that refusal away again.
    """
    original = ReplyBook.check_new
    monkeypatch.setattr(
        ReplyBook, "check_new", lambda self, rid, kind, mid: original(self, rid, kind, rid)
    )
    world = root_world("captured")
    world.step(ReplyReady(reply_id="r1"))
    world.step(TransmitAcked(reply_id="r1", generation=1, attempt=1))
    world.step(
        ReplyCaptured(reply_id="r3", account=ACCOUNT, generation=1, chat="c", message_id="r1")
    )
    with pytest.raises(InvariantViolation, match="the receiver drops it as a duplicate"):
        world.step(ReplyReady(reply_id="r3"))


def test_a_capture_that_reuses_a_message_id_is_rejected() -> None:
    world = root_world("captured")
    out = world.step(
        ReplyCaptured(reply_id="r3", account=ACCOUNT, generation=1, chat="c", message_id="r1")
    )
    assert [type(e) for e in out] == [Rejected]


def test_a_generation_kept_once_nothing_names_it_breaks_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Accounts, "settle", lambda self, ctl: None)
    world = new_world()
    world.step(Start(account=ACCOUNT))
    with pytest.raises(InvariantViolation, match="bounded state: engine keeps generations"):
        world.step(Start(account=ACCOUNT))  # generation 1 is over and nothing names it


def test_a_stale_unregister_that_removes_the_successor_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unregister_anyway(self: RegistryEntry, account: str, generation: int) -> RegistryChange:
        self.current = None
        return RegistryChange(ChangeKind.UNREGISTERED, account, generation)

    monkeypatch.setattr(RegistryEntry, "unregister", unregister_anyway)
    world = new_world()
    world.step(Start(account=ACCOUNT))
    # Generation 2 registers, then its predecessor is stopped and unregisters: the
    # mutant lets that stale unregister remove generation 2.
    with pytest.raises(InvariantViolation, match=r"registry: stale Unregistered\(.*generation=1"):
        world.step(Start(account=ACCOUNT))


def test_a_transmission_through_a_closing_socket_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        Controller, "has_socket", property(lambda self: self.state in (State.OPEN, State.CLOSING))
    )
    world = root_world("captured")
    world.step(WatchdogSilence(account=ACCOUNT, generation=1, attempt=1, silent_ms=5_000))
    with pytest.raises(InvariantViolation, match=r"live socket: Transmit.*which is closing"):
        world.step(ReplyReady(reply_id="r1"))


def test_a_reply_left_open_at_shutdown_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ReplyBook, "shutdown", lambda self, reason: [])
    world = root_world("captured")
    with pytest.raises(InvariantViolation, match=r"ends once: \['r1', 'r2'\] still open"):
        world.step(Shutdown())


def test_a_reply_left_open_at_its_deadline_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ReplyBook, "deadline", lambda self, reply_id: [])
    world = root_world("captured")
    world.adapter.now = 4_000
    with pytest.raises(InvariantViolation, match="'r1' still open after its deadline fired"):
        world.step(TimerFired(timer=DeadlineTimer("r1")))


def test_an_input_accepted_after_shutdown_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    world = root_world("captured")
    world.step(Shutdown())
    monkeypatch.setattr(world.engine, "_shut_down", None)
    with pytest.raises(InvariantViolation, match=r"stop means stop: .* accepted after Shutdown"):
        world.step(HealthCheck())


def test_a_rejected_input_that_moves_the_clock_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    world = root_world("captured")
    blob = snapshot(restore(snapshot(world)))

    def leaky(original: Handler, self: object, args: tuple[object, ...]) -> list[Effect]:
        out = original(self, *args)
        _engine(self)._now = 1  # the mutant: every input moves the clock, rejected or not
        return out

    _wrap(monkeypatch, Engine, "handle", leaky)
    bad: Event = Stop(account=ACCOUNT, generation=9)
    with pytest.raises(AssertionError, match="changed the world"):
        _check_rejected(blob, [], bad, 0, "unknown_controller")
