"""The routing decision, branch by branch, with a reason on every branch."""

from __future__ import annotations

import pytest

from heirline.core.identity import LidMapping, SelfIdentity, VerdictKind
from heirline.core.routing import ControllerView, RouteKind, decide_route

PN = "4915123456789@s.whatsapp.net"
LID = "123456789012345@lid"
ME = SelfIdentity.parse(pn=PN)
OTHER = SelfIdentity.parse(pn="4917000000001@s.whatsapp.net")
EMPTY = LidMapping.from_pairs(())


def view(gen: int, state: str = "open", identity: SelfIdentity | None = ME) -> ControllerView:
    return ControllerView(gen, state, state == "open", identity if state == "open" else None)


def test_the_origin_socket_is_used_while_it_is_open_and_still_the_same_identity() -> None:
    route = decide_route(ME, view(1), view(1), EMPTY)
    assert (route.kind, route.generation) == (RouteKind.ORIGIN, 1)
    assert route.verdict is not None
    assert route.verdict.kind is VerdictKind.SAME


def test_a_same_identity_successor_carries_the_reply_when_the_origin_is_gone() -> None:
    route = decide_route(ME, view(1, "stopped"), view(2), EMPTY)
    assert (route.kind, route.generation) == (RouteKind.SUCCESSOR, 2)
    assert route.reason.startswith("successor generation 2: same identity")


def test_a_forgotten_origin_is_treated_like_a_stopped_one() -> None:
    assert decide_route(ME, None, view(2), EMPTY).kind is RouteKind.SUCCESSOR


@pytest.mark.parametrize("state", ["idle", "connecting", "closing", "backoff"])
def test_an_origin_that_may_reconnect_makes_the_reply_wait(state: str) -> None:
    route = decide_route(ME, view(1, state), view(1, state), EMPTY)
    assert route.kind is RouteKind.WAIT
    assert route.reason == f"origin generation 1 is {state} and may reconnect"


@pytest.mark.parametrize("state", ["stopped", "logged_out", "exhausted"])
def test_no_successor_makes_the_reply_wait(state: str) -> None:
    route = decide_route(ME, view(1, state), None, EMPTY)
    assert (route.kind, route.reason) == (RouteKind.WAIT, "no successor registered yet")


def test_a_successor_that_is_not_open_yet_makes_the_reply_wait() -> None:
    route = decide_route(ME, view(1, "stopped"), view(2, "connecting"), EMPTY)
    assert route.kind is RouteKind.WAIT
    assert route.reason == "successor generation 2 is connecting, not open yet"


def test_an_unauthenticated_successor_makes_the_reply_wait() -> None:
    route = decide_route(ME, view(1, "stopped"), view(2, identity=SelfIdentity()), EMPTY)
    assert route.kind is RouteKind.WAIT
    assert route.reason.endswith("is open but not authenticated yet")


def test_a_different_successor_is_refused_with_the_verdict() -> None:
    route = decide_route(ME, view(1, "stopped"), view(2, identity=OTHER), EMPTY)
    assert route.kind is RouteKind.REFUSE
    assert route.generation is None
    assert route.verdict is not None
    assert route.verdict.kind is VerdictKind.DIFFERENT


def test_a_conflicting_successor_is_refused() -> None:
    origin = SelfIdentity.parse(pn=PN, lid=LID)
    successor = SelfIdentity.parse(pn="4917000000001@s.whatsapp.net", lid=LID)
    route = decide_route(origin, view(1, "stopped"), view(2, identity=successor), EMPTY)
    assert route.kind is RouteKind.REFUSE
    assert route.verdict is not None
    assert route.verdict.kind is VerdictKind.CONFLICTING


def test_not_comparable_waits_and_the_mapping_makes_it_same() -> None:
    lid_only = SelfIdentity.parse(lid=LID)
    waiting = decide_route(ME, view(1, "stopped"), view(2, identity=lid_only), EMPTY)
    assert waiting.kind is RouteKind.WAIT
    mapped = LidMapping.from_pairs([(PN, LID)])
    assert decide_route(ME, view(1, "stopped"), view(2, identity=lid_only), mapped).kind is (
        RouteKind.SUCCESSOR
    )


def test_an_origin_relinked_under_its_live_socket_is_refused() -> None:
    route = decide_route(ME, view(1, identity=OTHER), view(1, identity=OTHER), EMPTY)
    assert route.kind is RouteKind.REFUSE


def test_an_unauthenticated_origin_is_refused_whatever_the_sockets() -> None:
    route = decide_route(SelfIdentity(), view(1), view(2), EMPTY)
    assert (route.kind, route.reason) == (
        RouteKind.REFUSE,
        "origin never authenticated: no identity to match",
    )
