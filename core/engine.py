"""The engine facade: ``Engine.handle(event, now) -> list[Effect]``.

The engine orchestrates: it dispatches each fact to its handler, keeps the
accounts and their controller generations (:mod:`heirline.core.accounts`),
runs the health policy over the accounts that may need attention, resolves
identities through the PN<->LID mapping, and calls into the reply book
(:mod:`heirline.core.book`), which owns the delivery policy. It never does
I/O, never reads a clock (``now`` is an argument, integer milliseconds) and
draws randomness only from the ``random`` callable its owner passes in.

Bad input (an unknown controller, socket or reply, an input a machine does not
accept in its state, a malformed identity, a contradictory mapping, time going
backwards) yields one ``Rejected`` effect with a stable snake_case code; every
handler validates before it mutates, so the engine's state -- clocks and
counters included -- is exactly as it was. Facts that arrive late (about an
older socket, a forgotten generation, a reply that already ended) change
nothing and say so in a ``Log`` (at debug level).

Every step costs O(1) in the number of accounts, except what the step is about:
a health sweep looks at the accounts that may need attention, a new mapping pair
at the identities it can complete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from heirline.core.accounts import Account, Accounts
from heirline.core.book import ReplyBook
from heirline.core.config import MAX_SAFE_INT, EngineConfig
from heirline.core.delivery import Reply, ReplyState
from heirline.core.effects import (
    CancelTimer,
    CloseSocket,
    Effect,
    Log,
    LogLevel,
    Registered,
    RegisterRequest,
    Rejected,
    StartTimer,
    Unregistered,
)
from heirline.core.errors import HeirlineError, Rejection
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
from heirline.core.health import HealthMonitor
from heirline.core.identity import (
    NO_KEYS,
    UNAUTHENTICATED,
    KeyIndex,
    Keys,
    LidMapping,
    MappingTable,
    SelfIdentity,
    identity_keys,
    resolve,
)
from heirline.core.lifecycle import Controller, State
from heirline.core.registry import ChangeKind
from heirline.core.routing import RouteKind, decide_route
from heirline.core.sweep import sweep
from heirline.core.timers import HEALTH, DeadlineTimer, HealthTimer, RetryTimer, WatchdogTimer

__all__ = ["MAX_SAFE_INT", "Engine", "EngineConfig"]

E = TypeVar("E", bound=Event)
_Handler = Callable[[Event, int], list[Effect]]
_DEBUG, _INFO = LogLevel.DEBUG, LogLevel.INFO

#: How many distinct socket identities the engine remembers parsed: a reconnect of a
#: recently seen identity (a restart storm) parses nothing. The oldest is dropped first;
#: small, so it costs next to nothing per account at scale.
IDENTITY_CACHE = 4096

# Enum members the hot paths read, as module constants (class attribute access is slow on 3.11).
_ACTIVITYKIND_INBOUND = ActivityKind.INBOUND
_CHANGEKIND_REGISTERED = ChangeKind.REGISTERED
_CHANGEKIND_UNREGISTERED = ChangeKind.UNREGISTERED
_REPLYSTATE_WAITING = ReplyState.WAITING
_ROUTEKIND_ORIGIN = RouteKind.ORIGIN
_ROUTEKIND_SUCCESSOR = RouteKind.SUCCESSOR
_STATE_BACKOFF = State.BACKOFF
_STATE_IDLE = State.IDLE
_STATE_OPEN = State.OPEN


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
        cfg = self.config
        self._random = random
        self._mapping = MappingTable(mapping if mapping is not None else LidMapping())
        self._mapping_version = 0
        self._accounts = Accounts(cfg.lifecycle)
        self._incomplete: KeyIndex[Controller] = KeyIndex()
        # (pn, lid, e164) as a socket showed them -> (identity, its keys, mapping version)
        self._identities: dict[
            tuple[str | None, str | None, str | None], tuple[SelfIdentity, Keys, int]
        ] = {}
        self._health: HealthMonitor | None = None
        self._health_armed = False
        self._now: int | None = None  # the last accepted time
        self._max_now = MAX_SAFE_INT - cfg.horizon_ms
        self._shut_down: str | None = None
        self._log_level = cfg.log_level
        self._book = ReplyBook(
            max_transmissions=cfg.max_transmissions,
            resendable_kinds=cfg.resendable_kinds,
            remember_ended=cfg.remember_ended,
            release=self._accounts.settle,
            log_level=cfg.log_level,
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
            return [Rejected("unknown_event", f"unknown event {event!r}")]
        if not 0 <= now <= self._max_now:
            return [self._bad_now(now)]
        last = self._now
        if last is not None and now < last:
            return [Rejected("now_backwards", f"now {now} is before the previous now {last}")]
        if self._shut_down is not None:
            return [Rejected("shut_down", f"the engine was shut down ({self._shut_down})")]
        first = self._health is None
        if first:  # the health policy's clock starts with the first accepted event
            self._health = HealthMonitor(self.config.health, now)
        try:
            effects = handler(event, now)
        except HeirlineError as err:
            if first:
                self._health = None
            return [Rejected(err.code, str(err))]
        self._now = now
        return effects

    def _bad_now(self, now: int) -> Rejected:
        horizon = self.config.horizon_ms
        return Rejected(
            "bad_now",
            f"now {now} is outside 0..{self._max_now} (2**53-1 minus the "
            f"longest deadline the engine sets, {horizon} ms)",
        )

    # ------------------------------------------------------------------ queries

    @property
    def mapping(self) -> LidMapping:
        """The PN<->LID mapping the guard resolves identities through (a snapshot)."""
        return self._mapping.snapshot()

    def current(self, account: str) -> int | None:
        """The registered generation of ``account``."""
        acct = self._accounts.get(account)
        return None if acct is None else acct.current

    def generations(self, account: str) -> tuple[int, ...]:
        """The generations of ``account`` the engine still keeps, oldest first."""
        return self._accounts.generations(account)

    def controller_state(self, account: str, generation: int) -> State | None:
        """The lifecycle state of a generation, or ``None`` if unknown or forgotten."""
        ctl = self._accounts.find(account, generation)
        return None if ctl is None else ctl.state

    def controller_identity(self, account: str, generation: int) -> SelfIdentity | None:
        """The self identity the generation's current socket reported."""
        ctl = self._accounts.find(account, generation)
        return None if ctl is None else ctl.identity

    def controller_socket(self, account: str, generation: int) -> int | None:
        """The attempt number of the generation's latest socket, or ``None``."""
        ctl = self._accounts.find(account, generation)
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
        return tuple(sorted(a.name for a in self._accounts if a.watched))

    @property
    def shut_down(self) -> bool:
        """Whether the engine was shut down (it then rejects every input)."""
        return self._shut_down is not None

    # ------------------------------------------------------------- logging

    def _log(
        self,
        level: LogLevel,
        code: str,
        message: Callable[[], str] | str,
        account: str | None,
        generation: int | None,
    ) -> list[Effect]:
        """One log record if ``level`` is built at all (``message`` may be a deferred string)."""
        if level < self._log_level:
            return []
        text = message if isinstance(message, str) else message()
        return [Log(level.label, code, text, account, generation)]

    # ------------------------------------------------------------- controllers

    def _on_start(self, ev: Start, now: int) -> list[Effect]:
        account = ev.account
        acct, ctl = self._accounts.new_generation(account, now)
        out: list[Effect] = []
        if self.config.health_timer and not self._health_armed:
            self._health_armed = True
            out.append(StartTimer(HEALTH, now + self.config.health.check_interval_ms))
        if self.config.external_registry:
            return [
                RegisterRequest(account, ctl.generation),
                *out,
                *self._log(
                    _INFO,
                    "registry_requested",
                    lambda: f"generation {ctl.generation} asks the registry for {account!r}",
                    account,
                    ctl.generation,
                ),
            ]
        return self._register(acct, ctl, now) + out

    def _register(self, acct: Account, ctl: Controller, now: int) -> list[Effect]:
        """Make ``ctl`` the current controller, stop its predecessor, and start it."""
        account, generation = ctl.account, ctl.generation
        change = acct.register(account, generation)
        assert change.kind is _CHANGEKIND_REGISTERED
        out: list[Effect] = [Registered(account, generation, change.predecessor)]
        if change.predecessor is not None:
            old = self._accounts.find(account, change.predecessor)
            if old is not None and not old.is_terminal:
                out += self._stop_ctl(old, f"superseded by generation {generation}", now)
        out += ctl.start(now)
        self._accounts.place(acct)
        return out + self._wake(account, now)

    def _set_keys(self, ctl: Controller, keys: Keys) -> None:
        """The keys of the socket's identity (``NO_KEYS``: no socket), kept in the index.

        Only keys with exactly one of the phone number and the LID are indexed:
        the others no mapping pair can change (see ``KeyIndex``).
        """
        old = ctl.keys
        if (old[0] is None) is not (old[1] is None):
            self._incomplete.remove(ctl, old)
        ctl.keys = keys
        if (keys[0] is None) is not (keys[1] is None):
            self._incomplete.add(ctl, keys)

    def _stop_ctl(self, ctl: Controller, reason: str, now: int) -> list[Effect]:
        out = ctl.stop(reason, now)
        self._set_keys(ctl, NO_KEYS)
        out += self._unregister(ctl)
        if ctl.socket is not None:
            out += self._lose_in_flight(ctl, ctl.socket, f"controller stopped ({reason})", now)
        self._accounts.settle(ctl)
        return out

    def _unregister(self, ctl: Controller) -> list[Effect]:
        acct = cast(Account, ctl.attempts)
        change = acct.unregister(ctl.account, ctl.generation)
        if change.kind is _CHANGEKIND_UNREGISTERED:
            return [Unregistered(ctl.account, ctl.generation)]
        return []

    def _on_stop(self, ev: Stop, now: int) -> list[Effect]:
        ctl = self._accounts.lookup(ev.account, ev.generation)
        acct = self._accounts.get(ev.account)
        if ctl is not None and acct is not None and ctl is acct.latest:
            # The owner wants this account down: the health policy must not bring it back,
            # even when the generation already ended by itself (an exhausted one would be
            # restarted as gave-up).
            acct.watched = False
            assert self._health is not None
            self._health.forget(ev.account)
            self._accounts.place(acct)
        if ctl is None or ctl.is_terminal:
            state = "over and forgotten" if ctl is None else ctl.state.value
            message = f"generation {ev.generation} is already {state}"
            return self._log(_DEBUG, "stop_ignored", message, ev.account, ev.generation)
        out = self._stop_ctl(ctl, ev.reason, now)
        self._accounts.refile(ctl)
        return out + self._wake(ev.account, now)

    def _on_registry_answer(self, ev: RegistryAnswer, now: int) -> list[Effect]:
        if not self.config.external_registry:
            raise Rejection(
                "no_external_registry", "this engine's registry is in memory; it asks no one"
            )
        ctl = self._accounts.lookup(ev.account, ev.generation)
        if ctl is None or ctl.is_terminal:
            message = f"registry answer for generation {ev.generation}, which is over"
            return self._log(_DEBUG, "late_registry_answer", message, ev.account, ev.generation)
        acct = cast(Account, ctl.attempts)
        if ev.granted:
            if ctl.state is not _STATE_IDLE:
                message = f"generation {ev.generation} holds the registration"
                return self._log(_DEBUG, "registry_renewed", message, ev.account, ev.generation)
            if ctl is not acct.latest:
                return self._stop_ctl(ctl, "a newer generation was started", now)
            return self._register(acct, ctl, now)
        reason = f"registry refused: {ev.reason or 'another owner holds the account'}"
        out = self._stop_ctl(ctl, reason, now)
        self._accounts.place(acct)
        return out + self._wake(ev.account, now)

    # ----------------------------------------------------------------- sockets

    def _parse(self, ev: SocketOpened) -> tuple[SelfIdentity, Keys, bool]:
        """The identity a socket showed, its keys through the current mapping, and whether
        they are new to the cache (the caller remembers them once the input is accepted)."""
        known = self._identities.get((ev.pn, ev.lid, ev.e164))
        if known is not None:
            identity, keys, version = known
            if version == self._mapping_version:
                return identity, keys, False
        else:
            identity = SelfIdentity.parse(pn=ev.pn, lid=ev.lid, e164=ev.e164)
        return identity, identity_keys(resolve(identity, self._mapping)), True

    def _remember(self, ev: SocketOpened, identity: SelfIdentity, keys: Keys) -> None:
        cache = self._identities
        raw = (ev.pn, ev.lid, ev.e164)
        if raw not in cache and len(cache) >= IDENTITY_CACHE:
            del cache[next(iter(cache))]
        cache[raw] = (identity, keys, self._mapping_version)

    def _on_opened(self, ev: SocketOpened, now: int) -> list[Effect]:
        identity, keys, fresh = self._parse(ev)
        ctl, current = self._accounts.live_socket(ev.account, ev.generation, ev.attempt)
        if ctl is None or not current:
            # The socket raced a stop or a newer socket: close it rather than leak a session.
            if ctl is None or ctl.is_terminal:
                why = "is over"
            elif ev.attempt != ctl.socket:
                why = "has a newer socket"
            else:
                why = f"is in {ctl.state.value}: that socket closed already"
            reason = f"stale socket: generation {ev.generation} {why}"
            return [CloseSocket(ev.account, ev.generation, ev.attempt, None, reason)]
        out = ctl.opened(now)  # accepted from here on: nothing below refuses
        if fresh:
            self._remember(ev, identity, keys)
        ctl.last_identity = identity
        self._set_keys(ctl, keys)
        self._accounts.refile(ctl, now)
        if self._log_level <= _INFO:
            described = identity.describe() if identity.authenticated else "unauthenticated"
            message = f"socket {ev.attempt} open as {described}"
            out.append(Log("info", "socket_opened", message, ev.account, ev.generation))
        return out + self._wake(ev.account, now)

    def _on_closed(self, ev: SocketClosed, now: int) -> list[Effect]:
        ctl, current = self._accounts.live_socket(ev.account, ev.generation, ev.attempt)
        if ctl is None or not current:
            return self._log(
                _DEBUG,
                "late_close",
                lambda: (
                    f"close (status {ev.status}) of socket {ev.attempt} of "
                    + (
                        "a forgotten generation"
                        if ctl is None
                        else f"an older socket or {ctl.state}"
                    )
                    + " ignored"
                ),
                ev.account,
                ev.generation,
            )
        out = ctl.closed(ev.status, now, self._random())
        self._set_keys(ctl, NO_KEYS)
        terminal = ctl.is_terminal  # logged out, replaced, forbidden, exhausted
        if terminal:
            out += self._unregister(ctl)
        if self._book.has_in_flight(ev.account, ev.attempt):
            why = f"socket closed (status {ev.status})"
            out += self._lose_in_flight(ctl, ev.attempt, why, now)
        if terminal:
            self._accounts.settle(ctl)
        self._accounts.refile(ctl, now)
        return out + self._wake(ev.account, now)

    def _on_activity(self, ev: Activity, now: int) -> list[Effect]:
        ctl, current = self._accounts.live_socket(ev.account, ev.generation, ev.attempt)
        if ctl is not None and current and ctl.state is _STATE_OPEN:
            ctl.activity(now)
            if ev.kind is _ACTIVITYKIND_INBOUND:
                self._accounts.touch(ctl, now)
        return []  # activity of an older socket is late and changes nothing

    def _on_watchdog(self, ev: WatchdogSilence, now: int) -> list[Effect]:
        ctl, current = self._accounts.live_socket(ev.account, ev.generation, ev.attempt)
        if ctl is None or not current or ctl.state is not _STATE_OPEN:
            # The adapter's watchdog raced a close: there is no open socket to close.
            message = f"watchdog silence of socket {ev.attempt} ignored: it is not open"
            return self._log(_DEBUG, "stale_watchdog", message, ev.account, ev.generation)
        out = ctl.watchdog(now, ev.silent_ms)
        self._accounts.refile(ctl)
        return out

    def _lose_in_flight(self, ctl: Controller, attempt: int, why: str, now: int) -> list[Effect]:
        if not self._book.has_in_flight(ctl.account, attempt):
            return []
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
            out.append(StartTimer(HEALTH, now + self.config.health.check_interval_ms))
            return out
        if isinstance(timer, RetryTimer):
            ctl = self._accounts.lookup(timer.account, timer.generation)
            if ctl is None or ctl.state is not _STATE_BACKOFF:
                state = "forgotten" if ctl is None else ctl.state.value
                message = f"retry timer of a {state} generation ignored"
                return self._log(_DEBUG, "stale_timer", message, timer.account, timer.generation)
            out = ctl.retry_due(now)
            self._accounts.refile(ctl, now)
            return out
        return self._watchdog_due(timer, now)

    def _watchdog_due(self, timer: WatchdogTimer, now: int) -> list[Effect]:
        acct = self._accounts.get(timer.account)
        if acct is None:
            raise Rejection("unknown_timer", f"no account {timer.account!r} has a watchdog")
        if not 1 <= timer.attempt <= acct.last_attempt:
            raise Rejection(
                "unknown_socket",
                f"socket {timer.attempt} was never opened for {timer.account!r} "
                f"(highest attempt issued: {acct.last_attempt})",
            )
        ctl = self._accounts.socket_owner(timer.account, timer.attempt)
        if ctl is None or ctl.state is not _STATE_OPEN or self.config.lifecycle.watchdog_ms is None:
            message = f"watchdog of socket {timer.attempt} ignored: it is not open"
            generation = None if ctl is None else ctl.generation
            return self._log(_DEBUG, "stale_timer", message, timer.account, generation)
        out = ctl.watchdog_due(now)
        self._accounts.place(acct)
        return out

    # ------------------------------------------------------------------ health

    def _on_health_check(self, ev: HealthCheck, now: int) -> list[Effect]:
        return self._health_check(now)

    def _health_check(self, now: int) -> list[Effect]:
        assert self._health is not None
        return sweep(self._accounts, self._health, now, self._log_level, self._restart)

    def _restart(self, account: str, now: int) -> list[Effect]:
        return self._on_start(Start(account=account), now)

    # ----------------------------------------------------------------- mapping

    def _on_mapping(self, ev: MappingLearned, now: int) -> list[Effect]:
        pair = self._mapping.add(ev.pn, ev.lid)
        if pair is None:
            return []  # a pair already known changes nothing
        self._mapping_version += 1
        mapping = self._mapping
        accounts: dict[str, None] = {}
        # Only identities missing the form this pair fills can change.
        for ctl in self._incomplete.touched(*pair):
            identity = ctl.identity
            assert identity is not None
            keys = identity_keys(resolve(identity, mapping))
            if keys != ctl.keys:
                self._set_keys(ctl, keys)
                accounts[ctl.account] = None
        for account in self._book.reresolve(*pair, mapping):
            accounts[account] = None
        out: list[Effect] = []
        for account in sorted(accounts):
            out += self._wake(account, now)
        return out

    # ----------------------------------------------------------------- replies

    def _on_captured(self, ev: ReplyCaptured, now: int) -> list[Effect]:
        message_id = ev.message_id if ev.message_id is not None else ev.reply_id
        self._book.check_new(ev.reply_id, ev.kind, message_id)
        ctl = self._accounts.lookup(ev.account, ev.generation)
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
        if ctl.state is _STATE_OPEN:  # an inbound message was handled: the socket is busy
            ctl.activity(now)
            self._accounts.touch(ctl, now)
        return out

    def _on_ready(self, ev: ReplyReady, now: int) -> list[Effect]:
        reply = self._book.ready(ev.reply_id, ev.payload)
        return self._route(reply, now)

    def _route(self, reply: Reply, now: int) -> list[Effect]:
        acct = self._accounts.get(reply.account)
        assert acct is not None
        current_gen = acct.current
        latest = acct.latest
        current = (
            latest
            if current_gen == latest.generation
            else None
            if current_gen is None
            else self._accounts.find(reply.account, current_gen)
        )
        route, generation = decide_route(reply.keys, reply.origin, current)
        kind = route.kind
        via = (
            reply.origin
            if kind is _ROUTEKIND_ORIGIN
            else current
            if kind is _ROUTEKIND_SUCCESSOR
            else None
        )
        if via is not None:
            self._accounts.touch(via, now)  # a transmission is activity
        return self._book.apply(reply, route, generation, via)

    def _wake(self, account: str, now: int) -> list[Effect]:
        if not self._book.has_waiting(account):
            return []
        out: list[Effect] = []
        for reply in self._book.waiting(account):
            if reply.state is _REPLYSTATE_WAITING:
                out += self._route(reply, now)
        return out

    def _lost(self, reply: Reply, io_started: bool, why: str, now: int) -> list[Effect]:
        ended = self._book.lost(reply, io_started, why)
        return self._route(reply, now) if ended is None else ended

    def _on_acked(self, ev: TransmitAcked, now: int) -> list[Effect]:
        reply = self._book.get(ev.reply_id)
        out = self._book.acked(ev.reply_id, ev.generation, ev.attempt)
        ctl = None if reply is None else self._accounts.find(reply.account, ev.generation)
        if ctl is not None and ctl.socket == ev.attempt and ctl.state is _STATE_OPEN:
            ctl.activity(now)  # the channel answered through this socket
            self._accounts.touch(ctl, now)
        return out

    def _on_failed(self, ev: TransmitFailed, now: int) -> list[Effect]:
        lost = self._book.failed(ev.reply_id, ev.generation, ev.attempt, ev.io_started, ev.error)
        if isinstance(lost, list):
            return lost
        return self._lost(lost, ev.io_started, ev.error or "transmission failed", now)

    # ---------------------------------------------------------------- shutdown

    def _on_shutdown(self, ev: Shutdown, now: int) -> list[Effect]:
        out = self._book.shutdown(ev.reason)
        for ctl in list(self._accounts.controllers()):
            if not ctl.is_terminal:
                out += self._stop_ctl(ctl, ev.reason, now)
        self._accounts.unwatch_all()
        if self._health_armed:
            out.append(CancelTimer(HEALTH))
        self._shut_down = ev.reason
        return out
