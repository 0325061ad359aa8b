"""A fact touches only what it concerns: the health sweep, a mapping pair, a reconnect.

docs/health.md and docs/identity.md promise that the engine's per-event cost
grows with what the event is about, not with the number of accounts: a health
sweep evaluates only the accounts that may need attention, a new PN<->LID pair
re-resolves only the identities it can complete, and a socket that shows a
recently seen identity parses nothing. Each test counts the work itself (the
policy evaluations, resolutions, parses), not the time.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from engine_support import Run, of

from heirline.core import book, sockets
from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.engine import EngineConfig
from heirline.core.errors import MappingConflictError
from heirline.core.health import ControllerSnapshot, HealthDecision, HealthMonitor
from heirline.core.identity import (
    KeyIndex,
    LidMapping,
    MappingTable,
    MappingView,
    SelfIdentity,
    resolve,
)
from heirline.core.lifecycle import LifecycleConfig

MINUTE = 60_000
INBOUND = ev.ActivityKind.INBOUND
N = 50  # accounts; every count below is independent of it

Resolve = Callable[[SelfIdentity, MappingView], SelfIdentity]


def pn(i: int) -> str:
    return f"49151000{i:05d}@s.whatsapp.net"


def lid(i: int) -> str:
    return f"{900_000 + i}@lid"


def booted(n: int, *, pn_only: frozenset[int] = frozenset()) -> Run:
    """``n`` accounts, each open on its first socket: PN and LID shown, or PN only."""
    run = Run(EngineConfig(health_timer=False, lifecycle=LifecycleConfig(watchdog_ms=None)))
    for i in range(n):
        run.at(0, ev.Start(account=f"a{i}"))
    for i in range(n):
        shown = {"pn": pn(i)} if i in pn_only else {"pn": pn(i), "lid": lid(i)}
        run.at(10, ev.SocketOpened(account=f"a{i}", generation=1, attempt=1, **shown))
    assert of(fx.Rejected, run.effects) == []
    assert run.engine.watched() == tuple(sorted(f"a{i}" for i in range(n)))
    return run


# ---------------------------------------------------------------- the health sweep


def count_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    evaluate = HealthMonitor.evaluate

    def counting(self: HealthMonitor, snap: ControllerSnapshot, now: int) -> HealthDecision:
        seen.append(snap.account)
        return evaluate(self, snap, now)

    monkeypatch.setattr(HealthMonitor, "evaluate", counting)
    return seen


def test_a_sweep_of_healthy_open_accounts_evaluates_none(monkeypatch: pytest.MonkeyPatch) -> None:
    run = booted(N)
    seen = count_evaluations(monkeypatch)
    assert run.at(5 * MINUTE, ev.HealthCheck()) == []
    assert seen == []


def test_a_sweep_evaluates_exactly_the_accounts_that_may_need_attention(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = booted(N)
    inbound = ev.Activity(account="a3", generation=1, attempt=1, kind=INBOUND)
    # a3 gets a message every 5 min; everyone else is quiet. a7 loses its socket at 20 min.
    for minute in (1, 6, 11, 16):
        run.at(minute * MINUTE, inbound)
    run.at(20 * MINUTE, ev.SocketClosed(account="a7", generation=1, attempt=1, status=408))
    seen = count_evaluations(monkeypatch)
    # At 20 min nobody is past the 30 min stale limit: only a7 (in backoff) is looked at.
    run.at(20 * MINUTE, ev.HealthCheck())
    assert seen == ["a7"]
    seen.clear()
    for minute in (21, 26, 31, 36):
        run.at(minute * MINUTE, inbound)
    # At 40 min every quiet open account is past it too: due, in name order; a3 is not looked
    # at. (a7's retry, never fired here, is overdue beyond the grace: it is restarted too.)
    out = run.at(40 * MINUTE, ev.HealthCheck())
    assert seen == sorted(f"a{i}" for i in range(N) if i != 3)
    restarted = {e.account for e in of(fx.Log, out) if e.code == "health_restart"}
    assert restarted == {f"a{i}" for i in range(N) if i != 3}
    assert of(fx.Rejected, run.effects) == []


def test_a_stale_account_is_due_at_the_front_whatever_the_order_it_opened_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = booted(N)
    # Everyone but a0 and a1 shows an inbound message at 10 min: only those two go stale.
    for i in range(2, N):
        run.at(10 * MINUTE, ev.Activity(account=f"a{i}", generation=1, attempt=1, kind=INBOUND))
    seen = count_evaluations(monkeypatch)
    run.at(35 * MINUTE, ev.HealthCheck())
    assert seen == ["a0", "a1"]

    # --------------------------------------------------------------- a mapping pair
    assert of(fx.Rejected, run.effects) == []


def count_resolutions(monkeypatch: pytest.MonkeyPatch) -> list[SelfIdentity]:
    """Record every identity the engine resolves (in its socket and its reply-book code)."""
    seen: list[SelfIdentity] = []

    def counting(resolve: Resolve) -> Resolve:
        def wrapped(identity: SelfIdentity, mapping: MappingView) -> SelfIdentity:
            seen.append(identity)
            return resolve(identity, mapping)

        return wrapped

    # Both modules call the one resolve() of heirline.core.identity, under their own name.
    for module in (sockets, book):
        monkeypatch.setattr(module, "resolve", counting(resolve))
    return seen


def test_a_pair_re_resolves_only_the_identities_it_can_complete(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = booted(N, pn_only=frozenset({4}))
    run.at(20, ev.ReplyCaptured(reply_id="r4", account="a4", generation=1, chat="c@g.us"))
    seen = count_resolutions(monkeypatch)
    # A pair nobody holds half of: nothing to re-resolve.
    assert run.at(30, ev.MappingLearned(pn="4917000000001", lid="555")) == []
    assert seen == []
    # a4's pair: its controller's identity and its reply's captured one, nothing else.
    run.at(40, ev.MappingLearned(pn=pn(4), lid=lid(4)))
    assert len(seen) == 2
    assert {str(identity.pn) for identity in seen} == {pn(4)}
    # Complete now: the same pair again, or another of the accounts' own pairs, touches nobody.
    seen.clear()
    assert run.at(50, ev.MappingLearned(pn=pn(4), lid=lid(4))) == []
    run.at(60, ev.MappingLearned(pn=pn(5), lid=lid(5)))
    assert seen == []
    assert of(fx.Rejected, run.effects) == []


def test_the_completed_identity_is_what_routing_sees() -> None:
    # a0 shows only its phone number; its reply was captured that way. A successor that shows
    # only the LID is "not comparable" until the pair arrives, then "same".
    run = booted(2, pn_only=frozenset({0}))
    run.at(20, ev.ReplyCaptured(reply_id="r", account="a0", generation=1, chat="c@g.us"))
    run.at(30, ev.SocketClosed(account="a0", generation=1, attempt=1, status=401))
    run.at(40, ev.Start(account="a0"))
    run.at(50, ev.SocketOpened(account="a0", generation=2, attempt=2, lid=lid(0)))
    assert of(fx.Transmit, run.at(60, ev.ReplyReady(reply_id="r", payload="x"))) == []
    (sent,) = of(fx.Transmit, run.at(70, ev.MappingLearned(pn=pn(0), lid=lid(0))))
    assert (sent.generation, sent.attempt) == (2, 2)
    assert of(fx.Rejected, run.effects) == []


# ---------------------------------------------------------- the parse cache


def test_a_reconnect_with_a_recent_identity_parses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = booted(1)
    parsed: list[tuple[str | None, str | None, str | None]] = []
    parse = SelfIdentity.parse

    def counting(
        pn: str | None = None, lid: str | None = None, e164: str | None = None
    ) -> SelfIdentity:
        parsed.append((pn, lid, e164))
        return parse(pn=pn, lid=lid, e164=e164)

    monkeypatch.setattr(SelfIdentity, "parse", staticmethod(counting))
    seen = count_resolutions(monkeypatch)
    for attempt in range(1, 11):  # ten reconnects (515: at once), all showing the same identity
        run.at(
            10 * attempt, ev.SocketClosed(account="a0", generation=1, attempt=attempt, status=515)
        )
        run.at(
            10 * attempt + 5,
            ev.SocketOpened(account="a0", generation=1, attempt=attempt + 1, pn=pn(0), lid=lid(0)),
        )
    assert parsed == []
    assert seen == []
    # A new pair (about someone else) invalidates the resolutions, not the parse.
    run.at(200, ev.MappingLearned(pn="4917000000001", lid="555"))
    run.at(210, ev.SocketClosed(account="a0", generation=1, attempt=11, status=515))
    run.at(215, ev.SocketOpened(account="a0", generation=1, attempt=12, pn=pn(0), lid=lid(0)))
    assert parsed == []
    assert len(seen) == 1
    # An identity never seen is parsed once.
    run.at(220, ev.SocketClosed(account="a0", generation=1, attempt=12, status=515))
    run.at(225, ev.SocketOpened(account="a0", generation=1, attempt=13, pn=pn(1)))
    assert parsed == [(pn(1), None, None)]
    assert of(fx.Rejected, run.effects) == []


# ---------------------------------------------------------- MappingTable, KeyIndex


def test_the_mapping_table_adds_one_pair_at_a_time_with_the_mapping_rules() -> None:
    table = MappingTable(LidMapping.from_pairs([("491510000001", "1")]))
    first = table.snapshot()
    assert table.snapshot() is first  # built once per change
    assert table.add("491510000002@s.whatsapp.net", "2@lid") == ("491510000002", "2")
    assert table.add("491510000002", "2") is None  # known: nothing changes
    with pytest.raises(MappingConflictError, match=r"pair \(pn=491510000002, lid=2\)"):
        table.add("491510000002", "3")
    with pytest.raises(MappingConflictError, match=r"pair \(pn=491510000001, lid=1\)"):
        table.add("491510000009", "1")
    snap = table.snapshot()
    assert snap is not first
    assert snap == LidMapping.from_pairs([("491510000001", "1"), ("491510000002", "2")])
    assert (len(table), table.lid_for("491510000002"), table.pn_for("1")) == (
        2,
        "2",
        "491510000001",
    )


def test_the_key_index_holds_only_identities_a_pair_can_complete() -> None:
    index: KeyIndex[str] = KeyIndex()
    index.add("complete", ("49", "1", "+49"))
    index.add("empty", (None, None, None))
    index.add("pn-only", ("49", None, "+49"))
    index.add("pn-only-too", ("49", None, None))
    index.add("lid-only", (None, "1", None))
    assert sorted(index.touched("49", "1")) == ["lid-only", "pn-only", "pn-only-too"]
    assert index.touched("50", "2") == []
    index.remove("pn-only", ("49", None, "+49"))
    assert sorted(index.touched("49", "1")) == ["lid-only", "pn-only-too"]
    index.remove("pn-only-too", ("49", None, None))
    index.remove("lid-only", (None, "1", None))
    assert index.touched("49", "1") == []
