"""The one routing decision every socket consumer goes through.

Text and media sends, group-metadata lookups and read receipts all ask
:func:`decide_route` where a captured reply may go *now*: the origin
controller's own socket, the registered successor's socket (only when the
identity guard says "same"), nowhere yet (wait for an event, with the reason),
or nowhere ever (refuse, with the reason). The decision is a pure function of
plain values, so it is cheap, exhaustively testable and identical in every
binding.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from heirline.core.identity import LidMapping, SelfIdentity, Verdict, VerdictKind, compare


class RouteKind(StrEnum):
    """What to do with a reply now."""

    ORIGIN = "origin"
    SUCCESSOR = "successor"
    WAIT = "wait"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class ControllerView:
    """What routing needs to know about one controller generation."""

    generation: int
    state: str
    has_socket: bool
    identity: SelfIdentity | None  # the self identity its current socket reported, if any


@dataclass(frozen=True, slots=True)
class Route:
    """A routing decision: ``generation`` to transmit through (ORIGIN / SUCCESSOR), and why."""

    kind: RouteKind
    reason: str
    generation: int | None = None
    verdict: Verdict | None = None


def decide_route(
    origin_identity: SelfIdentity,
    origin: ControllerView | None,
    current: ControllerView | None,
    mapping: LidMapping,
) -> Route:
    """Decide where a reply captured with ``origin_identity`` may go now.

    ``origin`` is the capturing generation (``None`` once it is forgotten),
    ``current`` the account's registered generation (``None`` if none). Both
    sockets, the origin's included, must show an identity the guard calls
    "same" as the one captured: an account relinked under a live socket is
    refused, not trusted because it is the same controller.
    """
    if not origin_identity.authenticated:
        return Route(RouteKind.REFUSE, "origin never authenticated: no identity to match")
    if origin is not None and origin.has_socket:
        return _through(RouteKind.ORIGIN, origin, origin_identity, mapping)
    if current is not None and (origin is None or current.generation != origin.generation):
        if not current.has_socket:
            return Route(
                RouteKind.WAIT,
                f"successor generation {current.generation} is {current.state}, not open yet",
            )
        return _through(RouteKind.SUCCESSOR, current, origin_identity, mapping)
    if origin is not None and origin.state in _MAY_COME_BACK:
        return Route(
            RouteKind.WAIT,
            f"origin generation {origin.generation} is {origin.state} and may reconnect",
        )
    return Route(RouteKind.WAIT, "no successor registered yet")


_MAY_COME_BACK = frozenset({"idle", "connecting", "closing", "backoff"})


def _through(
    kind: RouteKind, view: ControllerView, origin_identity: SelfIdentity, mapping: LidMapping
) -> Route:
    who = f"{kind.value} generation {view.generation}"
    identity = view.identity
    if identity is None or not identity.authenticated:
        return Route(RouteKind.WAIT, f"{who} is open but not authenticated yet")
    verdict = compare(origin_identity, identity, mapping)
    if verdict.kind is VerdictKind.SAME:
        return Route(kind, f"{who}: {verdict.reason}", view.generation, verdict)
    if verdict.kind is VerdictKind.NOT_COMPARABLE:
        # Fail closed but not final: a mapping learned later may make them comparable.
        return Route(RouteKind.WAIT, f"{who}: {verdict.reason}", None, verdict)
    return Route(RouteKind.REFUSE, f"{who}: {verdict.reason}", None, verdict)
