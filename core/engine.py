"""The engine facade: ``Engine.handle(event, now) -> list[Effect]``.

It ties the pieces together -- controller lifecycles, the registry, the health
policy, the identity guard, the routing decision and one delivery machine per
reply -- and returns everything observable as effects. It never does I/O,
never reads a clock (``now`` is an argument, integer milliseconds) and draws
randomness only from the ``random`` callable its owner passes in.

Bad input (an unknown controller or reply, an input a machine does not accept
in its state, a malformed identity, a contradictory mapping) yields one
``Rejected`` effect with a stable code; each handler validates before it
mutates, so the engine's state is exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from heirline.core import delivery
from heirline.core.effects import (
    CancelTimer,
    CloseSocket,
    Effect,
    Log,
    Registered,
    Rejected,
    ReplyDelivered,
    ReplyFailed,
    StartTimer,
    Transmit,
    Unregistered,
)
from heirline.core.errors import ConfigError, HeirlineError, InvalidTransition
from heirline.core.events import (
    Event,
    HealthCheck,
    MappingLearned,
    ReplyCaptured,
    ReplyReady,
    SocketClosed,
    SocketOpened,
    Start,
    Stop,
    TimerFired,
    TransmitAcked,
    TransmitFailed,
    WatchdogSilence,
)
from heirline.core.health import (
    ControllerSnapshot,
    HealthAction,
    HealthConfig,
    HealthMonitor,
)
from heirline.core.identity import (
    NO_KEYS,
    UNAUTHENTICATED,
    Keys,
    LidMapping,
    SelfIdentity,
    identity_keys,
    resolve,
)
from heirline.core.lifecycle import TERMINAL_STATES, Controller, LifecycleConfig
from heirline.core.registry import ChangeKind, Registry
from heirline.core.routing import ControllerView, RouteKind, decide_route

E = TypeVar("E", bound=Event)
_Handler = Callable[[Event, int], list[Effect]]

HEALTH_TIMER = "health"
_RETRY_PREFIX = "retry/"
_DEADLINE_PREFIX = "deadline/"


def _describe(identity: SelfIdentity) -> str:
    return identity.describe() if identity.authenticated else "unauthenticated"


def _ignored(
    code: str, message: str, account: str | None, generation: int, level: str = "debug"
) -> list[Effect]:
    """A late or raced fact that changes nothing: say so, and do nothing else."""
    return [Log(level=level, code=code, message=message, account=account, generation=generation)]


def deadline_timer_key(reply_id: str) -> str:
    """The timer key of a reply's deadline."""
    return _DEADLINE_PREFIX + reply_id


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything tunable about the engine; validated on construction."""

    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    #: How long a captured reply may take to end, from capture (the peers give up after 2-4 min).
    reply_deadline_ms: int = 300_000
    #: Transmissions of one reply before giving up (each a resend with the same message id).
    max_transmissions: int = 5
    #: Kinds that may be resent with the same message id after I/O may have started.
    resendable_kinds: frozenset[str] = delivery.KINDS
    #: Ended reply ids remembered to tell a late ack from a bogus one.
    remember_ended: int = 10_000
    #: Whether the engine arms its own periodic health-check timer.
    health_timer: bool = True

    def __post_init__(self) -> None:
        for name in ("reply_deadline_ms", "max_transmissions", "remember_ended"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"EngineConfig.{name} must be >= 1, got {value!r}")
        unknown = self.resendable_kinds - delivery.KINDS
        if unknown:
            raise ConfigError(
                f"EngineConfig.resendable_kinds has unknown kinds {sorted(unknown)}; "
                f"known: {sorted(delivery.KINDS)}"
            )


class _Rejection(HeirlineError):
    """Internal: a handler refuses its input before changing anything."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Ctl:
    """One controller generation as the engine tracks it."""

    __slots__ = ("controller", "identity", "in_flight", "keys", "last_event_ms", "last_identity")

    def __init__(self, controller: Controller, now: int) -> None:
        self.controller = controller
        self.identity: SelfIdentity | None = None  # of the current socket, if open
        # Of the most recent socket, kept after it closes: an inbound message handled just
        # before a close is still captured with the identity it arrived through.
        self.last_identity: SelfIdentity | None = None
        self.keys: Keys = NO_KEYS  # identity resolved through the current mapping
        self.in_flight: set[str] = set()
        self.last_event_ms = now


