"""The one routing decision every socket consumer goes through.

Text and media sends, group-metadata lookups and read receipts all ask
:func:`decide_route` where a captured reply may go *now*: the origin
controller's own socket, the registered successor's socket (only when the
identity guard says "same"), nowhere yet (wait for an event, with the reason),
or nowhere ever (refuse, with the reason). The decision is a pure function of
plain values -- identities arrive as already-resolved :data:`Keys` -- so it is
cheap, exhaustively testable and identical in every binding.

The hot path allocates nothing: every route through a socket is one of the
precomputed constants in ``_THROUGH``, picked by the identity verdict's index,
and the human reason is assembled only when someone reads it.
"""

# No `from __future__ import annotations` here: beartype resolves NamedTuple field hints
# at run time, and postponed (string) annotations of a NamedTuple cannot be resolved.
from enum import StrEnum
from typing import Final, NamedTuple, Protocol, runtime_checkable

from heirline.core.identity import NO_KEYS, VERDICTS, Keys, Verdict, VerdictKind, verdict_index


class RouteKind(StrEnum):
    """What to do with a reply now."""

    ORIGIN = "origin"
    SUCCESSOR = "successor"
    WAIT = "wait"
    REFUSE = "refuse"


class ControllerView(NamedTuple):
    """What routing needs to know about one controller generation (a plain-value form).

    :class:`~heirline.core.controller.Controller` has the same attributes, so the
    engine passes its controllers as they are; tests and hosts may pass these.
    """

    generation: int
    state: str
    has_socket: bool
    #: Resolved identity keys of its current socket; ``NO_KEYS`` when not logged in.
    keys: Keys = NO_KEYS


@runtime_checkable
class View(Protocol):
    """The attributes :func:`decide_route` reads of a controller."""

    @property
    def generation(self) -> int: ...

    @property
    def state(self) -> str: ...

    @property
    def has_socket(self) -> bool: ...

    @property
    def keys(self) -> Keys: ...


class Route(NamedTuple):
    """How a reply goes (or why it does not), without the generation it is about.

    :func:`decide_route` returns the route together with that generation, so
    the routes themselves can be shared constants.
    """

    kind: RouteKind
    #: Who the decision is about; ``{generation}`` stands for the generation returned with it.
    subject: str
    verdict: Verdict | None = None

    def reason(self, generation: int | None) -> str:
        """One sentence saying why, naming ``generation`` (the one returned with the route)."""
        subject = self.subject.replace("{generation}", str(generation))
        return subject if self.verdict is None else f"{subject}: {self.verdict.reason}"


#: A decision: the route, and the generation it transmits through or is about.
Decision = tuple[Route, int | None]


def _through_routes(role: str, transmit: RouteKind) -> tuple[Route, ...]:
    """For one socket role, the route each identity verdict leads to (indexed like VERDICTS)."""

    subject = role + " generation {generation}"

    def route(verdict: Verdict) -> Route:
        if verdict.kind is VerdictKind.SAME:
            return Route(transmit, subject, verdict)
        if verdict.kind is VerdictKind.NOT_COMPARABLE:
            # Fail closed but not final: a mapping learned later may make them comparable.
            return Route(RouteKind.WAIT, subject, verdict)
        return Route(RouteKind.REFUSE, subject, verdict)

    return tuple(route(v) for v in VERDICTS)


_THROUGH: Final = {
    "origin": _through_routes("origin", RouteKind.ORIGIN),
    "successor": _through_routes("successor", RouteKind.SUCCESSOR),
}
_NOT_AUTHENTICATED: Final = {
    role: Route(RouteKind.WAIT, role + " generation {generation} is open but not authenticated yet")
    for role in ("origin", "successor")
}
_NEVER_AUTHENTICATED: Final = Route(
    RouteKind.REFUSE, "origin never authenticated: no identity to match"
)
_NO_SUCCESSOR: Final = Route(RouteKind.WAIT, "no successor registered yet")
_MAY_COME_BACK: Final = frozenset({"idle", "connecting", "closing", "backoff"})


def decide_route(origin_keys: Keys, origin: View | None, current: View | None) -> Decision:
    """Decide where a reply captured with identity ``origin_keys`` may go now.

    ``origin`` is the capturing generation (``None`` once it is forgotten),
    ``current`` the account's registered generation (``None`` if none). Both
    sockets, the origin's included, must show an identity the guard calls
    "same" as the one captured: an account relinked under a live socket is
    refused, not trusted because it is the same controller. Returns the route
    and the generation it is about (the one to transmit through, for
    ``ORIGIN`` and ``SUCCESSOR``).
    """
    if origin_keys == NO_KEYS:
        return _NEVER_AUTHENTICATED, None
    if origin is not None and origin.has_socket:
        return _through("origin", origin, origin_keys)
    if current is not None and (origin is None or current.generation != origin.generation):
        if current.has_socket:
            return _through("successor", current, origin_keys)
        subject = f"successor generation {{generation}} is {current.state}, not open yet"
        return Route(RouteKind.WAIT, subject), current.generation
    if origin is not None and origin.state in _MAY_COME_BACK:
        subject = f"origin generation {{generation}} is {origin.state} and may reconnect"
        return Route(RouteKind.WAIT, subject), origin.generation
    return _NO_SUCCESSOR, None


def _through(role: str, view: View, origin_keys: Keys) -> Decision:
    keys = view.keys
    if keys == NO_KEYS:
        return _NOT_AUTHENTICATED[role], view.generation
    return _THROUGH[role][verdict_index(origin_keys, keys)], view.generation
