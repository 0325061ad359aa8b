"""The routing decision, branch by branch, with a reason on every branch."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from heirline.core.controller import AttemptCounter, Controller
from heirline.core.identity import (
    NO_KEYS,
    Keys,
    LidMapping,
    SelfIdentity,
    Verdict,
    VerdictKind,
    identity_keys,
    resolve,
)
from heirline.core.lifecycle import TERMINAL_STATES, LifecycleConfig, State
from heirline.core.routing import ControllerView, RouteKind, View, decide_route

PN = "4915123456789@s.whatsapp.net"
LID = "123456789012345@lid"
EMPTY = LidMapping.from_pairs(())


def keys(mapping: LidMapping = EMPTY, **forms: str) -> Keys:
    return identity_keys(resolve(SelfIdentity.parse(**forms), mapping))


ME = keys(pn=PN)
OTHER = keys(pn="4917000000001@s.whatsapp.net")


def view(gen: int, state: str = "open", identity: Keys = ME) -> ControllerView:
    return ControllerView(gen, state, state == "open", identity if state == "open" else NO_KEYS)


class Decided(NamedTuple):
    kind: RouteKind
    generation: int | None
    reason: str
    verdict: Verdict | None


def decide(origin_keys: Keys, origin: View | None, current: View | None) -> Decided:
    route, generation = decide_route(origin_keys, origin, current)
    return Decided(route.kind, generation, route.reason(generation), route.verdict)


def test_the_origin_socket_is_used_while_it_is_open_and_still_the_same_identity() -> None:
    d = decide(ME, view(1), view(1))
    assert (d.kind, d.generation) == (RouteKind.ORIGIN, 1)
    assert d.verdict is not None
    assert d.verdict.kind is VerdictKind.SAME
    assert d.reason == "origin generation 1: same identity: pn, e164 matched"


def test_a_same_identity_successor_carries_the_reply_when_the_origin_is_gone() -> None:
    d = decide(ME, view(1, "stopped"), view(2))
    assert (d.kind, d.generation) == (RouteKind.SUCCESSOR, 2)
    assert d.reason == "successor generation 2: same identity: pn, e164 matched"


def test_a_forgotten_origin_is_treated_like_a_stopped_one() -> None:
    assert decide(ME, None, view(2)).kind is RouteKind.SUCCESSOR


@pytest.mark.parametrize("state", ["idle", "connecting", "closing", "backoff"])
def test_an_origin_that_may_reconnect_makes_the_reply_wait(state: str) -> None:
    d = decide(ME, view(1, state), view(1, state))
    assert d.kind is RouteKind.WAIT
    assert d.reason == f"origin generation 1 is {state} and may reconnect"


@pytest.mark.parametrize("state", ["stopped", "logged_out", "exhausted"])
def test_no_successor_makes_the_reply_wait(state: str) -> None:
    d = decide(ME, view(1, state), None)
    assert (d.kind, d.generation, d.reason) == (RouteKind.WAIT, None, "no successor registered yet")


def test_a_successor_that_is_not_open_yet_makes_the_reply_wait() -> None:
    d = decide(ME, view(1, "stopped"), view(2, "connecting"))
    assert d.kind is RouteKind.WAIT
    assert d.reason == "successor generation 2 is connecting, not open yet"


@pytest.mark.parametrize("role", ["origin", "successor"])
def test_an_unauthenticated_socket_makes_the_reply_wait(role: str) -> None:
    anon = view(2, identity=NO_KEYS)
    d = decide(ME, anon, None) if role == "origin" else decide(ME, view(1, "stopped"), anon)
    assert (d.kind, d.generation) == (RouteKind.WAIT, 2)
    assert d.reason == f"{role} generation 2 is open but not authenticated yet"


def test_a_different_successor_is_refused_with_the_verdict() -> None:
    d = decide(ME, view(1, "stopped"), view(2, identity=OTHER))
    assert d.kind is RouteKind.REFUSE
    assert d.verdict is not None
    assert d.verdict.kind is VerdictKind.DIFFERENT
    assert d.reason.startswith("successor generation 2: different identity")


def test_a_conflicting_successor_is_refused() -> None:
    origin = keys(pn=PN, lid=LID)
    successor = keys(pn="4917000000001@s.whatsapp.net", lid=LID)
    d = decide(origin, view(1, "stopped"), view(2, identity=successor))
    assert d.kind is RouteKind.REFUSE
    assert d.verdict is not None
    assert d.verdict.kind is VerdictKind.CONFLICTING


def test_not_comparable_waits_and_the_mapping_makes_it_same() -> None:
    waiting = decide(ME, view(1, "stopped"), view(2, identity=keys(lid=LID)))
    assert waiting.kind is RouteKind.WAIT
    assert "not comparable" in waiting.reason
    mapped = LidMapping.from_pairs([(PN, LID)])
    resolved = view(2, identity=keys(mapped, lid=LID))
    assert decide(keys(mapped, pn=PN), view(1, "stopped"), resolved).kind is RouteKind.SUCCESSOR


def test_an_origin_relinked_under_its_live_socket_is_refused() -> None:
    d = decide(ME, view(1, identity=OTHER), view(1, identity=OTHER))
    assert (d.kind, d.generation) == (RouteKind.REFUSE, 1)


def test_an_unauthenticated_origin_is_refused_whatever_the_sockets() -> None:
    d = decide(NO_KEYS, view(1), view(2))
    assert (d.kind, d.reason) == (
        RouteKind.REFUSE,
        "origin never authenticated: no identity to match",
    )


def test_routes_through_a_socket_are_shared_constants() -> None:
    first, _ = decide_route(ME, view(1, "stopped"), view(2))
    second, _ = decide_route(ME, view(1, "stopped"), view(7))
    assert first is second  # nothing is allocated per decision on the hot path


# -- typed states, and the engine's controllers as views ---------------------------------------


@pytest.mark.parametrize("state", sorted(set(State) - {State.OPEN}))
def test_an_origin_without_a_socket_waits_exactly_while_it_may_come_back(state: State) -> None:
    """Every non-terminal state but ``open`` (the one with a socket) may reconnect; a
    terminal one never will."""
    origin = ControllerView(1, state, False)
    d = decide(ME, origin, None)
    if state in TERMINAL_STATES:
        assert (d.kind, d.generation, d.reason) == (
            RouteKind.WAIT,
            None,
            "no successor registered yet",
        )
    else:
        assert (d.kind, d.generation) == (RouteKind.WAIT, 1)
        assert d.reason == f"origin generation 1 is {state.value} and may reconnect"


@pytest.mark.parametrize("state", sorted(set(State) - {State.OPEN}))
def test_a_successor_that_is_not_open_names_its_state(state: State) -> None:
    d = decide(ME, view(1, "stopped"), ControllerView(2, state, False))
    assert (d.kind, d.generation) == (RouteKind.WAIT, 2)
    assert d.reason == f"successor generation 2 is {state.value}, not open yet"


def test_the_engines_controllers_are_views_and_route_like_their_plain_values() -> None:
    counter = AttemptCounter()
    origin = Controller("acct", 1, LifecycleConfig(), counter)
    successor = Controller("acct", 2, LifecycleConfig(), counter)
    for c in (origin, successor):
        c.start(0)
        c.opened(10)
        c.keys = ME
    assert isinstance(origin, View)
    origin.stop("superseded", 20)

    def plain(c: Controller) -> ControllerView:
        return ControllerView(c.generation, c.state, c.has_socket, c.keys)

    assert decide_route(ME, origin, successor) == decide_route(ME, plain(origin), plain(successor))
    assert decide(ME, origin, successor).kind is RouteKind.SUCCESSOR
    successor.closed(408, 30, 0.0)
    successor.keys = NO_KEYS
    waiting = decide(ME, origin, successor)
    assert waiting.reason == "successor generation 2 is backoff, not open yet"