class _Reply:
    """One captured reply and its delivery state."""

    __slots__ = (
        "account",
        "chat",
        "deadline_ms",
        "identity",
        "io_ever_started",
        "keys",
        "kind",
        "message_id",
        "origin",
        "payload",
        "reply_id",
        "sent_via",
        "state",
        "transmissions",
        "via",
        "wait_reason",
    )

    def __init__(self, ev: ReplyCaptured, identity: SelfIdentity, deadline_ms: int) -> None:
        self.reply_id = ev.reply_id
        self.account = ev.account
        self.origin = ev.generation
        self.chat = ev.chat
        self.kind = ev.kind
        self.message_id = ev.message_id if ev.message_id is not None else ev.reply_id
        self.deadline_ms = deadline_ms
        self.identity = identity
        self.keys: Keys = identity_keys(identity)
        self.state = delivery.PENDING
        self.payload = ""
        self.via: int | None = None
        self.transmissions = 0
        self.io_ever_started = False
        self.sent_via: set[int] = set()
        self.wait_reason = ""


class Engine:
    """The decision engine. Owns its state; mutated only through :meth:`handle`."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        random: Callable[[], float],
        mapping: LidMapping | None = None,
    ) -> None:
        self.config = config if config is not None else EngineConfig()
        self._random = random
        self._mapping = mapping if mapping is not None else LidMapping.from_pairs(())
        self._registry = Registry()
        self._health: HealthMonitor | None = None
        self._ctls: dict[tuple[str, int], _Ctl] = {}
        self._latest: dict[str, int] = {}  # account -> newest generation
        self._watched: set[str] = set()  # accounts the health policy keeps running
        self._replies: dict[str, _Reply] = {}
        self._waiting: dict[str, dict[str, None]] = {}  # account -> ordered set of reply ids
        # reply id -> (final state, generations it was sent via, generation that acked it)
        self._ended: dict[str, tuple[str, frozenset[int], int | None]] = {}
        self._handlers: dict[type[Event], _Handler] = {}
        self._on(Start, self._on_start)
        self._on(Stop, self._on_stop)
        self._on(SocketOpened, self._on_opened)
        self._on(SocketClosed, self._on_closed)
        self._on(WatchdogSilence, self._on_watchdog)
        self._on(TimerFired, self._on_timer)
        self._on(HealthCheck, self._on_health_check)
        self._on(MappingLearned, self._on_mapping)
        self._on(ReplyCaptured, self._on_captured)
        self._on(ReplyReady, self._on_ready)
        self._on(TransmitAcked, self._on_acked)
        self._on(TransmitFailed, self._on_failed)

    def _on(self, cls: type[E], handler: Callable[[E, int], list[Effect]]) -> None:
        # Dispatch is keyed by the exact class, so the handler only ever sees a `cls`.
        self._handlers[cls] = cast(_Handler, handler)

    # ------------------------------------------------------------------ facade

    def handle(self, event: Event, now: int) -> list[Effect]:
        """Apply one fact at time ``now`` (ms) and return what to do, in order."""
        handler = self._handlers.get(type(event))
        if handler is None:
            return [Rejected(code="unknown_event", message=f"unknown event {event!r}")]
        first = self._health is None
        if first:  # the health policy's clock starts with the first accepted event
            self._health = HealthMonitor(self.config.health, now)
        try:
            return handler(event, now)
        except HeirlineError as err:
            if first:
                self._health = None
            if isinstance(err, _Rejection):
                return [Rejected(code=err.code, message=str(err))]
            if isinstance(err, InvalidTransition):
                return [Rejected(code="invalid_transition", message=str(err))]
            # A malformed identity, a contradictory mapping: named by the error's type.
            return [Rejected(code=type(err).__name__, message=str(err))]

    # ------------------------------------------------------------------ queries

    @property
    def mapping(self) -> LidMapping:
        """The PN<->LID mapping the guard resolves identities through."""
        return self._mapping

    def current(self, account: str) -> int | None:
        """The registered generation of ``account``."""
        return self._registry.current(account)

    def controller_state(self, account: str, generation: int) -> str | None:
        """The lifecycle state of a generation, or ``None`` if unknown."""
        ctl = self._ctls.get((account, generation))
        return None if ctl is None else ctl.controller.state

    def controller_identity(self, account: str, generation: int) -> SelfIdentity | None:
        """The self identity the generation's current socket reported."""
        ctl = self._ctls.get((account, generation))
        return None if ctl is None else ctl.identity

    def reply_state(self, reply_id: str) -> str | None:
        """The delivery state of a reply (terminal states stay visible while remembered)."""
        reply = self._replies.get(reply_id)
        if reply is not None:
            return reply.state
        ended = self._ended.get(reply_id)
        return None if ended is None else ended[0]

    def in_flight(self) -> dict[str, int]:
        """Reply id -> generation, for every reply with a transmission awaiting its ack."""
        return {r.reply_id: r.via for r in self._replies.values() if r.via is not None}

    def open_replies(self) -> tuple[str, ...]:
        """Ids of replies that have not ended yet."""
        return tuple(self._replies)

    # ------------------------------------------------------------- controllers

    def _ctl(self, account: str, generation: int) -> _Ctl:
        ctl = self._ctls.get((account, generation))
        if ctl is None:
            raise _Rejection(
                "unknown_controller", f"no controller generation {generation} for {account!r}"
            )
        return ctl

    def _on_start(self, ev: Start, now: int) -> list[Effect]:
        return self._start(ev.account, now)

    def _start(self, account: str, now: int) -> list[Effect]:
        generation = self._registry.next_generation(account)
        controller = Controller(account, generation, self.config.lifecycle)
        self._ctls[(account, generation)] = _Ctl(controller, now)
        self._latest[account] = generation
        self._watched.add(account)
        # Register first: the predecessor is replaced, so its own unregister below is stale.
        change = self._registry.register(account, generation)
        out: list[Effect] = [
            Registered(account=account, generation=generation, predecessor=change.predecessor)
        ]
        if change.predecessor is not None:
            old = self._ctls[(account, change.predecessor)]
            if not old.controller.is_terminal:
                out += self._stop_ctl(old, f"superseded by generation {generation}", now)
        out += controller.start(now)
        if self.config.health_timer and len(self._ctls) == 1:
            out.append(
                StartTimer(key=HEALTH_TIMER, deadline_ms=now + self.config.health.check_interval_ms)
            )
        out += self._wake(account, now)
        return out

    def _stop_ctl(self, ctl: _Ctl, reason: str, now: int) -> list[Effect]:
        out = ctl.controller.stop(reason, now)
        ctl.identity = None
        ctl.keys = NO_KEYS
        out += self._unregister(ctl)
        out += self._lose_in_flight(ctl, f"controller stopped ({reason})", now)
        return out

    def _unregister(self, ctl: _Ctl) -> list[Effect]:
        c = ctl.controller
        change = self._registry.unregister(c.account, c.generation)
        if change.kind is ChangeKind.UNREGISTERED:
            return [Unregistered(account=c.account, generation=c.generation)]
        return []

    def _on_stop(self, ev: Stop, now: int) -> list[Effect]:
        ctl = self._ctl(ev.account, ev.generation)
        if ctl.controller.is_terminal:
            return _ignored(
                "stop_ignored",
                f"generation {ev.generation} is already {ctl.controller.state}",
                ev.account,
                ev.generation,
            )
        if self._latest.get(ev.account) == ev.generation:
            self._watched.discard(ev.account)  # the owner wants this account down
        out = self._stop_ctl(ctl, ev.reason, now)
        return out + self._wake(ev.account, now)

    def _on_opened(self, ev: SocketOpened, now: int) -> list[Effect]:
        ctl = self._ctl(ev.account, ev.generation)
        identity = SelfIdentity.parse(pn=ev.pn, lid=ev.lid, e164=ev.e164)
        if ctl.controller.is_terminal:
            # The socket raced a stop: close it rather than leak a live session.
            return [
                CloseSocket(
                    account=ev.account,
                    generation=ev.generation,
                    reason=f"generation is {ctl.controller.state}",
                )
            ]
        out = ctl.controller.opened(now)
        ctl.identity = ctl.last_identity = identity
        ctl.keys = identity_keys(resolve(identity, self._mapping))
        ctl.last_event_ms = now
        out.append(
            Log(
                level="info",
                code="socket_opened",
                message=f"socket open as {_describe(identity)}",
                account=ev.account,
                generation=ev.generation,
            )
        )
        return out + self._wake(ev.account, now)

    def _on_closed(self, ev: SocketClosed, now: int) -> list[Effect]:
        ctl = self._ctl(ev.account, ev.generation)
        if ctl.controller.is_terminal:
            return _ignored(
                "late_close",
                f"close (status {ev.status}) of a {ctl.controller.state} generation ignored",
                ev.account,
                ev.generation,
            )
        out = ctl.controller.closed(ev.status, now, self._random())
        ctl.identity = None
        ctl.keys = NO_KEYS
        ctl.last_event_ms = now
        if ctl.controller.state in TERMINAL_STATES:  # logged out, replaced, forbidden, exhausted
            out += self._unregister(ctl)
        out += self._lose_in_flight(ctl, f"socket closed (status {ev.status})", now)
        return out + self._wake(ev.account, now)

    def _on_watchdog(self, ev: WatchdogSilence, now: int) -> list[Effect]:
        ctl = self._ctl(ev.account, ev.generation)
        if not ctl.controller.has_socket:
            # The adapter's watchdog raced a close: there is no open socket to close.
            return _ignored(
                "stale_watchdog",
                f"watchdog silence for a {ctl.controller.state} generation ignored",
                ev.account,
                ev.generation,
            )
        return ctl.controller.watchdog(now, ev.silent_ms)

    def _on_timer(self, ev: TimerFired, now: int) -> list[Effect]:
        key = ev.key
        if key == HEALTH_TIMER:
            out = self._health_check(now)
            out.append(
                StartTimer(key=HEALTH_TIMER, deadline_ms=now + self.config.health.check_interval_ms)
            )
            return out
        if key.startswith(_DEADLINE_PREFIX):
            return self._deadline(key[len(_DEADLINE_PREFIX) :], now)
        if key.startswith(_RETRY_PREFIX):
            account, _, gen = key[len(_RETRY_PREFIX) :].rpartition("/")
            if gen.isdigit():
                ctl = self._ctl(account, int(gen))
                if ctl.controller.state != "backoff":
                    return _ignored(
                        "stale_timer",
                        f"retry timer of a {ctl.controller.state} generation ignored",
                        account,
                        int(gen),
                    )
                out = ctl.controller.retry_due(now)
                ctl.last_event_ms = now
                return out
        raise _Rejection("unknown_timer", f"no timer {key!r} was started by this engine")

    # ------------------------------------------------------------------ health

    def _on_health_check(self, ev: HealthCheck, now: int) -> list[Effect]:
        return self._health_check(now)

    def _health_check(self, now: int) -> list[Effect]:
        assert self._health is not None
        out: list[Effect] = []
        for account in sorted(self._watched):
            ctl = self._ctls[(account, self._latest[account])]
            decision = self._health.evaluate(self._snapshot(ctl), now)
            if decision.action is HealthAction.HEALTHY:
                continue
            fields: dict[str, str | int | float | bool | None] = {
                "action": decision.action.value,
                "reason": None if decision.reason is None else decision.reason.value,
            }
            if decision.action is HealthAction.HOLD:
                out.append(
                    Log(
                        level="info",
                        code="health_hold",
                        message=f"health-monitor: holding ({decision.detail})",
                        account=account,
                        generation=decision.generation,
                        fields=fields,
                    )
                )
                continue
            reason = decision.reason.value if decision.reason is not None else "unknown"
            out.append(
                Log(
                    level="warning",
                    code="health_restart",
                    message=f"health-monitor: restarting (reason: {reason})",
                    account=account,
                    generation=decision.generation,
                    fields=fields,
                )
            )
            self._health.record_restart(account, now)
            out += self._start(account, now)
        return out

    def _snapshot(self, ctl: _Ctl) -> ControllerSnapshot:
        c = ctl.controller
        return ControllerSnapshot(
            account=c.account,
            generation=c.generation,
            state=c.state,
            started_at_ms=c.started_at_ms if c.started_at_ms is not None else ctl.last_event_ms,
            last_event_ms=ctl.last_event_ms,
            opened_at_ms=c.opened_at_ms,
            retry_at_ms=c.retry_at_ms,
            attempt=c.attempt,
            connecting_since_ms=c.last_change_ms if c.state == "connecting" else None,
        )

    # ----------------------------------------------------------------- mapping

    def _on_mapping(self, ev: MappingLearned, now: int) -> list[Effect]:
        mapping = self._mapping = self._mapping.with_pair(ev.pn, ev.lid)
        # Re-resolve every identity routing may compare: the new pair may fill a form.
        for ctl in self._ctls.values():
            if ctl.identity is not None:
                ctl.keys = identity_keys(resolve(ctl.identity, mapping))
        for reply in self._replies.values():
            reply.keys = identity_keys(resolve(reply.identity, mapping))
        out: list[Effect] = []
        for account in list(self._waiting):
            out += self._wake(account, now)
        return out

    # ----------------------------------------------------------------- replies

    def _on_captured(self, ev: ReplyCaptured, now: int) -> list[Effect]:
        if ev.reply_id in self._replies or ev.reply_id in self._ended:
            raise _Rejection("duplicate_reply", f"reply {ev.reply_id!r} was already captured")
        if ev.kind not in delivery.KINDS:
            raise _Rejection(
                "unknown_kind", f"kind {ev.kind!r} is not one of {sorted(delivery.KINDS)}"
            )
        ctl = self._ctl(ev.account, ev.generation)
        deadline = (
            ev.deadline_ms if ev.deadline_ms is not None else now + self.config.reply_deadline_ms
        )
        if deadline <= now:
            raise _Rejection("deadline_passed", f"deadline {deadline} is not after now ({now})")
        identity = resolve(ctl.last_identity or UNAUTHENTICATED, self._mapping)
        reply = _Reply(ev, identity, deadline)
        self._replies[ev.reply_id] = reply
        return [
            StartTimer(key=deadline_timer_key(ev.reply_id), deadline_ms=deadline),
            Log(
                level="debug",
                code="reply_captured",
                message=f"reply {ev.reply_id} captured for {ev.chat} ({ev.kind})",
                account=ev.account,
                generation=ev.generation,
                fields={"identity": identity.describe(), "deadline_ms": deadline},
            ),
        ]

    def _live_reply(self, reply_id: str) -> _Reply:
        reply = self._replies.get(reply_id)
        if reply is None:
            code = "reply_ended" if reply_id in self._ended else "unknown_reply"
            raise _Rejection(code, f"reply {reply_id!r} is {code.replace('_', ' ')}")
        return reply

    def _on_ready(self, ev: ReplyReady, now: int) -> list[Effect]:
        reply = self._live_reply(ev.reply_id)
        if reply.state != delivery.PENDING:
            raise _Rejection("reply_not_pending", f"reply {ev.reply_id!r} is already {reply.state}")
        reply.payload = ev.payload
        return self._route(reply, now)

    def _view(self, account: str, generation: int | None) -> ControllerView | None:
        if generation is None:
            return None
        ctl = self._ctls.get((account, generation))
        if ctl is None:
            return None
        c = ctl.controller
        return ControllerView(generation, c.state, c.has_socket, ctl.keys)

    def _route(self, reply: _Reply, now: int) -> list[Effect]:
        account = reply.account
        route, generation = decide_route(
            reply.keys,
            self._view(account, reply.origin),
            self._view(account, self._registry.current(account)),
        )
        kind = route.kind
        if kind is RouteKind.WAIT:
            reply.state = delivery.TABLE.next(reply.state, "hold")
            self._waiting.setdefault(account, {})[reply.reply_id] = None
            reason = route.reason(generation)
            if reason == reply.wait_reason:
                return []
            reply.wait_reason = reason
            return [
                Log(
                    level="info",
                    code="reply_waiting",
                    message=f"reply {reply.reply_id} waits: {reason}",
                    account=account,
                    generation=reply.origin,
                )
            ]
        if kind is RouteKind.REFUSE:
            reason = route.reason(generation)
            if reply.io_ever_started:
                # Nothing more goes out, but an earlier attempt may have arrived: say so.
                reply.state = delivery.TABLE.next(reply.state, "refuse_unclear")
                reason += "; an earlier transmission may have reached the receiver"
                outcome = ReplyFailed(reply_id=reply.reply_id, outcome="unknown", reason=reason)
                return self._end(reply, outcome)
            reply.state = delivery.TABLE.next(reply.state, "refuse")
            outcome = ReplyFailed(reply_id=reply.reply_id, outcome="refused", reason=reason)
            return self._end(reply, outcome)
        assert generation is not None  # ORIGIN and SUCCESSOR always name their generation
        reply.state = delivery.TABLE.next(reply.state, "transmit")
        self._unwait(reply)
        reply.via = generation
        reply.transmissions += 1
        reply.sent_via.add(generation)
        self._ctls[(account, generation)].in_flight.add(reply.reply_id)
        return [
            Log(
                level="info",
                code="reply_routed",
                message=f"reply {reply.reply_id} -> {route.reason(generation)}",
                account=account,
                generation=generation,
                fields={"route": kind.value, "attempt": reply.transmissions},
            ),
            Transmit(
                reply_id=reply.reply_id,
                account=account,
                generation=generation,
                message_id=reply.message_id,
                chat=reply.chat,
                kind=reply.kind,
                payload=reply.payload,
                attempt=reply.transmissions,
            ),
        ]

    def _unwait(self, reply: _Reply) -> None:
        waiting = self._waiting.get(reply.account)
        if waiting is not None:
            waiting.pop(reply.reply_id, None)
            if not waiting:
                del self._waiting[reply.account]

    def _wake(self, account: str, now: int) -> list[Effect]:
        waiting = self._waiting.get(account)
        if not waiting:
            return []
        out: list[Effect] = []
        for reply_id in list(waiting):
            reply = self._replies[reply_id]
            out += self._route(reply, now)
        return out

    def _end(
        self, reply: _Reply, outcome: ReplyDelivered | ReplyFailed, acked_by: int | None = None
    ) -> list[Effect]:
        self._unwait(reply)
        if reply.via is not None:
            ctl = self._ctls.get((reply.account, reply.via))
            if ctl is not None:
                ctl.in_flight.discard(reply.reply_id)
            reply.via = None
        del self._replies[reply.reply_id]
        self._ended[reply.reply_id] = (reply.state, frozenset(reply.sent_via), acked_by)
        if len(self._ended) > self.config.remember_ended:
            del self._ended[next(iter(self._ended))]
        return [CancelTimer(key=deadline_timer_key(reply.reply_id)), outcome]

    def _carried(
        self, reply_id: str, generation: int, code: str
    ) -> tuple[_Reply | None, tuple[str, frozenset[int], int | None] | None]:
        """The live reply, or else its ended record, if ``generation`` ever transmitted it.

        A fact about a transmission that never happened is rejected with ``code``.
        """
        reply = self._replies.get(reply_id)
        ended = None if reply is not None else self._ended.get(reply_id)
        if reply is not None:
            carried = generation in reply.sent_via
        else:
            carried = ended is not None and generation in ended[1]
        if not carried:
            raise _Rejection(
                code, f"reply {reply_id!r} was never transmitted via generation {generation}"
            )
        return reply, ended

    def _on_acked(self, ev: TransmitAcked, now: int) -> list[Effect]:
        reply, ended = self._carried(ev.reply_id, ev.generation, "unexpected_ack")
        if reply is None:
            assert ended is not None  # _carried found the generation in the ended record
            if ended[2] == ev.generation:
                raise _Rejection(
                    "duplicate_ack",
                    f"reply {ev.reply_id!r} was already acked via generation {ev.generation}",
                )
            return _ignored(
                "late_ack",
                f"ack of reply {ev.reply_id} via generation {ev.generation} after it "
                f"ended ({ended[0]}); the receiver deduplicates by message id",
                None,
                ev.generation,
                level="warning",
            )
        reply.state = delivery.TABLE.next(reply.state, "ack")
        via = "origin" if ev.generation == reply.origin else "successor"
        delivered = ReplyDelivered(reply_id=reply.reply_id, generation=ev.generation, via=via)
        return self._end(reply, delivered, acked_by=ev.generation)

    def _on_failed(self, ev: TransmitFailed, now: int) -> list[Effect]:
        reply, _ = self._carried(ev.reply_id, ev.generation, "unexpected_failure")
        if reply is None or reply.via != ev.generation:
            return _ignored(
                "stale_failure",
                f"failure of an earlier transmission of {ev.reply_id} ignored",
                None,
                ev.generation,
            )
        return self._lose(reply, ev.io_started, ev.error or "transmission failed", now)

    def _lose_in_flight(self, ctl: _Ctl, why: str, now: int) -> list[Effect]:
        out: list[Effect] = []
        for reply_id in sorted(ctl.in_flight):
            out += self._lose(self._replies[reply_id], True, why, now)
        return out

    def _lose(self, reply: _Reply, io_started: bool, why: str, now: int) -> list[Effect]:
        """A transmission ended without an ack: resend, wait, or end the reply."""
        via = reply.via
        assert via is not None
        self._ctls[(reply.account, via)].in_flight.discard(reply.reply_id)
        reply.via = None
        reply.io_ever_started |= io_started
        if io_started and reply.kind not in self.config.resendable_kinds:
            reply.state = delivery.TABLE.next(reply.state, "lost_unresendable")
            reason = (
                f"transmission via generation {via} may have reached the receiver ({why}); "
                f"{reply.kind} is never resent"
            )
            return self._end(
                reply, ReplyFailed(reply_id=reply.reply_id, outcome="unknown", reason=reason)
            )
        if reply.transmissions >= self.config.max_transmissions:
            if reply.io_ever_started:
                reply.state = delivery.TABLE.next(reply.state, "lost_unresendable")
                reason = (
                    f"gave up after {reply.transmissions} transmissions ({why}); "
                    "an earlier one may have arrived"
                )
                return self._end(
                    reply, ReplyFailed(reply_id=reply.reply_id, outcome="unknown", reason=reason)
                )
            reply.state = delivery.TABLE.next(reply.state, "give_up")
            reason = f"{reply.transmissions} transmissions failed before any I/O ({why})"
            return self._end(
                reply, ReplyFailed(reply_id=reply.reply_id, outcome="failed", reason=reason)
            )
        trigger = "lost_resendable" if io_started else "lost_before_io"
        reply.state = delivery.TABLE.next(reply.state, trigger)
        reply.wait_reason = ""
        return self._route(reply, now)

    def _deadline(self, reply_id: str, now: int) -> list[Effect]:
        reply = self._replies.get(reply_id)
        if reply is None:
            if reply_id in self._ended:
                return []  # the cancel raced the timer; the reply ended already
            raise _Rejection("unknown_timer", f"no reply {reply_id!r} has a deadline")
        if reply.state == delivery.PENDING:
            reply.state = delivery.TABLE.next(reply.state, "deadline")
            why = "deadline passed before the reply was ready"
            return self._end(reply, ReplyFailed(reply_id=reply_id, outcome="failed", reason=why))
        if reply.state == delivery.IN_FLIGHT or reply.io_ever_started:
            reply.state = delivery.TABLE.next(reply.state, "deadline_unclear")
            why = "deadline passed; a transmission may have reached the receiver without an ack"
            return self._end(reply, ReplyFailed(reply_id=reply_id, outcome="unknown", reason=why))
        reply.state = delivery.TABLE.next(reply.state, "deadline")
        why = f"deadline passed: {reply.wait_reason or 'no route'}"
        return self._end(reply, ReplyFailed(reply_id=reply_id, outcome="failed", reason=why))
