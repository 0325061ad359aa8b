"""The engine facade: ``Engine.handle(event, now) -> list[Effect]``.

The engine orchestrates: it dispatches each fact to its handler, keeps the
controllers and the registry, runs the health policy, resolves identities
through the PN<->LID mapping, and calls into the reply book, which owns the
delivery policy. It never does I/O, never reads a clock (``now`` is an
argument, integer milliseconds) and draws randomness only from the
``random`` callable its owner passes in.

Bad input (an unknown controller, socket or reply, an input a machine does not
accept in its state, a malformed identity, a contradictory mapping, time going
backwards) yields one ``Rejected`` effect with a stable snake_case code; every
handler validates before it mutates, so the engine's state -- clocks and
counters included -- is exactly as it was. Facts that arrive late (about an
older socket, a forgotten generation, a reply that already ended) change
nothing and say so in a ``Log``.

State stays bounded: a generation is forgotten once it is neither the newest
of its account nor named by an open reply, and a fact about a forgotten
generation is recognised as late by generation order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar, cast

from heirline.core import delivery
from heirline.core.book import ReplyBook
from heirline.core.delivery import Reply, ReplyState
from heirline.core.effects import (
    CancelTimer,
    CloseSocket,
    Effect,
    Log,
    Registered,
    RegisterRequest,
    Rejected,
    StartTimer,
    Unregistered,
)
from heirline.core.errors import ConfigError, HeirlineError, Rejection
from heirline.core.events import (
    Activity,
    ActivityKind,
    Event,
    HealthCheck,
    MappingLearned,
    RegistryAnswer,
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
from heirline.core.health import ControllerSnapshot, HealthAction, HealthConfig, HealthMonitor
from heirline.core.identity import (
    NO_KEYS,
    UNAUTHENTICATED,
    LidMapping,
    SelfIdentity,
    identity_keys,
    resolve,
)
from heirline.core.lifecycle import (
    SOCKET_STATES,
    AttemptCounter,
    Controller,
    LifecycleConfig,
    State,
)
from heirline.core.registry import ChangeKind, Registry
from heirline.core.routing import RouteKind, decide_route
from heirline.core.timers import (
    HEALTH,
    DeadlineTimer,
    HealthTimer,
    RetryTimer,
    WatchdogTimer,
)

E = TypeVar("E", bound=Event)
_Handler = Callable[[Event, int], list[Effect]]

#: The largest integer every binding holds exactly (JavaScript's ``Number.MAX_SAFE_INTEGER``).
MAX_SAFE_INT: Final = 2**53 - 1


def _describe(identity: SelfIdentity) -> str:
    return identity.describe() if identity.authenticated else "unauthenticated"


def _ignored(
    code: str, message: str, account: str | None, generation: int | None, level: str = "debug"
) -> list[Effect]:
    """A late or raced fact that changes nothing: say so, and do nothing else."""
    return [Log(level=level, code=code, message=message, account=account, generation=generation)]


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
    #: Whether registration goes through an external registry (``RegisterRequest`` effects
    #: answered by ``RegistryAnswer`` events); the default in-memory one answers at once.
    external_registry: bool = False

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

    @property
    def horizon_ms(self) -> int:
        """The furthest ahead of ``now`` the engine ever sets a deadline."""
        backoff = self.lifecycle.backoff
        return max(
            self.reply_deadline_ms,
            self.health.check_interval_ms,
            backoff.max_ms,
            self.lifecycle.watchdog_ms or 0,
        )


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
        self._health_armed = False
        self._now: int | None = None  # the last accepted time
        self._max_now = MAX_SAFE_INT - self.config.horizon_ms
        self._shut_down: str | None = None
        self._latest: dict[str, Controller] = {}  # account -> its newest generation
        self._older: dict[tuple[str, int], Controller] = {}  # older generations still named
        self._watched: set[str] = set()  # accounts the health policy keeps running
        self._book = ReplyBook(
            max_transmissions=self.config.max_transmissions,
            resendable_kinds=self.config.resendable_kinds,
            remember_ended=self.config.remember_ended,
            release=self._released,
        )
        self._handlers: dict[type[Event], _Handler] = {}
        self._on(Start, self._on_start)
        self._on(Stop, self._on_stop)
        self._on(SocketOpened, self._on_opened)
        self._on(SocketClosed, self._on_closed)
        self._on(Activity, self._on_activity)
        self._on(WatchdogSilence, self._on_watchdog)
        self._on(TimerFired, self._on_timer)
        self._on(HealthCheck, self._on_health_check)
        self._on(MappingLearned, self._on_mapping)
        self._on(ReplyCaptured, self._on_captured)
        self._on(ReplyReady, self._on_ready)
        self._on(TransmitAcked, self._on_acked)
        self._on(TransmitFailed, self._on_failed)
        self._on(RegistryAnswer, self._on_registry_answer)
        self._on(Shutdown, self._on_shutdown)

    def _on(self, cls: type[E], handler: Callable[[E, int], list[Effect]]) -> None:
        # Dispatch is keyed by the exact class, so the handler only ever sees a `cls`.
        self._handlers[cls] = cast(_Handler, handler)

    # ------------------------------------------------------------------ facade

    def handle(self, event: Event, now: int) -> list[Effect]:
        """Apply one fact at time ``now`` (ms) and return what to do, in order.

        Never raises for bad input: a refused input is answered with one
        ``Rejected`` effect and changes nothing.
        """
        handler = self._handlers.get(type(event))
        if handler is None:
            return [Rejected(code="unknown_event", message=f"unknown event {event!r}")]
        last = self._now
        if not 0 <= now <= self._max_now:
            return [
                Rejected(
                    code="bad_now",
                    message=f"now {now} is outside 0..{self._max_now} (2**53-1 minus the "
                    f"longest deadline the engine sets, {self.config.horizon_ms} ms)",
                )
            ]
        if last is not None and now < last:
            return [
                Rejected(
                    code="now_backwards", message=f"now {now} is before the previous now {last}"
                )
            ]
        if self._shut_down is not None:
            return [
                Rejected(code="shut_down", message=f"the engine was shut down ({self._shut_down})")
            ]
        first = self._health is None
        if first:  # the health policy's clock starts with the first accepted event
            self._health = HealthMonitor(self.config.health, now)
        try:
            effects = handler(event, now)
        except HeirlineError as err:
            if first:
                self._health = None
            return [Rejected(code=err.code, message=str(err))]
        self._now = now
        return effects

    # ------------------------------------------------------------------ queries

    @property
    def mapping(self) -> LidMapping:
        """The PN<->LID mapping the guard resolves identities through."""
        return self._mapping

    def current(self, account: str) -> int | None:
        """The registered generation of ``account``."""
        return self._registry.current(account)

    def generations(self, account: str) -> tuple[int, ...]:
        """The generations of ``account`` the engine still keeps, oldest first."""
        latest = self._latest.get(account)
        if latest is None:
            return ()
        older = sorted(g for a, g in self._older if a == account)
        return (*older, latest.generation)

    def controller_state(self, account: str, generation: int) -> State | None:
        """The lifecycle state of a generation, or ``None`` if unknown or forgotten."""
        ctl = self._find(account, generation)
        return None if ctl is None else ctl.state

    def controller_identity(self, account: str, generation: int) -> SelfIdentity | None:
        """The self identity the generation's current socket reported."""
        ctl = self._find(account, generation)
        return None if ctl is None else ctl.identity

    def controller_socket(self, account: str, generation: int) -> int | None:
        """The attempt number of the generation's latest socket, or ``None``."""
        ctl = self._find(account, generation)
        return None if ctl is None else ctl.socket

    def reply_state(self, reply_id: str) -> ReplyState | None:
        """The delivery state of a reply (terminal states stay visible while remembered)."""
        reply = self._book.get(reply_id)
        if reply is not None:
            return reply.state
        ended = self._book.ended(reply_id)
        return None if ended is None else ended.state

    def in_flight(self) -> dict[str, int]:
        """Reply id -> generation, for every reply with a transmission awaiting its ack."""
        return self._book.in_flight()

    def open_replies(self) -> tuple[str, ...]:
        """Ids of replies that have not ended yet."""
        return self._book.open_ids()

    def watched(self) -> tuple[str, ...]:
        """Accounts the health policy keeps running, sorted."""
        return tuple(sorted(self._watched))

    @property
    def shut_down(self) -> bool:
        """Whether the engine was shut down (it then rejects every input)."""
        return self._shut_down is not None

    # ------------------------------------------------------------- controllers

    def _find(self, account: str, generation: int) -> Controller | None:
        latest = self._latest.get(account)
        if latest is None:
            return None
        if latest.generation == generation:
            return latest
        return self._older.get((account, generation))

    def _ctl(self, account: str, generation: int) -> Controller | None:
        """The controller of ``generation``; ``None`` if it was forgotten (a late fact).

        A generation that was never issued is a :class:`Rejection`.
        """
        ctl = self._find(account, generation)
        if ctl is not None:
            return ctl
        latest = self._latest.get(account)
        if latest is None or not 1 <= generation < latest.generation:
            raise Rejection(
                "unknown_controller", f"no controller generation {generation} for {account!r}"
            )
        return None

    @staticmethod
    def _check_attempt(latest: Controller, attempt: int) -> None:
        """Reject a socket attempt number the account never issued."""
        issued = cast(AttemptCounter, latest.attempts).last_attempt
        if not 1 <= attempt <= issued:
            raise Rejection(
                "unknown_socket",
                f"socket {attempt} was never opened for {latest.account!r} "
                f"(highest attempt issued: {issued})",
            )

    def _forgettable(self, ctl: Controller) -> bool:
        latest = self._latest.get(ctl.account)
        return ctl is not latest and ctl.is_terminal and ctl.refs == 0

    def _released(self, ctl: Controller) -> None:
        """The book no longer names ``ctl``: forget it if nothing else needs it."""
        if self._forgettable(ctl):
            del self._older[(ctl.account, ctl.generation)]

    def _settle(self, ctl: Controller) -> None:
        """``ctl`` may just have ended: forget it if nothing refers to it any more."""
        if self._forgettable(ctl):
            self._older.pop((ctl.account, ctl.generation), None)

    def _on_start(self, ev: Start, now: int) -> list[Effect]:
        account = ev.account
        previous = self._latest.get(account)
        generation = self._registry.next_generation(account)
        attempts = previous.attempts if previous is not None else AttemptCounter()
        ctl = Controller(account, generation, self.config.lifecycle, attempts)
        ctl.event_ms = now
        if previous is not None:
            self._older[(account, previous.generation)] = previous
        self._latest[account] = ctl
        self._watched.add(account)
        out: list[Effect] = []
        if previous is not None:
            self._settle(previous)
        if self.config.health_timer and not self._health_armed:
            self._health_armed = True
            out.append(
                StartTimer(timer=HEALTH, deadline_ms=now + self.config.health.check_interval_ms)
            )
        if self.config.external_registry:
            return [
                RegisterRequest(account=account, generation=generation),
                *out,
                Log(
                    level="info",
                    code="registry_requested",
                    message=f"generation {generation} asks the registry for {account!r}",
                    account=account,
                    generation=generation,
                ),
            ]
        return self._register(ctl, now) + out

    def _register(self, ctl: Controller, now: int) -> list[Effect]:
        """Make ``ctl`` the current controller, stop its predecessor, and start it."""
        account, generation = ctl.account, ctl.generation
        change = self._registry.register(account, generation)
        assert change.kind is ChangeKind.REGISTERED
        out: list[Effect] = [
            Registered(account=account, generation=generation, predecessor=change.predecessor)
        ]
        if change.predecessor is not None:
            old = self._find(account, change.predecessor)
            if old is not None and not old.is_terminal:
                out += self._stop_ctl(old, f"superseded by generation {generation}", now)
        out += ctl.start(now)
        return out + self._wake(account, now)

    def _stop_ctl(self, ctl: Controller, reason: str, now: int) -> list[Effect]:
        out = ctl.stop(reason, now)
        ctl.identity = None
        ctl.keys = NO_KEYS
        out += self._unregister(ctl)
        if ctl.socket is not None:
            out += self._lose_in_flight(ctl, ctl.socket, f"controller stopped ({reason})", now)
        self._settle(ctl)
        return out

    def _unregister(self, ctl: Controller) -> list[Effect]:
        change = self._registry.unregister(ctl.account, ctl.generation)
        if change.kind is ChangeKind.UNREGISTERED:
            return [Unregistered(account=ctl.account, generation=ctl.generation)]
        return []

    def _on_stop(self, ev: Stop, now: int) -> list[Effect]:
        ctl = self._ctl(ev.account, ev.generation)
        if ctl is not None and ctl is self._latest[ev.account]:
            # The owner wants this account down: the health policy must not bring it back,
            # even when the generation already ended by itself (an exhausted one would be
            # restarted as gave-up).
            self._watched.discard(ev.account)
            assert self._health is not None
            self._health.forget(ev.account)
        if ctl is None or ctl.is_terminal:
            state = "over and forgotten" if ctl is None else ctl.state.value
            return _ignored(
                "stop_ignored", f"generation {ev.generation} is already {state}", ev.account,
                ev.generation,
            )  # fmt: skip
        out = self._stop_ctl(ctl, ev.reason, now)
        return out + self._wake(ev.account, now)

    def _on_registry_answer(self, ev: RegistryAnswer, now: int) -> list[Effect]:
        if not self.config.external_registry:
            raise Rejection(
                "no_external_registry", "this engine's registry is in memory; it asks no one"
            )
        ctl = self._ctl(ev.account, ev.generation)
        if ctl is None or ctl.is_terminal:
            return _ignored(
                "late_registry_answer",
                f"registry answer for generation {ev.generation}, which is over",
                ev.account,
                ev.generation,
            )
        if ev.granted:
            if ctl.state is not State.IDLE:
                return _ignored(
                    "registry_renewed",
                    f"generation {ev.generation} holds the registration",
                    ev.account,
                    ev.generation,
                )
            if ctl is not self._latest[ev.account]:
                return self._stop_ctl(ctl, "a newer generation was started", now)
            return self._register(ctl, now)
        reason = f"registry refused: {ev.reason or 'another owner holds the account'}"
        return self._stop_ctl(ctl, reason, now) + self._wake(ev.account, now)

    # ----------------------------------------------------------------- sockets

    def _on_opened(self, ev: SocketOpened, now: int) -> list[Effect]:
        identity = SelfIdentity.parse(pn=ev.pn, lid=ev.lid, e164=ev.e164)
        ctl, current = self._live_socket(ev.account, ev.generation, ev.attempt)
        if ctl is None or not current:
            # The socket raced a stop or a newer socket: close it rather than leak a session.
            why = (
                "is over"
                if ctl is None or ctl.is_terminal
                else "has a newer socket"
                if ev.attempt != ctl.socket
                else f"is in {ctl.state.value}: that socket closed already"
            )
            return [
                CloseSocket(
                    account=ev.account,
                    generation=ev.generation,
                    attempt=ev.attempt,
                    reason=f"stale socket: generation {ev.generation} {why}",
                )
            ]
        out = ctl.opened(now)
        ctl.identity = ctl.last_identity = identity
        ctl.keys = identity_keys(resolve(identity, self._mapping))
        ctl.event_ms = now
        out.append(
            Log(
                level="info",
                code="socket_opened",
                message=f"socket {ev.attempt} open as {_describe(identity)}",
                account=ev.account,
                generation=ev.generation,
            )
        )
        return out + self._wake(ev.account, now)

    def _live_socket(
        self, account: str, generation: int, attempt: int
    ) -> tuple[Controller | None, bool]:
        """The controller of a fact about socket ``attempt``, and whether it is that socket.

        ``(None, False)``: the generation was forgotten. A socket or generation
        never issued is a :class:`Rejection`.
        """
        ctl = self._ctl(account, generation)
        self._check_attempt(self._latest[account], attempt)
        if ctl is None:
            return None, False
        # The latest socket is current only while the controller has it (connecting, open or
        # closing): a second close of a socket that already closed is as late as any other.
        return ctl, attempt == ctl.socket and ctl.state in SOCKET_STATES

    def _on_closed(self, ev: SocketClosed, now: int) -> list[Effect]:
        ctl, current = self._live_socket(ev.account, ev.generation, ev.attempt)
        if ctl is None or not current:
            what = "a forgotten generation" if ctl is None else f"an older socket or {ctl.state}"
            return _ignored(
                "late_close",
                f"close (status {ev.status}) of socket {ev.attempt} of {what} ignored",
                ev.account,
                ev.generation,
            )
        # Draw the jitter only for a close the controller can take: a rejected close (a second
        # close of a socket that already closed, in backoff) must not move the random stream.
        u = self._random() if ctl.state in SOCKET_STATES else 0.0
        out = ctl.closed(ev.status, now, u)
        ctl.identity = None
        ctl.keys = NO_KEYS
        ctl.event_ms = now
        if ctl.is_terminal:  # logged out, replaced, forbidden, exhausted
            out += self._unregister(ctl)
        out += self._lose_in_flight(ctl, ev.attempt, f"socket closed (status {ev.status})", now)
        self._settle(ctl)
        return out + self._wake(ev.account, now)

    def _on_activity(self, ev: Activity, now: int) -> list[Effect]:
        ctl, current = self._live_socket(ev.account, ev.generation, ev.attempt)
        if ctl is not None and current and ctl.state is State.OPEN:
            ctl.activity(now)
            if ev.kind is ActivityKind.INBOUND:
                ctl.event_ms = now
        return []  # activity of an older socket is late and changes nothing

    def _on_watchdog(self, ev: WatchdogSilence, now: int) -> list[Effect]:
        ctl, current = self._live_socket(ev.account, ev.generation, ev.attempt)
        if ctl is None or not current or ctl.state is not State.OPEN:
            # The adapter's watchdog raced a close: there is no open socket to close.
            return _ignored(
                "stale_watchdog",
                f"watchdog silence of socket {ev.attempt} ignored: it is not open",
                ev.account,
                ev.generation,
            )
        return ctl.watchdog(now, ev.silent_ms)

    def _lose_in_flight(self, ctl: Controller, attempt: int, why: str, now: int) -> list[Effect]:
        out: list[Effect] = []
        for reply in self._book.through(ctl.account, attempt):
            out += self._lost(reply, True, why, now)
        return out

    # ------------------------------------------------------------------ timers

    def _on_timer(self, ev: TimerFired, now: int) -> list[Effect]:
        timer = ev.timer
        if isinstance(timer, DeadlineTimer):
            return self._book.deadline(timer.reply_id)
        if isinstance(timer, HealthTimer):
            if not self._health_armed:
                raise Rejection("unknown_timer", "this engine never started a health timer")
            out = self._health_check(now)
            out.append(
                StartTimer(timer=HEALTH, deadline_ms=now + self.config.health.check_interval_ms)
            )
            return out
        if isinstance(timer, RetryTimer):
            ctl = self._ctl(timer.account, timer.generation)
            if ctl is None or ctl.state is not State.BACKOFF:
                state = "forgotten" if ctl is None else ctl.state.value
                return _ignored(
                    "stale_timer",
                    f"retry timer of a {state} generation ignored",
                    timer.account,
                    timer.generation,
                )
            ctl.event_ms = now
            return ctl.retry_due(now)
        return self._watchdog_due(timer, now)

    def _watchdog_due(self, timer: WatchdogTimer, now: int) -> list[Effect]:
        latest = self._latest.get(timer.account)
        if latest is None:
            raise Rejection("unknown_timer", f"no account {timer.account!r} has a watchdog")
        self._check_attempt(latest, timer.attempt)
        ctl: Controller | None = latest if latest.socket == timer.attempt else None
        if ctl is None:
            ctl = next(
                (
                    c
                    for (a, _), c in self._older.items()
                    if a == timer.account and c.socket == timer.attempt
                ),
                None,
            )
        if ctl is None or ctl.state is not State.OPEN or self.config.lifecycle.watchdog_ms is None:
            return _ignored(
                "stale_timer",
                f"watchdog of socket {timer.attempt} ignored: it is not open",
                timer.account,
                None if ctl is None else ctl.generation,
            )
        return ctl.watchdog_due(now)

    # ------------------------------------------------------------------ health

    def _on_health_check(self, ev: HealthCheck, now: int) -> list[Effect]:
        return self._health_check(now)

    def _health_check(self, now: int) -> list[Effect]:
        health = self._health
        assert health is not None
        out: list[Effect] = []
        for account in sorted(self._watched):
            ctl = self._latest[account]
            decision = health.evaluate(self._snapshot(ctl), now)
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
            health.record_restart(account, now)
            out += self._on_start(Start(account=account), now)
        return out

    def _snapshot(self, ctl: Controller) -> ControllerSnapshot:
        state = ctl.state
        return ControllerSnapshot(
            account=ctl.account,
            generation=ctl.generation,
            state=state,
            started_at_ms=ctl.started_at_ms if ctl.started_at_ms is not None else ctl.event_ms,
            last_event_ms=ctl.event_ms,
            opened_at_ms=ctl.opened_at_ms,
            retry_at_ms=ctl.retry_at_ms,
            retries=ctl.retries,
            connecting_since_ms=ctl.last_change_ms if state is State.CONNECTING else None,
            closing_since_ms=ctl.last_change_ms if state is State.CLOSING else None,
            max_attempts=ctl.config.backoff.max_attempts,
        )

    # ----------------------------------------------------------------- mapping

    def _on_mapping(self, ev: MappingLearned, now: int) -> list[Effect]:
        mapping = self._mapping.with_pair(ev.pn, ev.lid)
        if mapping == self._mapping:
            return []  # a pair already known changes nothing
        self._mapping = mapping
        # Re-resolve every identity routing may compare: the new pair may fill a form.
        for ctl in (*self._latest.values(), *self._older.values()):
            if ctl.identity is not None:
                ctl.keys = identity_keys(resolve(ctl.identity, mapping))
        self._book.reresolve(mapping)
        out: list[Effect] = []
        for account in self._book.waiting_accounts():
            out += self._wake(account, now)
        return out

    # ----------------------------------------------------------------- replies

    def _on_captured(self, ev: ReplyCaptured, now: int) -> list[Effect]:
        message_id = ev.message_id if ev.message_id is not None else ev.reply_id
        self._book.check_new(ev.reply_id, ev.kind, message_id)
        ctl = self._ctl(ev.account, ev.generation)
        if ctl is None:
            raise Rejection(
                "generation_forgotten",
                f"generation {ev.generation} of {ev.account!r} is over and forgotten; "
                "capture replies with a live generation",
            )
        deadline = (
            ev.deadline_ms if ev.deadline_ms is not None else now + self.config.reply_deadline_ms
        )
        if not now < deadline <= MAX_SAFE_INT:
            raise Rejection(
                "bad_deadline", f"deadline {deadline} is not in ({now}, {MAX_SAFE_INT}]"
            )
        identity = resolve(ctl.last_identity or UNAUTHENTICATED, self._mapping)
        out = self._book.capture(ev.reply_id, ctl, ev.chat, ev.kind, message_id, identity, deadline)
        if ctl.state is State.OPEN:  # an inbound message was handled: the socket is busy
            ctl.activity(now)
            ctl.event_ms = now
        return out

    def _on_ready(self, ev: ReplyReady, now: int) -> list[Effect]:
        reply = self._book.ready(ev.reply_id, ev.payload)
        return self._route(reply, now)

    def _route(self, reply: Reply, now: int) -> list[Effect]:
        account = reply.account
        current_gen = self._registry.current(account)
        current = None if current_gen is None else self._find(account, current_gen)
        route, generation = decide_route(reply.keys, reply.origin, current)
        kind = route.kind
        via = (
            reply.origin
            if kind is RouteKind.ORIGIN
            else current
            if kind is RouteKind.SUCCESSOR
            else None
        )
        if via is not None:
            via.event_ms = now  # a transmission is activity
        return self._book.apply(reply, route, generation, via)

    def _wake(self, account: str, now: int) -> list[Effect]:
        out: list[Effect] = []
        for reply in self._book.waiting(account):
            if reply.state is ReplyState.WAITING:
                out += self._route(reply, now)
        return out

    def _lost(self, reply: Reply, io_started: bool, why: str, now: int) -> list[Effect]:
        ended = self._book.lost(reply, io_started, why)
        return self._route(reply, now) if ended is None else ended

    def _on_acked(self, ev: TransmitAcked, now: int) -> list[Effect]:
        reply = self._book.get(ev.reply_id)
        out = self._book.acked(ev.reply_id, ev.generation, ev.attempt)
        ctl = None if reply is None else self._find(reply.account, ev.generation)
        if ctl is not None and ctl.socket == ev.attempt and ctl.state is State.OPEN:
            ctl.activity(now)  # the channel answered through this socket
            ctl.event_ms = now
        return out

    def _on_failed(self, ev: TransmitFailed, now: int) -> list[Effect]:
        lost = self._book.failed(ev.reply_id, ev.generation, ev.attempt, ev.io_started, ev.error)
        if isinstance(lost, list):
            return lost
        return self._lost(lost, ev.io_started, ev.error or "transmission failed", now)

    # ---------------------------------------------------------------- shutdown

    def _on_shutdown(self, ev: Shutdown, now: int) -> list[Effect]:
        out = self._book.shutdown(ev.reason)
        for ctl in (*self._older.values(), *self._latest.values()):
            if not ctl.is_terminal:
                out += self._stop_ctl(ctl, ev.reason, now)
        self._watched.clear()
        if self._health_armed:
            out.append(CancelTimer(timer=HEALTH))
        self._shut_down = ev.reason
        return out
