"""The engine's table of accounts: each one's registration, generations, sockets and watch.

An :class:`Account` is one record per account: its registry entry (the
in-memory registry's rules, :class:`~heirline.core.registry.RegistryEntry`),
its newest controller generation, the counter its socket attempt numbers come
from, and whether the health policy keeps it running. :class:`Accounts` holds
the records, the older generations still named by an open reply, and what the
health sweep needs to touch only the accounts that may need attention: watched
accounts whose newest generation is not open (few, in a healthy fleet), and
open ones kept in order of their last activity, so the possibly stale ones are
found at the front without looking at the rest.

Everything here is O(1) per event; nothing scans all accounts.
"""

from __future__ import annotations

from collections.abc import Iterator

from heirline.core.controller import Controller
from heirline.core.errors import Rejection
from heirline.core.lifecycle import SOCKET_STATES, LifecycleConfig, State
from heirline.core.registry import RegistryEntry

# Enum members the hot paths read, as module constants (class attribute access is slow on 3.11).
_STATE_OPEN = State.OPEN


class Account(RegistryEntry):
    """One account: registration, newest generation, socket attempt counter, health watch."""

    __slots__ = ("changed", "last_attempt", "latest", "name", "watched")

    latest: Controller

    def __init__(self, name: str, changed: dict[str, Account] | None = None) -> None:
        super().__init__()
        self.name = name
        self.last_attempt = 0
        self.watched = False
        #: Where the table collects accounts whose counters changed (``None``: no journal).
        self.changed = changed

    def next_attempt(self) -> int:
        """A fresh socket attempt number for this account (1, 2, 3, ...; never reused)."""
        self.last_attempt += 1
        if self.changed is not None:
            self.changed[self.name] = self
        return self.last_attempt

    def next_generation(self) -> int:
        """Issue the next generation (1, 2, 3, ...); never reused."""
        generation = super().next_generation()
        if self.changed is not None:
            self.changed[self.name] = self
        return generation


