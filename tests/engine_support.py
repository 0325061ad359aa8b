"""Shared helpers of the engine tests: a recording run, effect filters, a state fingerprint.

Nothing here judges the engine: the helpers feed events and collect what came
back; every expectation is written out by hand in the tests themselves.
"""

from __future__ import annotations

import gc
import heapq
import io
import itertools
import pickle
import random
import sys
import types
from collections.abc import Callable, Iterable
from typing import TypeVar

from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.engine import Engine, EngineConfig
from heirline.core.health import HealthConfig
from heirline.core.identity import LidMapping
from heirline.core.lifecycle import LifecycleConfig
from heirline.core.policy import StatusPolicy
from heirline.core.timers import Timer

PN = "4915123456789@s.whatsapp.net"
PN_DEVICE = "4915123456789:12@s.whatsapp.net"
LID = "123456789012345@lid"
OTHER_PN = "4917000000001@s.whatsapp.net"
GROUP = "120363025555555555@g.us"
ACCOUNT = "default"

T = TypeVar("T")

T0 = 43_239_242  # 12:00:39.242, the inbound message of the incident


class Run:
    """An engine plus the effects it produced, fed at explicit virtual times."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        mapping: LidMapping | None = None,
        seed: int = 1,
    ) -> None:
        self.engine = Engine(config, random=random.Random(seed).random, mapping=mapping)
        self.effects: list[fx.Effect] = []

    def at(self, now: int, *events: ev.Event) -> list[fx.Effect]:
        out: list[fx.Effect] = []
        for event in events:
            out += self.engine.handle(event, now)
        self.effects += out
        return out

    def transmits(self) -> list[fx.Transmit]:
        return of(fx.Transmit, self.effects)

    def outcomes(self) -> list[fx.ReplyDelivered | fx.ReplyFailed]:
        return [e for e in self.effects if isinstance(e, fx.ReplyDelivered | fx.ReplyFailed)]


def of(kind: type[T], effects: Iterable[fx.Effect]) -> list[T]:
    """The effects of one type, in order."""
    return [e for e in effects if isinstance(e, kind)]


def codes(effects: Iterable[fx.Effect]) -> list[str]:
    """The codes of the logs and rejections among ``effects``, in order."""
    return [e.code for e in effects if isinstance(e, fx.Log | fx.Rejected)]


def rejected(effects: list[fx.Effect]) -> str | None:
    """The code if ``effects`` is exactly one ``Rejected``; ``None`` if there is no rejection.

    Fails the test if a rejection comes with anything else (a rejection is all-or-nothing).
    """
    rejections = of(fx.Rejected, effects)
    if not rejections:
        return None
    assert effects == rejections[:1], f"a rejection must come alone: {effects!r}"
    return rejections[0].code


def incident_config(reply_deadline_ms: int = 300_000, max_transmissions: int = 5) -> EngineConfig:
    """openclaw's monitor: no retry grace, no start-up grace in the way of the story."""
    return EngineConfig(
        health=HealthConfig(retry_grace_ms=None, startup_grace_ms=0),
        reply_deadline_ms=reply_deadline_ms,
        max_transmissions=max_transmissions,
    )


# ------------------------------------------------------------ the state fingerprint

_SHARED = (EngineConfig, LifecycleConfig, HealthConfig, StatusPolicy)


class _Pickler(pickle.Pickler):
    """Pickles an engine whole; immutable configs, mappings and functions by a stable token.

    The random source is a bound method of a ``random.Random`` in every test
    that fingerprints, so its position in the stream is part of the bytes.
    """

    def persistent_id(self, obj: object) -> object:
        if isinstance(obj, _SHARED):
            return ("shared", type(obj).__name__, repr(obj))
        if isinstance(obj, LidMapping):  # its read-only views do not pickle; its pairs say all
            return ("mapping", obj.pairs)
        if isinstance(obj, types.FunctionType):
            return ("function", obj.__qualname__)
        return None


