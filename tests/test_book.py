"""The reply book, unit by unit: the bounded memory of ended replies (its exact boundary and
its O(1) eviction), the references that keep a generation alive, shutdown, and the judging
of acks and failures against what was really sent."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import pytest

from heirline.core.book import ReplyBook
from heirline.core.controller import AttemptCounter, Controller
from heirline.core.delivery import KINDS, EndedReply, Reply, ReplyState, ReplyTrigger
from heirline.core.effects import (
    CancelTimer,
    Effect,
    Log,
    ReplyDelivered,
    ReplyFailed,
    StartTimer,
    Transmit,
)
from heirline.core.errors import InvalidTransition, Rejection
from heirline.core.identity import SelfIdentity
from heirline.core.lifecycle import LifecycleConfig
from heirline.core.routing import Route, RouteKind
from heirline.core.timers import DeadlineTimer

ACCOUNT = "acct"
PN = "4915123456789@s.whatsapp.net"
IDENTITY = SelfIdentity.parse(pn=PN)
CHAT = "4917000000001@s.whatsapp.net"
DEADLINE = 300_000

ORIGIN = Route(RouteKind.ORIGIN, "origin generation {generation}")
SUCCESSOR = Route(RouteKind.SUCCESSOR, "successor generation {generation}")
WAIT = Route(RouteKind.WAIT, "no successor registered yet")
REFUSE = Route(RouteKind.REFUSE, "origin never authenticated: no identity to match")


class Bench:
    """A book with a recording ``release`` and controllers of one account sharing a counter."""

    def __init__(
        self,
        remember_ended: int = 100,
        max_transmissions: int = 5,
        resendable_kinds: frozenset[str] = KINDS,
    ) -> None:
        self.released: list[Controller] = []
        self.book = ReplyBook(
            max_transmissions=max_transmissions,
            resendable_kinds=resendable_kinds,
            remember_ended=remember_ended,
            release=self.released.append,
        )
        self.attempts = AttemptCounter()
        self.generations = 0

    def controller(self) -> Controller:
        """A new generation of the account with an open socket."""
        self.generations += 1
        c = Controller(ACCOUNT, self.generations, LifecycleConfig(), self.attempts)
        c.start(0)
        c.opened(10)
        return c

    def capture(self, reply_id: str, origin: Controller, kind: str = "text") -> Reply:
        self.book.check_new(reply_id, kind, reply_id)
        effects = self.book.capture(reply_id, origin, CHAT, kind, reply_id, IDENTITY, DEADLINE)
        assert effects[0] == StartTimer(timer=DeadlineTimer(reply_id), deadline_ms=DEADLINE)
        return self.book.ready(reply_id, f"payload of {reply_id}")

    def send(self, reply: Reply, via: Controller) -> Transmit:
        """Route ``reply`` through ``via``'s open socket; the ``Transmit`` it produced."""
        route = ORIGIN if via is reply.origin else SUCCESSOR
        effects = self.book.apply(reply, route, via.generation, via)
        transmits = [e for e in effects if isinstance(e, Transmit)]
        assert len(transmits) == 1
        return transmits[0]

    def sent(self, reply_id: str, via: Controller | None = None) -> tuple[Reply, Transmit]:
        """Capture ``reply_id`` with a fresh-or-given origin and transmit it through it."""
        origin = via if via is not None else self.controller()
        reply = self.capture(reply_id, origin)
        return reply, self.send(reply, origin)


def _outcomes(effects: list[Effect]) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for e in effects:
        if isinstance(e, ReplyFailed):
            assert e.reply_id not in out, f"{e.reply_id} ended twice"
            out[e.reply_id] = (e.outcome, e.reason)
        elif isinstance(e, ReplyDelivered):
            assert e.reply_id not in out, f"{e.reply_id} ended twice"
            out[e.reply_id] = ("delivered", e.via)
    return out


# -- the memory of ended replies: exactly remember_ended of them --------------------------------


