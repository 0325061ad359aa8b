"""What a simulation measures: an engine that times itself, and a recorder of its effects.

:class:`MeasuredEngine` is the real :class:`~heirline.core.engine.Engine` with
two additions around :meth:`~heirline.core.engine.Engine.handle`: the process
time spent inside it, and every effect shown to a :class:`Recorder`. Both
runtimes (the lean driver and the fake gateway) run one, so what is counted --
restarts by reason, watchdog closes, reply outcomes and latencies -- is counted
by the same code whichever runtime carried the effects out.
"""

from __future__ import annotations

import math
import re
import time
from array import array
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from heirline.core.config import EngineConfig
from heirline.core.effects import (
    CloseSocket,
    Effect,
    Log,
    OpenSocket,
    Registered,
    Rejected,
    ReplyDelivered,
    ReplyFailed,
)
from heirline.core.engine import Engine
from heirline.core.events import Event
from heirline.core.policy import Status

__all__ = [
    "IntArray",
    "MeasuredEngine",
    "Recorder",
    "percentiles",
    "reply_id",
    "reply_number",
]

if TYPE_CHECKING:
    IntArray = array[int]
else:  # array is not subscriptable at run time (and beartype reads the hints then)
    IntArray = array

#: Bucket widths the timeline may use, smallest first (ms): about 300 buckets at most.
BUCKETS_MS: Final = tuple(
    m * 60_000 for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)
)
MAX_BUCKETS: Final = 300
#: Per reply: not ended, ended once, ended again (a violation).
_OPEN, _ENDED = 0, 1
#: Outcome codes per reply (0: none yet).
OUTCOME_CODES: Final = {"delivered": 1, "refused": 2, "failed": 3, "unknown": 4}
_WATCHDOG: Final = int(Status.WATCHDOG)
_DIGITS: Final = re.compile(r"\d+")
#: The series of the timeline, in the order the plot and the JSON show them.
SERIES: Final = (
    "health_restarts",
    "owner_restarts",
    "watchdog_closes",
    "delivered",
    "delivered_via_successor",
    "refused",
    "failed",
    "unknown",
)


def reply_id(number: int) -> str:
    """The reply id (and message id) of the simulator's reply ``number``."""
    return f"r{number}"


def reply_number(rid: str) -> int:
    """The number back from a :func:`reply_id`."""
    return int(rid[1:])


