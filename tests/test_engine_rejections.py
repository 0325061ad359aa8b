"""Every rejected input changes nothing -- not the clocks, not the random stream, not a counter.

For each rejection code the engine can answer with, one or more inputs that
provoke it, applied to an engine in a busy state; the whole engine (pickled,
random source included) must be byte for byte what it was, and the time of the
rejected input must not have become the engine's clock. Then hypothesis feeds
hostile values of the right types through ``Engine.handle``: it never raises,
and each answer is either effects without a rejection or exactly one
``Rejected`` that changed nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from engine_support import (
    ACCOUNT,
    GROUP,
    LID,
    OTHER_PN,
    PN,
    Run,
    codes,
    fingerprint,
    incident_config,
    of,
    queries,
    rejected,
)
from hypothesis import given
from hypothesis import strategies as st

from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.delivery import KINDS
from heirline.core.engine import Engine, EngineConfig
from heirline.core.health import HealthConfig
from heirline.core.identity import LidMapping
from heirline.core.message import message
from heirline.core.timers import HEALTH, DeadlineTimer, RetryTimer, Timer, WatchdogTimer

B = "b"
T = 3_000  # the last accepted time of the busy world
LATER = T + 1_000
#: 2**53-1 minus the longest deadline the default engine sets (5 min: replies, checks, watchdog).
MAX_NOW = 2**53 - 1 - 300_000


@message
class Bogus(ev.Event):
    """An event type the engine has no handler for."""


def busy(random_source: Callable[[], float] | None = None) -> Engine:
    """default: socket 1 open, r1 pending, r2 delivered, r3 in flight; b: generation 1
    forgotten, generation 2 connecting (socket 2). Last accepted time: ``T``."""
    engine = Engine(
        incident_config(),
        random=random_source or random.Random(7).random,
        mapping=LidMapping.from_pairs([(PN, LID)]),
    )
    script: list[tuple[int, ev.Event]] = [
        (0, ev.Start(account=ACCOUNT)),
        (1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN)),
        (2_000, ev.ReplyCaptured(reply_id="r1", account=ACCOUNT, generation=1, chat=GROUP)),
        (2_000, ev.ReplyCaptured(reply_id="r2", account=ACCOUNT, generation=1, chat=GROUP)),
        (2_000, ev.ReplyReady(reply_id="r2", payload="x")),
        (2_000, ev.TransmitAcked(reply_id="r2", generation=1, attempt=1)),
        (2_000, ev.ReplyCaptured(reply_id="r3", account=ACCOUNT, generation=1, chat=GROUP)),
        (2_000, ev.ReplyReady(reply_id="r3", payload="y")),
        (T, ev.Start(account=B)),
        (T, ev.Start(account=B)),
    ]
    for now, event in script:
        assert rejected(engine.handle(event, now)) is None, event
    assert engine.reply_state("r2") == "delivered"
    assert engine.in_flight() == {"r3": 1}
    assert engine.generations(B) == (2,)
    return engine


def in_backoff() -> Engine:
    engine = busy()
    engine.handle(ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=408), T)
    return engine


def shut() -> Engine:
    engine = busy()
    engine.handle(ev.Shutdown(), T)
    return engine


def always_one() -> float:
    return 1.0  # outside [0, 1): a broken random source


ROWS: list[tuple[str, Callable[[], Engine], ev.Event, int]] = [
    ("unknown_event", busy, Bogus(), LATER),
    ("bad_now", busy, ev.HealthCheck(), -1),
    ("bad_now", busy, ev.HealthCheck(), MAX_NOW + 1),
    ("bad_now", busy, ev.HealthCheck(), 2**64),
    ("now_backwards", busy, ev.HealthCheck(), T - 1),
    ("shut_down", shut, ev.Start(account=ACCOUNT), LATER),
    ("bad_identity", busy, ev.SocketOpened(account=B, generation=2, attempt=2, pn="x"), LATER),
    ("bad_identity", busy, ev.SocketOpened(account=B, generation=2, attempt=2, lid=PN), LATER),
    ("bad_identity", busy, ev.MappingLearned(pn="not a jid", lid=LID), LATER),
    ("mapping_conflict", busy, ev.MappingLearned(pn=OTHER_PN, lid=LID), LATER),
    (
        "invalid_transition",
        busy,
        ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN),
        LATER,
    ),
    (
        "bad_config",
        lambda: busy(always_one),
        ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=408),
        LATER,
    ),
    ("unknown_controller", busy, ev.Stop(account="nobody", generation=1), LATER),
    ("unknown_controller", busy, ev.SocketClosed(account=B, generation=3, attempt=1), LATER),
    ("unknown_controller", busy, ev.TimerFired(timer=RetryTimer(ACCOUNT, 2)), LATER),
    ("unknown_socket", busy, ev.SocketClosed(account=B, generation=2, attempt=3), LATER),
    ("unknown_socket", busy, ev.TimerFired(timer=WatchdogTimer(ACCOUNT, 9)), LATER),
    ("unknown_reply", busy, ev.ReplyReady(reply_id="nope"), LATER),
    ("reply_ended", busy, ev.ReplyReady(reply_id="r2"), LATER),
    (
        "duplicate_reply",
        busy,
        ev.ReplyCaptured(reply_id="r1", account=ACCOUNT, generation=1, chat=GROUP),
        LATER,
    ),
    (
        "duplicate_reply",
        busy,
        ev.ReplyCaptured(reply_id="r2", account=ACCOUNT, generation=1, chat=GROUP),
        LATER,
    ),
    (
        "unknown_kind",
        busy,
        ev.ReplyCaptured(reply_id="n", account=ACCOUNT, generation=1, chat=GROUP, kind="fax"),
        LATER,
    ),
    (
        "bad_deadline",
        busy,
        ev.ReplyCaptured(
            reply_id="n", account=ACCOUNT, generation=1, chat=GROUP, deadline_ms=LATER
        ),
        LATER,
    ),
    (
        "bad_deadline",
        busy,
        ev.ReplyCaptured(
            reply_id="n", account=ACCOUNT, generation=1, chat=GROUP, deadline_ms=2**53
        ),
        LATER,
    ),
    ("reply_not_pending", busy, ev.ReplyReady(reply_id="r3"), LATER),
    ("unexpected_ack", busy, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1), LATER),
    ("unexpected_ack", busy, ev.TransmitAcked(reply_id="r3", generation=1, attempt=2), LATER),
    ("duplicate_ack", busy, ev.TransmitAcked(reply_id="r2", generation=1, attempt=1), LATER),
    (
        "unexpected_failure",
        busy,
        ev.TransmitFailed(reply_id="r1", generation=1, attempt=1, io_started=True),
        LATER,
    ),
    ("unknown_timer", busy, ev.TimerFired(timer=DeadlineTimer("nope")), LATER),
    ("unknown_timer", busy, ev.TimerFired(timer=WatchdogTimer("nobody", 1)), LATER),
    (
        "generation_forgotten",
        busy,
        ev.ReplyCaptured(reply_id="n", account=B, generation=1, chat=GROUP),
        LATER,
    ),
    (
        "no_external_registry",
        busy,
        ev.RegistryAnswer(account=ACCOUNT, generation=1, granted=True),
        LATER,
    ),
]


def test_every_documented_rejection_code_is_covered() -> None:
    # bad_health_input cannot be provoked through handle(): the engine builds every health
    # snapshot itself, and its clock never goes backwards.
    documented = {
        "unknown_event", "bad_now", "now_backwards", "shut_down", "bad_identity",
        "mapping_conflict", "invalid_transition", "bad_config", "unknown_controller",
        "unknown_socket", "unknown_reply", "reply_ended", "duplicate_reply", "unknown_kind",
        "bad_deadline", "reply_not_pending", "unexpected_ack", "duplicate_ack",
        "unexpected_failure", "unknown_timer", "generation_forgotten", "no_external_registry",
    }  # fmt: skip
    assert {row[0] for row in ROWS} == documented


@pytest.mark.parametrize(
    ("code", "world", "event", "now"),
    ROWS,
    ids=[f"{code}-{type(event).__name__}-{i}" for i, (code, _, event, _) in enumerate(ROWS)],
)
def test_a_rejected_input_changes_nothing(
    code: str, world: Callable[[], Engine], event: ev.Event, now: int
) -> None:
    engine = world()
    accounts, replies = (ACCOUNT, B, "nobody"), ("r1", "r2", "r3", "n", "nope")
    before, asked = fingerprint(engine), queries(engine, accounts, replies)
    out = engine.handle(event, now)
    assert rejected(out) == code
    assert fingerprint(engine) == before
    assert queries(engine, accounts, replies) == asked
    # The rejected input's time did not become the clock: a time just after T is still fine
    # (unless the engine is shut down, where everything is refused).
    probe = engine.handle(ev.HealthCheck(), T + 1)
    assert rejected(probe) == ("shut_down" if engine.shut_down else None)


def test_the_largest_now_is_accepted_and_one_more_is_not() -> None:
    engine = Engine(random=random.Random(0).random)
    assert rejected(engine.handle(ev.HealthCheck(), MAX_NOW + 1)) == "bad_now"
    assert rejected(engine.handle(ev.HealthCheck(), MAX_NOW)) is None


def test_a_rejected_first_input_does_not_start_the_health_clock() -> None:
    config = EngineConfig(
        health=HealthConfig(connect_grace_ms=0, retry_grace_ms=None), health_timer=False
    )
    fresh = Engine(config, random=random.Random(0).random)
    engine = Engine(config, random=random.Random(0).random)
    out = engine.handle(ev.Stop(account=ACCOUNT, generation=1), 0)
    assert rejected(out) == "unknown_controller"
    assert fingerprint(engine) == fingerprint(fresh)
    # The health clock starts with the first accepted input, at 100 000: a check 50 s later
    # is inside the 60 s start-up grace. (From 0, it would be 150 s: a restart.)
    engine.handle(ev.Start(account=ACCOUNT), 100_000)
    engine.handle(ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=408), 100_010)
    out = engine.handle(ev.HealthCheck(), 150_000)
    assert codes(out) == ["health_hold"]
    (log,) = out
    assert isinstance(log, fx.Log)
    assert "start-up grace" in log.message


def test_a_known_mapping_pair_returns_nothing_and_changes_nothing() -> None:
    engine = busy()
    before = fingerprint(engine)
    # The same pair, as JIDs, as bare users, with a device suffix on the phone number.
    for pn, lid in ((PN, LID), ("4915123456789", "123456789012345"), (PN.replace("@", ":3@"), LID)):
        assert engine.handle(ev.MappingLearned(pn=pn, lid=lid), T) == []
        assert fingerprint(engine) == before


def test_a_known_mapping_pair_does_not_wake_waiting_replies() -> None:
    run = Run(incident_config(), mapping=LidMapping.from_pairs([(PN, LID)]))
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(1, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=OTHER_PN))
    run.at(2, ev.ReplyCaptured(reply_id="r", account=ACCOUNT, generation=1, chat=GROUP))
    run.at(3, ev.Start(account=ACCOUNT))
    run.at(4, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2, lid="999@lid"))
    waits = run.at(5, ev.ReplyReady(reply_id="r"))  # OTHER_PN vs 999@lid: not comparable yet
    assert run.engine.reply_state("r") == "waiting"
    assert codes(waits) == ["reply_waiting"]
    assert run.at(6, ev.MappingLearned(pn=PN, lid=LID)) == []
    assert run.engine.reply_state("r") == "waiting"
    # A new pair that settles it does wake the reply: the same user, sent through 2.
    woken = run.at(7, ev.MappingLearned(pn=OTHER_PN, lid="999@lid"))
    assert [(t.reply_id, t.generation, t.attempt) for t in of(fx.Transmit, woken)] == [("r", 2, 2)]


# ------------------------------------------------------------------ hostile input

ACCOUNTS = st.sampled_from([ACCOUNT, B, "", "nobody"]) | st.text(max_size=4)
SMALL = st.integers(min_value=-2, max_value=6)
ANY_INT = SMALL | st.integers() | st.sampled_from([2**53 - 1, 2**53, 2**63, 2**64, -(2**63)])
GENERATIONS = ANY_INT
JIDS = (
    st.none()
    | st.sampled_from([PN, LID, OTHER_PN, GROUP, "x@lid", "+4915123456789"])
    | st.text(max_size=6)
)
REPLIES = st.sampled_from(["r1", "r2", "r3", "n"]) | st.text(max_size=3)
TIMERS: st.SearchStrategy[Timer] = st.one_of(
    st.just(HEALTH),
    st.builds(RetryTimer, ACCOUNTS, GENERATIONS),
    st.builds(WatchdogTimer, ACCOUNTS, GENERATIONS),
    st.builds(DeadlineTimer, REPLIES),
)

EVENTS: st.SearchStrategy[ev.Event] = st.one_of(
    st.builds(ev.Start, account=ACCOUNTS),
    st.builds(ev.Stop, account=ACCOUNTS, generation=GENERATIONS, reason=st.text(max_size=3)),
    st.builds(
        ev.SocketOpened, account=ACCOUNTS, generation=GENERATIONS, attempt=ANY_INT, pn=JIDS,
        lid=JIDS, e164=JIDS,
    ),
    st.builds(
        ev.SocketClosed, account=ACCOUNTS, generation=GENERATIONS, attempt=ANY_INT,
        status=st.none() | st.sampled_from([401, 408, 440, 499, 515]) | st.integers(),
    ),
    st.builds(
        ev.Activity, account=ACCOUNTS, generation=GENERATIONS, attempt=ANY_INT,
        kind=st.sampled_from(ev.ActivityKind),
    ),
    st.builds(
        ev.WatchdogSilence, account=ACCOUNTS, generation=GENERATIONS, attempt=ANY_INT,
        silent_ms=ANY_INT,
    ),
    st.builds(ev.TimerFired, timer=TIMERS),
    st.builds(ev.HealthCheck),
    st.builds(ev.MappingLearned, pn=JIDS.filter(lambda j: j is not None), lid=JIDS.filter(
        lambda j: j is not None
    )),
    st.builds(
        ev.ReplyCaptured, reply_id=REPLIES, account=ACCOUNTS, generation=GENERATIONS,
        chat=st.sampled_from([GROUP]) | st.text(max_size=3),
        kind=st.sampled_from(sorted(KINDS)) | st.text(max_size=3),
        deadline_ms=st.none() | ANY_INT, message_id=st.none() | REPLIES,
    ),
    st.builds(ev.ReplyReady, reply_id=REPLIES, payload=st.text(max_size=3)),
    st.builds(ev.TransmitAcked, reply_id=REPLIES, generation=GENERATIONS, attempt=ANY_INT),
    st.builds(
        ev.TransmitFailed, reply_id=REPLIES, generation=GENERATIONS, attempt=ANY_INT,
        io_started=st.booleans(), error=st.text(max_size=3),
    ),
    st.builds(
        ev.RegistryAnswer, account=ACCOUNTS, generation=GENERATIONS, granted=st.booleans(),
        reason=st.text(max_size=3),
    ),
    st.builds(ev.Shutdown, reason=st.text(max_size=3)),
    st.builds(Bogus),
)  # fmt: skip


STATUSES = (None, 401, 408, 440, 499, 515)


def pick(data: st.DataObject, n: int) -> int:
    """An index in ``range(n)`` (``n`` > 0)."""
    return data.draw(st.integers(min_value=0, max_value=n - 1))


def draw_plausible(data: st.DataObject, engine: Engine) -> ev.Event:
    """An event about what the engine knows now: its generations, sockets and replies, with
    numbers around the real ones (one off, either way), so the inputs reach deep states."""
    sockets = [
        (account, g, engine.controller_socket(account, g) or 1)
        for account in (ACCOUNT, B)
        for g in engine.generations(account)
    ]
    replies = [*engine.open_replies(), "r1", "r2"]
    flights = sorted(engine.in_flight().items())
    choice = pick(data, 15)
    if choice == 0 or not sockets:
        return ev.Start(account=(ACCOUNT, B)[pick(data, 2)])
    if choice == 1:
        return ev.HealthCheck()
    if choice == 2:
        return ev.TimerFired(timer=HEALTH)
    if choice == 3:
        return ev.ReplyReady(reply_id=replies[pick(data, len(replies))])
    if choice == 4 and flights:
        reply_id, generation = flights[pick(data, len(flights))]
        attempt = 1 + pick(data, 3)
        if data.draw(st.booleans()):
            return ev.TransmitAcked(reply_id=reply_id, generation=generation, attempt=attempt)
        return ev.TransmitFailed(
            reply_id=reply_id, generation=generation, attempt=attempt,
            io_started=data.draw(st.booleans()),
        )  # fmt: skip
    account, g, socket = sockets[pick(data, len(sockets))]
    a = socket if data.draw(st.booleans()) else socket - 1 + pick(data, 3)
    if choice in (5, 6):
        return ev.SocketOpened(account=account, generation=g, attempt=a, pn=PN)
    if choice in (7, 8):
        status = STATUSES[pick(data, len(STATUSES))]
        return ev.SocketClosed(account=account, generation=g, attempt=a, status=status)
    if choice == 9:
        return ev.Activity(account=account, generation=g, attempt=a)
    if choice == 10:
        return ev.TimerFired(timer=WatchdogTimer(account, a))
    if choice == 11:
        return ev.TimerFired(timer=RetryTimer(account, g))
    if choice == 12:
        return ev.Stop(account=account, generation=g)
    if choice == 13:
        return ev.RegistryAnswer(account=account, generation=g, granted=data.draw(st.booleans()))
    reply_id = ("r1", "r2", "r3", "r4")[pick(data, 4)]
    return ev.ReplyCaptured(reply_id=reply_id, account=account, generation=g, chat=GROUP)


@given(st.booleans(), st.data())
def test_handle_never_raises_and_a_rejection_comes_alone_and_changes_nothing(
    external: bool, data: st.DataObject
) -> None:
    config = EngineConfig(external_registry=external)
    engine = Engine(config, random=random.Random(3).random)
    now = 0
    for _ in range(data.draw(st.integers(min_value=0, max_value=40))):
        # Mostly plausible events a little later; one in five hostile, one in ten at any time.
        hostile = pick(data, 5) == 0
        event = data.draw(EVENTS) if hostile else draw_plausible(data, engine)
        anytime = pick(data, 10) == 0
        at = data.draw(ANY_INT) if anytime else now + data.draw(st.integers(0, 400_000))
        before = fingerprint(engine)
        out = engine.handle(event, at)
        code = rejected(out)
        if code is None:
            now = at
        else:
            assert fingerprint(engine) == before, (code, event, at)


def test_a_second_close_of_a_socket_that_closed_already_is_late_and_changes_nothing() -> None:
    """A duplicate close is answered like every late fact, whatever state the controller is in."""
    engine, twin = in_backoff(), in_backoff()
    out = engine.handle(
        ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=408), LATER
    )
    assert codes(out) == ["late_close"]
    assert [type(e) for e in out] == [fx.Log]
    # Only the clock moved (a late fact is an accepted input): the same as an empty step.
    assert twin.handle(ev.Activity(account=ACCOUNT, generation=1, attempt=1), LATER) == []
    assert fingerprint(engine) == fingerprint(twin)