def _end_unacked(bench: Bench, reply_ids: list[str], via: Controller) -> dict[str, int]:
    """Transmit each reply through ``via``, then end it at its deadline (unknown, never acked).

    Returns reply id -> the socket attempt it went through.
    """
    attempts: dict[str, int] = {}
    for rid in reply_ids:
        _, transmit = bench.sent(rid, via)
        attempts[rid] = transmit.attempt
    for rid in reply_ids:
        assert _outcomes(bench.book.deadline(rid))[rid][0] == "unknown"
    return attempts


@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_with_remember_ended_n_the_n_most_recent_ended_replies_are_remembered(n: int) -> None:
    bench = Bench(remember_ended=n)
    via = bench.controller()
    ids = [f"r{i}" for i in range(n)]
    attempts = _end_unacked(bench, ids, via)
    # Exactly N ended: every one is remembered, the oldest included.
    for rid in ids:
        assert bench.book.ended(rid) == EndedReply(
            ReplyState.UNKNOWN, {attempts[rid]: 1}, None, rid
        )
    late = bench.book.acked("r0", via.generation, attempts["r0"])
    assert [(e.level, e.code) for e in late if isinstance(e, Log)] == [("warning", "late_ack")]
    assert len(late) == 1
    with pytest.raises(Rejection) as caught:
        bench.book.check_new("r0", "text", "r0")
    assert caught.value.code == "duplicate_reply"


@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_the_n_plus_first_most_recent_ended_reply_is_forgotten(n: int) -> None:
    bench = Bench(remember_ended=n)
    via = bench.controller()
    ids = [f"r{i}" for i in range(n + 1)]
    attempts = _end_unacked(bench, ids, via)
    assert bench.book.ended("r0") is None  # the (N+1)-th most recent
    for rid in ids[1:]:
        assert bench.book.ended(rid) is not None
        late = bench.book.acked(rid, via.generation, attempts[rid])
        assert [e.code for e in late if isinstance(e, Log)] == ["late_ack"]
    with pytest.raises(Rejection) as caught:
        bench.book.acked("r0", via.generation, attempts["r0"])
    assert caught.value.code == "unexpected_ack"
    with pytest.raises(Rejection) as unknown:
        bench.book.live("r0")
    assert unknown.value.code == "unknown_reply"
    with pytest.raises(Rejection) as ended:
        bench.book.live("r1")
    assert ended.value.code == "reply_ended"


def test_the_memory_forgets_in_the_order_replies_ended_not_the_order_they_were_captured() -> None:
    bench = Bench(remember_ended=2)
    via = bench.controller()
    for rid in ("a", "b", "c"):
        bench.sent(rid, via)
    for rid in ("c", "a", "b"):  # c ends first, so c is the one forgotten
        bench.book.deadline(rid)
    assert [rid for rid in ("a", "b", "c") if bench.book.ended(rid) is not None] == ["a", "b"]


class _CountingMemory(OrderedDict[str, EndedReply]):
    """An ordered dict that counts evictions from the front and full scans."""

    def __init__(self) -> None:
        super().__init__()
        self.front_pops = 0
        self.scans = 0

    def popitem(self, last: bool = True) -> tuple[str, EndedReply]:
        if not last:
            self.front_pops += 1
        return super().popitem(last)

    def __iter__(self) -> Iterator[str]:
        self.scans += 1
        return super().__iter__()


def test_eviction_is_one_pop_from_the_front_never_a_scan() -> None:
    """O(1) per ended reply: the memory is an OrderedDict and each reply past the bound
    evicts exactly the oldest with ``popitem(last=False)``, without walking the memory."""
    bench = Bench(remember_ended=50)
    assert type(bench.book._ended) is OrderedDict
    memory = _CountingMemory()
    bench.book._ended = memory
    via = bench.controller()
    _end_unacked(bench, [f"r{i:03}" for i in range(200)], via)
    assert len(memory) == 50
    assert memory.front_pops == 150
    assert memory.scans == 0
    assert list(dict(memory)) == [f"r{i:03}" for i in range(150, 200)]


# -- references: a generation is released when the last open reply naming it ends -----------