def bucket_for(span_ms: int) -> int:
    """The narrowest timeline bucket that cuts ``span_ms`` into at most 300 buckets."""
    for width in BUCKETS_MS:
        if span_ms <= width * MAX_BUCKETS:
            return width
    return -(-span_ms // MAX_BUCKETS)


def percentiles(values: IntArray) -> dict[str, int]:
    """Count, p50, p90, p99 and max of ``values`` (nearest rank); only the count if empty."""
    n = len(values)
    if n == 0:
        return {"count": 0}
    ordered = sorted(values)
    out = {"count": n}
    for p in (50, 90, 99):
        out[f"p{p}"] = ordered[max(0, math.ceil(p * n / 100) - 1)]
    out["max"] = ordered[-1]
    return out


class Recorder:
    """Counts what the engine decided, per kind and over virtual time.

    The world tells it about the replies it captures and makes ready
    (:meth:`captured`, :meth:`made_ready`); the engine's effects tell it how
    each one ended. Per reply it keeps a few bytes (state, outcome, capture
    and ready times), so a million replies cost a few tens of MB.
    """

    def __init__(self, span_ms: int) -> None:
        self.bucket_ms = bucket_for(span_ms)
        self._buckets = span_ms // self.bucket_ms + 1
        self.series: dict[str, list[int]] = {s: [0] * self._buckets for s in SERIES}
        self.health: Counter[str] = Counter()
        self.logs: Counter[str] = Counter()
        self.reasons: dict[str, Counter[str]] = {o: Counter() for o in OUTCOME_CODES}
        self.watchdog_closes = 0
        self.socket_opens = 0
        self.generations = 0
        self.owner_restarts = 0
        self.rejections = 0
        self.first_rejections: list[str] = []
        self.outcomes: Counter[str] = Counter()
        self.ended_twice = 0
        self.ended_by_shutdown = 0
        self.shutting_down = False
        #: Per reply number: ends seen, outcome code, capture and ready times (-1: not ready).
        self.ends = bytearray()
        self.outcome = bytearray()
        self.captured_at: IntArray = array("q")
        self.ready_at: IntArray = array("q")
        self.handoff_from_ready: IntArray = array("q")
        self.handoff_from_capture: IntArray = array("q")
        self.origin_from_ready: IntArray = array("q")

    # ------------------------------------------------------------------ the world's side

    def captured(self, now: int) -> int:
        """A reply is being captured now: its number."""
        number = len(self.ends)
        self.ends.append(_OPEN)
        self.outcome.append(0)
        self.captured_at.append(now)
        self.ready_at.append(-1)
        return number

    def is_open(self, number: int) -> bool:
        return self.ends[number] == _OPEN

    def made_ready(self, number: int, now: int) -> None:
        self.ready_at[number] = now

    def owner_restart(self, now: int) -> None:
        self.owner_restarts += 1
        self._bump("owner_restarts", now)

    @property
    def captured_count(self) -> int:
        return len(self.ends)

    @property
    def open_count(self) -> int:
        return self.ends.count(_OPEN)

    # ------------------------------------------------------------------ the engine's side

    def observers(self) -> dict[type[Effect], Callable[[Effect, int], None]]:
        """Effect class -> what to note about it (the other effects are not looked at)."""
        table: dict[type[Effect], Callable[[Effect, int], None]] = {}

        def add(cls: type[Effect], fn: Callable[[Effect, int], None]) -> None:
            table[cls] = fn

        add(Log, self._log)  # type: ignore[arg-type]
        add(CloseSocket, self._close)  # type: ignore[arg-type]
        add(OpenSocket, self._open)  # type: ignore[arg-type]
        add(Registered, self._registered)  # type: ignore[arg-type]
        add(ReplyDelivered, self._delivered)  # type: ignore[arg-type]
        add(ReplyFailed, self._failed)  # type: ignore[arg-type]
        add(Rejected, self._rejected)  # type: ignore[arg-type]
        return table

    def _bump(self, series: str, now: int) -> None:
        index = now // self.bucket_ms
        self.series[series][index if index < self._buckets else self._buckets - 1] += 1

    def _log(self, effect: Log, now: int) -> None:
        code = effect.code
        self.logs[code] += 1
        if code == "health_restart":
            self.health[str(effect.fields.get("reason"))] += 1
            self._bump("health_restarts", now)

    def _close(self, effect: CloseSocket, now: int) -> None:
        if effect.status == _WATCHDOG:
            self.watchdog_closes += 1
            self._bump("watchdog_closes", now)

    def _open(self, effect: OpenSocket, now: int) -> None:
        self.socket_opens += 1

    def _registered(self, effect: Registered, now: int) -> None:
        self.generations += 1

    def _end(self, rid: str, outcome: str, now: int) -> int:
        number = reply_number(rid)
        ends = self.ends[number] + 1
        self.ends[number] = min(ends, 255)
        if ends > 1:
            self.ended_twice += 1
        self.outcome[number] = OUTCOME_CODES[outcome]
        self.outcomes[outcome] += 1
        self._bump(outcome, now)
        return number

    def _delivered(self, effect: ReplyDelivered, now: int) -> None:
        number = self._end(effect.reply_id, "delivered", now)
        ready = self.ready_at[number]
        if effect.via == "successor":
            self.outcomes["delivered_via_successor"] += 1
            self._bump("delivered_via_successor", now)
            self.handoff_from_capture.append(now - self.captured_at[number])
            if ready >= 0:
                self.handoff_from_ready.append(now - ready)
        else:
            self.outcomes["delivered_via_origin"] += 1
            if ready >= 0:
                self.origin_from_ready.append(now - ready)

    def _failed(self, effect: ReplyFailed, now: int) -> None:
        self._end(effect.reply_id, effect.outcome, now)
        self.reasons[effect.outcome][_DIGITS.sub("N", effect.reason)] += 1
        if self.shutting_down:
            self.ended_by_shutdown += 1

    def _rejected(self, effect: Rejected, now: int) -> None:
        self.rejections += 1
        if len(self.first_rejections) < 5:
            self.first_rejections.append(f"at {now} ms: {effect.code}: {effect.message}")


#: One call in this many is timed (a prime: no period of the event stream aliases with it).
SAMPLE_EVERY: Final = 61


class MeasuredEngine(Engine):
    """The engine, showing its effects to a recorder and timing its own process time.

    Reading the process-time clock is a system call that costs about as much as
    a cheap engine event, so not every call is timed: one in :data:`SAMPLE_EVERY`
    is, and :attr:`cpu_ns` scales the sampled time by how many calls there
    were. The time of the clock reads themselves (the shortest of 200
    back-to-back reads, measured at construction) is taken off each timed call.
    """

    def __init__(
        self, config: EngineConfig, *, random: Callable[[], float], recorder: Recorder
    ) -> None:
        super().__init__(config, random=random)
        self.recorder = recorder
        self.events = 0
        self._sampled = 0
        self._sampled_ns = 0
        self._countdown = SAMPLE_EVERY
        self._observers = recorder.observers()
        clock = time.process_time_ns
        self._clock_ns = min(-(clock() - clock()) for _ in range(200))

    @property
    def cpu_ns(self) -> int:
        """Process time spent in :meth:`handle` so far (estimated from the timed calls)."""
        if not self._sampled:
            return 0
        per_call = max(0, self._sampled_ns - self._sampled * self._clock_ns) / self._sampled
        return round(per_call * self.events)

    def handle(self, event: Event, now: int) -> list[Effect]:
        self.events += 1
        self._countdown -= 1
        if self._countdown:
            effects = Engine.handle(self, event, now)
        else:
            self._countdown = SAMPLE_EVERY
            clock = time.process_time_ns
            start = clock()
            effects = Engine.handle(self, event, now)
            self._sampled_ns += clock() - start
            self._sampled += 1
        observers = self._observers
        for effect in effects:
            note = observers.get(type(effect))
            if note is not None:
                note(effect, now)
        return effects