def fingerprint(engine: Engine) -> bytes:
    """Every bit of the engine's state (clocks, counters, random position) as bytes."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(engine)
    return buf.getvalue()


def queries(engine: Engine, accounts: Iterable[str], replies: Iterable[str]) -> tuple[object, ...]:
    """What the public queries say about ``accounts`` and ``replies``."""
    out: list[object] = [
        engine.open_replies(),
        engine.in_flight(),
        engine.watched(),
        engine.shut_down,
        engine.mapping.pairs,
    ]
    for account in accounts:
        gens = engine.generations(account)
        out.append((account, engine.current(account), gens))
        for g in gens:
            out.append(
                (
                    engine.controller_state(account, g),
                    engine.controller_socket(account, g),
                    engine.controller_identity(account, g),
                )
            )
    out.extend(engine.reply_state(r) for r in replies)
    return tuple(out)


# ------------------------------------------------------------ a timer-driving harness

#: What a test's channel does when the engine asks for something: facts to report, and when.
Reaction = Callable[[fx.Effect, int], list[tuple[int, ev.Event]]]


class Driver(Run):
    """A :class:`Run` whose timers really fire: ``StartTimer`` and ``CancelTimer`` are obeyed.

    :meth:`run_until` advances virtual time, feeding ``TimerFired`` at each
    pending deadline and every scheduled fact at its time, in time order (ties:
    in the order they were scheduled). ``react`` (optional) plays the channel:
    for each effect it returns the facts to report later.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        mapping: LidMapping | None = None,
        seed: int = 1,
        react: Reaction | None = None,
    ) -> None:
        super().__init__(config, mapping, seed)
        self.now = 0
        self.timers: dict[Timer, tuple[int, int]] = {}  # timer -> (deadline, seq)
        self.facts: list[tuple[int, int, ev.Event]] = []  # heap of (at, seq, event)
        self.react = react
        self._seq = itertools.count()
        self.fed: list[tuple[int, ev.Event, list[fx.Effect]]] = []

    def at(self, now: int, *events: ev.Event) -> list[fx.Effect]:
        self.now = max(self.now, now)
        out: list[fx.Effect] = []
        for event in events:
            effects = self.engine.handle(event, now)
            self.fed.append((now, event, effects))
            self.effects += effects
            out += effects
            for effect in effects:
                self._obey(effect, now)
        return out

    def later(self, at: int, event: ev.Event) -> None:
        """Report ``event`` at time ``at``."""
        heapq.heappush(self.facts, (at, next(self._seq), event))

    def _obey(self, effect: fx.Effect, now: int) -> None:
        if isinstance(effect, fx.StartTimer):
            self.timers[effect.timer] = (effect.deadline_ms, next(self._seq))
        elif isinstance(effect, fx.CancelTimer):
            self.timers.pop(effect.timer, None)
        if self.react is not None:
            for at, event in self.react(effect, now):
                self.later(at, event)

    def _next(self) -> tuple[int, int, ev.Event] | None:
        best: tuple[int, int, ev.Event] | None = None
        if self.timers:
            timer, (deadline, seq) = min(self.timers.items(), key=lambda kv: kv[1])
            best = (deadline, seq, ev.TimerFired(timer=timer))
        if self.facts and (best is None or self.facts[0][:2] < best[:2]):
            best = self.facts[0]
        return best

    def run_until(self, end: int, max_steps: int = 1_000_000) -> None:
        """Fire everything due up to ``end`` (inclusive), then set the time to ``end``."""
        for _ in range(max_steps):
            step = self._next()
            if step is None or step[0] > end:
                self.now = max(self.now, end)
                return
            at, _, event = step
            if isinstance(event, ev.TimerFired):
                del self.timers[event.timer]
            else:
                heapq.heappop(self.facts)
            self.at(at, event)
        raise AssertionError(f"more than {max_steps} steps before {end}")

    def logs(self, code: str, account: str | None = None) -> list[tuple[int, fx.Log]]:
        """(time, log) of every log with ``code`` (of ``account``, if given), in order."""
        return [
            (now, e)
            for now, _, effects in self.fed
            for e in effects
            if isinstance(e, fx.Log) and e.code == code and account in (None, e.account)
        ]

    def emitted(self, kind: type[T]) -> list[tuple[int, T]]:
        """(time, effect) of every effect of one type, in order."""
        return [(now, e) for now, _, effects in self.fed for e in effects if isinstance(e, kind)]


# ------------------------------------------------------------ restart cycles and retained size


def restart_cycles(engine: Engine, first: int, count: int, account: str = ACCOUNT) -> None:
    """Cycles ``first .. first+count-1`` of one account: Start, open, and now and then a reply.

    Cycle ``i`` runs at ``i * 1000`` ms. Every 10th cycle a reply is captured,
    sent and acked; every 10th (offset 5) one is left in flight, lost when the
    next cycle's Start stops its carrier, and resent and acked through the
    successor; every 3rd cycle's socket closes (408) before the restart, so the
    restart cancels a retry timer. Fails the test on any rejection.
    """

    def feed(event: ev.Event, now: int) -> list[fx.Effect]:
        out = engine.handle(event, now)
        assert not any(isinstance(e, fx.Rejected) for e in out), out
        return out

    def ack_all(effects: list[fx.Effect], now: int) -> None:
        for e in effects:
            if isinstance(e, fx.Transmit):
                feed(
                    ev.TransmitAcked(
                        reply_id=e.reply_id, generation=e.generation, attempt=e.attempt
                    ),
                    now,
                )

    for i in range(first, first + count):
        t = i * 1_000
        out = feed(ev.Start(account=account), t)
        (o,) = [e for e in out if isinstance(e, fx.OpenSocket)]
        gen, attempt = o.generation, o.attempt
        out = feed(ev.SocketOpened(account=account, generation=gen, attempt=attempt, pn=PN), t + 1)
        ack_all(out, t + 2)  # the reply left in flight by the previous cycle, resent here
        if i % 10 in (0, 5):
            rid = f"r{i}"
            feed(ev.ReplyCaptured(reply_id=rid, account=account, generation=gen, chat=GROUP), t + 3)
            out = feed(ev.ReplyReady(reply_id=rid, payload="x"), t + 4)
            if i % 10 == 0:
                ack_all(out, t + 5)
        if i % 3 == 0:
            closed = ev.SocketClosed(account=account, generation=gen, attempt=attempt, status=408)
            feed(closed, t + 6)


_NOT_RETAINED = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.CodeType,
    *_SHARED,
)


def retained_size(root: object) -> int:
    """Bytes held by ``root`` and everything it reaches (``sys.getsizeof``, each object once).

    Classes, modules, functions and the shared immutable configs are not the
    engine's state and are not counted. Dicts and lists are counted at their
    real capacity, so a table that grew and never shrank shows.
    """
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _NOT_RETAINED):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total