def test_refs_are_released_exactly_when_the_last_open_reply_naming_a_controller_ends() -> None:
    bench = Bench()
    origin, successor = bench.controller(), bench.controller()
    first = bench.capture("r1", origin)
    second = bench.capture("r2", origin)
    third = bench.capture("r3", origin)
    assert (origin.refs, successor.refs) == (3, 0)  # named as origin three times
    ack_attempt = bench.send(first, origin).attempt
    bench.send(second, successor)
    third_attempt = bench.send(third, successor).attempt
    assert (origin.refs, successor.refs) == (4, 2)  # r1 also in flight through its origin

    bench.book.acked("r1", origin.generation, ack_attempt)
    assert (origin.refs, successor.refs) == (2, 2)
    assert bench.released == []  # r2 and r3 still name the origin

    lost = bench.book.failed("r2", successor.generation, third_attempt, False, "closed")
    assert isinstance(lost, Reply)
    assert bench.book.lost(lost, False, "closed") is None  # it waits again
    assert (origin.refs, successor.refs) == (2, 1)
    assert bench.released == []  # r3 is still in flight through the successor

    bench.book.acked("r3", successor.generation, third_attempt)
    assert (origin.refs, successor.refs) == (1, 0)
    assert bench.released == [successor]  # no open reply names the successor any more

    bench.book.deadline("r2")
    assert origin.refs == 0
    assert bench.released == [successor, origin]  # each released once, when it reached 0


def test_a_refused_reply_releases_its_origin() -> None:
    bench = Bench()
    origin = bench.controller()
    reply = bench.capture("r1", origin)
    effects = bench.book.apply(reply, REFUSE, None, None)
    assert _outcomes(effects) == {"r1": ("refused", REFUSE.reason(None))}
    assert (origin.refs, bench.released) == (0, [origin])


def test_waiting_holds_no_carrier_and_is_indexed_in_order() -> None:
    bench = Bench()
    origin = bench.controller()
    replies = [bench.capture(rid, origin) for rid in ("b", "a", "c")]
    for reply in replies:
        effects = bench.book.apply(reply, WAIT, None, None)
        assert [e.code for e in effects if isinstance(e, Log)] == ["reply_waiting"]
    assert [r.reply_id for r in bench.book.waiting(ACCOUNT)] == ["b", "a", "c"]
    assert bench.book.waiting_accounts() == [ACCOUNT]
    assert origin.refs == 3
    # The same reason again is not logged again.
    assert bench.book.apply(replies[0], WAIT, None, None) == []
    bench.send(replies[1], origin)
    assert [r.reply_id for r in bench.book.waiting(ACCOUNT)] == ["b", "c"]
    assert bench.book.waiting("nobody") == []


# -- shutdown: every open reply ends exactly once --------------------------------------------


def test_shutdown_ends_every_open_reply_once_failed_or_unknown() -> None:
    bench = Bench()
    origin, successor = bench.controller(), bench.controller()
    bench.book.check_new("pending", "text", "pending")
    bench.book.capture("pending", origin, CHAT, "text", "pending", IDENTITY, DEADLINE)
    waiting = bench.capture("waiting", origin)
    bench.book.apply(waiting, WAIT, None, None)
    resent = bench.capture("resent", origin)  # sent once, lost after I/O began, waits again
    transmit = bench.send(resent, origin)
    bench.book.lost(resent, True, "socket closed")
    assert (resent.state, resent.io_ever_started) == (ReplyState.WAITING, True)
    flying = bench.capture("flying", origin)
    bench.send(flying, successor)
    refused = bench.capture("refused", origin)
    bench.book.apply(refused, REFUSE, None, None)  # already ended: not ended again

    effects = bench.book.shutdown("host stopping")

    unclear = "host stopping; a transmission may have reached the receiver without an ack"
    assert _outcomes(effects) == {
        "pending": ("failed", "host stopping before the reply was sent"),
        "waiting": ("failed", "host stopping before the reply was sent"),
        "resent": ("unknown", unclear),
        "flying": ("unknown", unclear),
    }
    cancelled = [e.timer for e in effects if isinstance(e, CancelTimer)]
    assert cancelled == [DeadlineTimer(r) for r in ("pending", "waiting", "resent", "flying")]
    assert bench.book.open_ids() == ()
    assert (bench.book.waiting_accounts(), bench.book.in_flight()) == ([], {})
    assert bench.book.through(ACCOUNT, transmit.attempt) == []
    assert bench.book.through(ACCOUNT, 2) == []
    assert (origin.refs, successor.refs) == (0, 0)
    assert sorted(c.generation for c in bench.released) == [1, 2]
    states = {rid: bench.book.ended(rid) for rid in ("pending", "waiting", "resent", "flying")}
    assert {rid: e.state if e else None for rid, e in states.items()} == {
        "pending": "failed",
        "waiting": "failed",
        "resent": "unknown",
        "flying": "unknown",
    }
    assert bench.book.shutdown("again") == []  # nothing is ended twice