class Accounts:
    """Every account the engine knows, and every generation it still keeps."""

    __slots__ = ("_accounts", "_attention", "_older", "_open", "changed", "lifecycle")

    def __init__(self, lifecycle: LifecycleConfig, *, journal: bool = False) -> None:
        self.lifecycle = lifecycle
        #: Accounts whose counters changed since the journal last took them (``None``: no journal).
        self.changed: dict[str, Account] | None = {} if journal else None
        self._accounts: dict[str, Account] = {}
        self._older: dict[tuple[str, int], Controller] = {}  # not newest, still named
        #: Watched accounts whose newest generation is open, in order of its ``event_ms``.
        self._open: dict[str, Account] = {}
        #: Watched accounts whose newest generation is not open (insertion order).
        self._attention: dict[str, Account] = {}

    # ------------------------------------------------------------------ lookups

    def get(self, name: str) -> Account | None:
        """The account ``name``, if it ever started."""
        return self._accounts.get(name)

    def __iter__(self) -> Iterator[Account]:
        return iter(self._accounts.values())

    def find(self, name: str, generation: int) -> Controller | None:
        """Generation ``generation`` of ``name`` if the engine still keeps it."""
        acct = self._accounts.get(name)
        if acct is None:
            return None
        latest = acct.latest
        if latest.generation == generation:
            return latest
        return self._older.get((name, generation)) if self._older else None

    def lookup(self, name: str, generation: int) -> Controller | None:
        """The controller of ``generation``; ``None`` if it was forgotten (a late fact).

        A generation that was never issued is a :class:`Rejection`.
        """
        ctl = self.find(name, generation)
        if ctl is not None:
            return ctl
        acct = self._accounts.get(name)
        if acct is None or not 1 <= generation < acct.latest.generation:
            raise Rejection(
                "unknown_controller", f"no controller generation {generation} for {name!r}"
            )
        return None

    def live_socket(
        self, name: str, generation: int, attempt: int
    ) -> tuple[Controller | None, bool]:
        """The controller a fact about socket ``attempt`` names, and whether it is that socket.

        ``(None, False)``: the generation was forgotten. A socket or generation
        never issued is a :class:`Rejection`. The latest socket is current only
        while the controller holds it (connecting, open or closing): a second
        close of a socket that already closed is as late as any other.
        """
        known = self._accounts.get(name)
        if known is not None and 1 <= attempt <= known.last_attempt:
            latest = known.latest
            if latest.generation == generation:  # the common case, in one step
                return latest, attempt == latest.socket and latest.state in SOCKET_STATES
        ctl = self.lookup(name, generation)
        acct = self._accounts[name]
        if not 1 <= attempt <= acct.last_attempt:
            raise Rejection(
                "unknown_socket",
                f"socket {attempt} was never opened for {name!r} "
                f"(highest attempt issued: {acct.last_attempt})",
            )
        if ctl is None:
            return None, False
        return ctl, attempt == ctl.socket and ctl.state in SOCKET_STATES

    def socket_owner(self, name: str, attempt: int) -> Controller | None:
        """The kept controller whose latest socket is ``attempt``, if any."""
        acct = self._accounts[name]
        if acct.latest.socket == attempt:
            return acct.latest
        for (owner, _), ctl in self._older.items():
            if owner == name and ctl.socket == attempt:
                return ctl
        return None

    def generations(self, name: str) -> tuple[int, ...]:
        """The generations of ``name`` the engine still keeps, oldest first."""
        acct = self._accounts.get(name)
        if acct is None:
            return ()
        older = sorted(g for a, g in self._older if a == name)
        return (*older, acct.latest.generation)

    def controllers(self) -> Iterator[Controller]:
        """Every kept controller (older generations first)."""
        yield from self._older.values()
        for acct in self._accounts.values():
            yield acct.latest

    # ------------------------------------------------------------------ generations

    def new_generation(self, name: str, now: int) -> tuple[Account, Controller]:
        """Issue the next generation of ``name`` and make it the newest (not yet started)."""
        acct = self._accounts.get(name)
        if acct is None:
            acct = self._accounts[name] = Account(name, self.changed)
            previous = None
        else:
            previous = acct.latest
        ctl = Controller(name, acct.next_generation(), self.lifecycle, acct)
        ctl.event_ms = now
        acct.latest = ctl
        acct.watched = True
        if previous is not None:
            self._older[(name, previous.generation)] = previous
            self.settle(previous)
        self.place(acct)
        return acct, ctl

    def restore(self, name: str, generation: int, attempt: int, now: int) -> Account:
        """An account as a restarted engine finds it: counters continued, no live generation.

        Its newest generation is a stopped stand-in for the one issued last (a
        generation of the process that died); the registry will grant only newer ones.
        """
        if name in self._accounts:
            raise Rejection("account_exists", f"account {name!r} is already known to this engine")
        acct = self._accounts[name] = Account(name, self.changed)
        acct.issued = acct.high = generation
        acct.last_attempt = attempt
        acct.latest = self.stand_in(acct, generation, now)
        return acct

    def stand_in(self, acct: Account, generation: int, now: int) -> Controller:
        """A stopped controller for a generation of a process that died (a reply's origin)."""
        if generation == acct.issued and hasattr(acct, "latest"):
            return acct.latest
        ctl = Controller(acct.name, generation, self.lifecycle, acct)
        ctl.stop("process restarted", now)
        ctl.event_ms = now
        if generation != acct.issued:
            self._older[(acct.name, generation)] = ctl
        return ctl

    def drop_older(self, name: str) -> None:
        """Forget every older generation of ``name`` nothing refers to any more."""
        for key in [k for k in self._older if k[0] == name]:
            self.settle(self._older[key])

    def settle(self, ctl: Controller) -> None:
        """Forget ``ctl`` if nothing can refer to it any more.

        A generation is forgotten once it is not the newest of its account, is
        over, and no open reply names it (``refs``).
        """
        if ctl.refs == 0 and ctl.is_terminal and ctl is not self._accounts[ctl.account].latest:
            self._older.pop((ctl.account, ctl.generation), None)

    # ------------------------------------------------------------------ health attention

    def place(self, acct: Account) -> None:
        """File ``acct`` where the health sweep will find it, after any change to it."""
        name = acct.name
        if acct.watched and acct.latest.state is _STATE_OPEN:
            self._attention.pop(name, None)
            if name not in self._open:
                opened = self._open
                if (
                    opened
                    and acct.latest.event_ms < next(reversed(opened.values())).latest.event_ms
                ):
                    self._open = dict(
                        sorted((*opened.items(), (name, acct)), key=lambda i: i[1].latest.event_ms)
                    )
                else:
                    opened[name] = acct
        else:
            self._open.pop(name, None)
            if acct.watched:
                self._attention[name] = acct
            else:
                self._attention.pop(name, None)

    def refile(self, ctl: Controller, now: int | None = None) -> None:
        """``ctl`` may have changed state (and, given ``now``, showed life then): refile it.

        Only the newest generation decides where its account is filed; an older
        one's facts leave the account where it is.
        """
        if now is not None:
            ctl.event_ms = now
        name = ctl.account
        acct = self._accounts[name]
        if acct.latest is not ctl:
            return
        opened = self._open
        if acct.watched and ctl.state is _STATE_OPEN:
            if name in opened:
                if now is not None:
                    del opened[name]  # to the end: the order stays by event_ms
                    opened[name] = acct
                return
            self.place(acct)
        elif name in opened or acct.watched != (name in self._attention):
            self.place(acct)

    def touch(self, ctl: Controller, now: int) -> None:
        """Activity or a lifecycle fact at ``now`` (the latest time yet): the stale rule's clock."""
        ctl.event_ms = now
        opened = self._open
        name = ctl.account
        acct = opened.get(name)
        if acct is not None and acct.latest is ctl:
            del opened[name]  # to the end: the order stays by event_ms
            opened[name] = acct

    def due(self, now: int, stale_after_ms: int) -> list[Account]:
        """The watched accounts the health policy must look at now, by name.

        Every one whose newest generation is not open, and the open ones with no
        activity for longer than ``stale_after_ms``: the front of the activity order.
        """
        out = list(self._attention.values())
        cutoff = now - stale_after_ms
        for acct in self._open.values():
            if acct.latest.event_ms >= cutoff:
                break
            out.append(acct)
        out.sort(key=lambda a: a.name)
        return out

    def unwatch_all(self) -> None:
        """Nobody is watched any more (the engine shut down)."""
        for acct in self._accounts.values():
            acct.watched = False
        self._open.clear()
        self._attention.clear()
