"""The simulation on the fake runtime itself: :class:`FakeGateway` over a :class:`FakeChannel`.

This is the reference the lean runtime is checked against (``--runtime fake``):
every socket shows a real transport frame every ``keepalive_ms`` and the
engine's watchdog timers fire and re-arm on them, as in the rest of the test
suite. It is meant for small fleets: the fake gateway and channel keep every
transmission and log record, and look sockets up by scanning them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from heirline.adapters.channel import Identity, Ledger
from heirline.adapters.fake import FakeChannel, FakeGateway
from heirline.adapters.simulate.identities import auth_pair, full_identity, shown_identity
from heirline.adapters.simulate.profile import Fleet
from heirline.adapters.simulate.recorder import MeasuredEngine, Recorder
from heirline.core.config import EngineConfig
from heirline.core.events import Event

__all__ = ["FakeRuntime"]


class _Channel(FakeChannel):
    """A fake channel whose logins show the forms the profile's identity mode says."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.person: dict[str, int] = {}

    def connect(self, account: str, generation: int, attempt: int) -> Identity | None:
        if self.identity_of(account) is None:
            return None  # unknown or logged out: refused
        shown = shown_identity(self.person[account], self.mode, attempt)
        self.add_account(account, shown.pn, shown.lid, shown.e164)  # what this login shows
        return super().connect(account, generation, attempt)


class _Gateway(FakeGateway):
    """The fake gateway, remembering when each socket opened (the keepalive grid's origin)."""

    opened_at: dict[tuple[str, int], int]

    def on_open(
        self,
        account: str,
        generation: int,
        attempt: int,
        pn: str | None,
        lid: str | None,
        e164: str | None,
    ) -> None:
        self.opened_at[(account, attempt)] = self.now_ms()
        super().on_open(account, generation, attempt, pn, lid, e164)


class FakeRuntime:
    """The world's runtime interface (as :class:`~.lean.LeanRuntime`) on the fake gateway."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        random: Callable[[], float],
        recorder: Recorder,
        fleet: Fleet,
    ) -> None:
        self.channel = _Channel(fleet.identity)
        self.gateway = _Gateway(
            config,
            random=random,
            channel=self.channel,
            boot_ms=fleet.boot_ms,
            connect_ms=fleet.connect_ms,
            ack_ms=fleet.ack_ms,
            keepalive_ms=fleet.keepalive_ms,
        )
        self.gateway.opened_at = {}
        # The gateway's own engine has seen nothing yet: run a measured one in its place.
        self.engine = MeasuredEngine(config, random=random, recorder=recorder)
        self.gateway.engine = self.engine
        self._auth_dir = fleet.auth_dir
        self._keepalive_ms = fleet.keepalive_ms

    @property
    def ledger(self) -> Ledger:
        return self.channel.ledger

    def now_ms(self) -> int:
        return self.gateway.now_ms()

    def call_at(self, at_ms: int, callback: Callable[..., None], *args: Any) -> None:
        self.gateway.scheduler.call_at(at_ms, partial(callback, *args) if args else callback)

    def run_until(self, ms: int) -> None:
        self.gateway.run_until(ms)

    def feed(self, event: Event) -> None:
        self.gateway.feed(event)

    def add_account(self, account: str, person: int) -> None:
        self._link(account, person)

    def _link(self, account: str, person: int) -> None:
        self.channel.person[account] = person
        full = full_identity(person)
        self.channel.add_account(account, full.pn, full.lid, full.e164)
        if self._auth_dir:
            self.gateway.auth_dir[account] = [auth_pair(person)]

    def listening(self, account: str) -> tuple[int, int] | None:
        socket = self.gateway.current_socket(account)
        if socket is None or self.channel.is_silent(account, socket[1]):
            return None
        return socket

    def close_account(self, account: str, status: int) -> int:
        return self.channel.close_account(account, status)

    def logout(self, account: str) -> int:
        return self.channel.logout(account)

    def repair(self, account: str) -> None:
        if self.channel.identity_of(account) is None:
            full = full_identity(self.channel.person[account])
            self.channel.add_account(account, full.pn, full.lid, full.e164)

    def relink(self, account: str, person: int) -> int:
        self.channel.person[account] = person
        full = full_identity(person)
        if self._auth_dir:
            self.gateway.auth_dir[account] = [auth_pair(person)]
        return self.channel.relink(account, full.pn, full.lid, full.e164)

    def half_open(self, account: str) -> bool:
        socket = self.listening(account)
        if socket is None:
            return False
        attempt = socket[1]
        opened = self.gateway.opened_at[(account, attempt)]
        every = self._keepalive_ms
        ticks = max(1, -(-(self.now_ms() - opened) // every))
        # Scheduled now, after the frame due then (scheduled a keepalive earlier): the socket
        # shows that frame, then goes silent.
        self.call_at(opened + ticks * every, self._silence, account, attempt)
        return True

    def _silence(self, account: str, attempt: int) -> None:
        channel = self.channel
        if channel.is_live(account, attempt) and not channel.is_silent(account, attempt):
            channel.half_open(account)