def test_shutdown_of_an_empty_book_is_nothing() -> None:
    assert Bench().book.shutdown("bye") == []


# -- acks and failures are judged against what was really sent -------------------------------


def test_an_ack_delivers_once_and_a_second_ack_of_that_socket_is_a_duplicate() -> None:
    bench = Bench()
    reply, transmit = bench.sent("r1")
    effects = bench.book.acked("r1", transmit.generation, transmit.attempt)
    assert effects == [
        CancelTimer(timer=DeadlineTimer("r1")),
        ReplyDelivered(reply_id="r1", generation=transmit.generation, via="origin"),
    ]
    assert bench.book.ended("r1") == EndedReply(
        ReplyState.DELIVERED, {transmit.attempt: transmit.generation}, transmit.attempt, "r1"
    )
    with pytest.raises(Rejection) as caught:
        bench.book.acked("r1", transmit.generation, transmit.attempt)
    assert caught.value.code == "duplicate_ack"
    assert reply.state is ReplyState.DELIVERED


def test_an_ack_through_a_socket_that_never_carried_the_reply_is_unexpected() -> None:
    bench = Bench()
    _, transmit = bench.sent("r1")
    for generation, attempt in ((transmit.generation, transmit.attempt + 1), (9, 1)):
        with pytest.raises(Rejection) as caught:
            bench.book.acked("r1", generation, attempt)
        assert caught.value.code == "unexpected_ack"
    with pytest.raises(Rejection) as never:
        bench.book.acked("nobody", 1, 1)
    assert never.value.code == "unexpected_ack"
    with pytest.raises(Rejection) as failure:
        bench.book.failed("r1", transmit.generation, transmit.attempt + 1, True, "x")
    assert failure.value.code == "unexpected_failure"


def test_a_late_ack_of_an_earlier_transmission_delivers_a_waiting_reply() -> None:
    bench = Bench()
    origin, successor = bench.controller(), bench.controller()
    reply = bench.capture("r1", origin)
    first = bench.send(reply, origin)
    assert bench.book.lost(reply, True, "closed") is None
    second = bench.send(reply, successor)
    assert (second.transmission, second.message_id) == (2, first.message_id)
    stale = bench.book.failed("r1", first.generation, first.attempt, True, "late failure")
    assert isinstance(stale, list)  # not the reply to lose: that transmission is long over
    assert [e.code for e in stale if isinstance(e, Log)] == ["stale_failure"]
    effects = bench.book.acked("r1", first.generation, first.attempt)
    assert _outcomes(effects) == {"r1": ("delivered", "origin")}
    late = bench.book.acked("r1", second.generation, second.attempt)
    assert [e.code for e in late if isinstance(e, Log)] == ["late_ack"]


@pytest.mark.parametrize(
    ("kind", "io_started", "outcome"),
    [("text", True, None), ("text", False, None), ("read_receipt", True, "unknown")],
)
def test_a_lost_transmission_waits_again_unless_it_may_not_be_resent(
    kind: str, io_started: bool, outcome: str | None
) -> None:
    bench = Bench(resendable_kinds=frozenset({"text"}))
    origin = bench.controller()
    reply = bench.capture("r1", origin, kind)
    bench.send(reply, origin)
    ended = bench.book.lost(reply, io_started, "closed")
    if outcome is None:
        assert ended is None
        assert reply.state is ReplyState.WAITING
        assert reply.io_ever_started is io_started
    else:
        assert ended is not None
        assert _outcomes(ended)["r1"][0] == outcome
        assert "read_receipt is never resent" in _outcomes(ended)["r1"][1]


