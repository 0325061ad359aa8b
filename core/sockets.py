"""The controller side of the engine: generations, the registry, sockets, timers, health.

:class:`Controllers` holds the handlers of the facts about controllers and
their sockets (start, stop, registry answers, opens, closes, activity,
watchdogs, retry and health timers, mapping facts) and the shutdown. See
:mod:`heirline.core.replies` for how the engine's handlers are laid out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import cast

from heirline.core.accounts import Account
from heirline.core.controller import Controller
from heirline.core.effects import (
    CancelTimer,
    CloseSocket,
    Effect,
    Log,
    LogLevel,
    Registered,
    RegisterRequest,
    StartTimer,
    Unregistered,
)
from heirline.core.errors import (
    Rejection,
)
from heirline.core.events import (
    Activity,
    ActivityKind,
    HealthCheck,
    MappingLearned,
    RegistryAnswer,
    Shutdown,
    SocketClosed,
    SocketOpened,
    Start,
    Stop,
    TimerFired,
    WatchdogSilence,
)
from heirline.core.health import HealthMonitor
from heirline.core.identity import (
    NO_KEYS,
    KeyIndex,
    Keys,
    SelfIdentity,
    identity_keys,
    resolve,
)
from heirline.core.lifecycle import State
from heirline.core.registry import ChangeKind
from heirline.core.replies import Replies
from heirline.core.sweep import sweep
from heirline.core.timers import HEALTH, DeadlineTimer, HealthTimer, RetryTimer, WatchdogTimer

_DEBUG, _INFO = LogLevel.DEBUG, LogLevel.INFO

#: How many distinct socket identities the engine remembers parsed: a reconnect of a
#: recently seen identity (a restart storm) parses nothing. The oldest is dropped first;
#: small, so it costs next to nothing per account at scale.
IDENTITY_CACHE = 4096
# Enum members the hot paths read, as module constants (class attribute access is slow on 3.11).
_ACTIVITYKIND_INBOUND = ActivityKind.INBOUND
_CHANGEKIND_REGISTERED = ChangeKind.REGISTERED
_CHANGEKIND_UNREGISTERED = ChangeKind.UNREGISTERED
_STATE_BACKOFF = State.BACKOFF
_STATE_IDLE = State.IDLE
_STATE_OPEN = State.OPEN


class Controllers(Replies):
    """The engine's handlers of controller and socket facts (see the module docstring)."""

    _random: Callable[[], float]
    _incomplete: KeyIndex[Controller]
    _identities: OrderedDict[
        tuple[str | None, str | None, str | None], tuple[SelfIdentity, Keys, int]
    ]
    _mapping_version: int
    _pairs: list[tuple[str, str]] | None
    _health: HealthMonitor | None
    _health_armed: bool
    _shut_down: str | None

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
            cache.popitem(last=False)  # O(1): a dict would scan its deleted front every time
        cache[raw] = (identity, keys, self._mapping_version)

    def _on_opened(self, ev: SocketOpened, now: int) -> list[Effect]:
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
            # Closed whatever identity it shows: a malformed one must not keep it open.
            return [CloseSocket(ev.account, ev.generation, ev.attempt, None, reason)]
        identity, keys, fresh = self._parse(ev)
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
                    f"close ({'no status' if ev.status is None else f'status {ev.status}'}) "
                    f"of socket {ev.attempt} ignored: "
                    + (
                        f"generation {ev.generation} is over and forgotten"
                        if ctl is None
                        else f"generation {ev.generation} ({ctl.state.value}) "
                        f"holds socket {ctl.socket} now"
                        if ev.attempt != ctl.socket
                        else f"that socket already closed (generation {ev.generation} "
                        f"is {ctl.state.value})"
                    )
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
        if ev.silent_ms < 0:
            raise Rejection("bad_silence", f"silent_ms must be >= 0, got {ev.silent_ms}")
        ctl, current = self._accounts.live_socket(ev.account, ev.generation, ev.attempt)
        if ctl is None or not current or ctl.state is not _STATE_OPEN:
            # The adapter's watchdog raced a close: there is no open socket to close.
            message = f"watchdog silence of socket {ev.attempt} ignored: it is not open"
            return self._log(_DEBUG, "stale_watchdog", message, ev.account, ev.generation)
        out = ctl.watchdog(now, ev.silent_ms)
        self._accounts.refile(ctl)
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
        if self._pairs is not None:
            self._pairs.append(pair)
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