@pytest.mark.parametrize(("io_started", "outcome"), [(False, "failed"), (True, "unknown")])
def test_the_last_allowed_transmission_lost_ends_the_reply(io_started: bool, outcome: str) -> None:
    bench = Bench(max_transmissions=2)
    origin = bench.controller()
    reply = bench.capture("r1", origin)
    bench.send(reply, origin)
    assert bench.book.lost(reply, False, "closed") is None
    bench.send(reply, origin)
    ended = bench.book.lost(reply, io_started, "closed")
    assert ended is not None
    assert _outcomes(ended)["r1"][0] == outcome
    assert reply.transmissions == 2


# -- capture, readiness, deadlines -----------------------------------------------------------


def test_capture_rejections_name_the_reason() -> None:
    bench = Bench()
    origin = bench.controller()
    reply = bench.capture("r1", origin)
    assert bench.book.ready("r1", "changed") is reply  # still pending: the content may change
    assert reply.payload == "changed"
    bench.book.apply(reply, WAIT, None, None)
    for rid, kind, code in (("r1", "text", "duplicate_reply"), ("r2", "fax", "unknown_kind")):
        with pytest.raises(Rejection) as caught:
            bench.book.check_new(rid, kind, rid)
        assert caught.value.code == code
    with pytest.raises(Rejection) as not_pending:
        bench.book.ready("r1", "again")
    assert not_pending.value.code == "reply_not_pending"
    with pytest.raises(Rejection) as unknown:
        bench.book.ready("r9", "x")
    assert unknown.value.code == "unknown_reply"


@pytest.mark.parametrize(
    ("setup", "outcome", "reason"),
    [
        ("pending", "failed", "deadline passed before the reply was ready"),
        ("waiting", "failed", "deadline passed: no successor registered yet"),
        (
            "in_flight",
            "unknown",
            "deadline passed; a transmission may have reached the receiver without an ack",
        ),
    ],
)
def test_a_deadline_ends_an_open_reply_by_what_it_did(
    setup: str, outcome: str, reason: str
) -> None:
    bench = Bench()
    origin = bench.controller()
    bench.book.check_new("r1", "text", "r1")
    bench.book.capture("r1", origin, CHAT, "text", "r1", IDENTITY, DEADLINE)
    if setup != "pending":
        reply = bench.book.ready("r1", "p")
        if setup == "waiting":
            bench.book.apply(reply, WAIT, None, None)
        else:
            bench.send(reply, origin)
    effects = bench.book.deadline("r1")
    assert _outcomes(effects) == {"r1": (outcome, reason)}
    assert bench.book.deadline("r1") == []  # the timer raced the end: nothing more
    with pytest.raises(Rejection) as caught:
        bench.book.deadline("never")
    assert caught.value.code == "unknown_timer"


def test_an_ended_reply_cannot_move_again() -> None:
    bench = Bench()
    reply, transmit = bench.sent("r1")
    bench.book.acked("r1", transmit.generation, transmit.attempt)
    with pytest.raises(InvalidTransition):
        reply._set_state(ReplyTrigger.TRANSMIT)
    assert reply.state is ReplyState.DELIVERED


def test_a_message_id_is_never_carried_by_two_replies_while_either_is_remembered() -> None:
    """A deduplicating receiver would drop the second one while both are reported delivered."""
    bench = Bench(remember_ended=1)
    origin = bench.controller()
    bench.book.check_new("r1", "text", "m1")
    bench.book.capture("r1", origin, CHAT, "text", "m1", IDENTITY, DEADLINE)
    with pytest.raises(Rejection) as open_holder:
        bench.book.check_new("r2", "text", "m1")
    assert open_holder.value.code == "duplicate_message_id"
    assert "'r1'" in str(open_holder.value)
    bench.book.deadline("r1")  # ended, and remembered
    with pytest.raises(Rejection) as ended_holder:
        bench.book.check_new("r2", "text", "m1")
    assert ended_holder.value.code == "duplicate_message_id"
    bench.book.check_new("r3", "text", "m3")
    bench.book.capture("r3", origin, CHAT, "text", "m3", IDENTITY, DEADLINE)
    bench.book.deadline("r3")  # r1 falls out of the memory of one
    assert bench.book.ended("r1") is None
    bench.book.check_new("r2", "text", "m1")  # no longer known: accepted
