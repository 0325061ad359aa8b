"""The simulated world: a seeded fleet, its faults and traffic, and the ground truth.

:class:`World` draws every fault and every inbound burst of the run from one
seeded random stream -- the sum of N accounts' Poisson processes is one
Poisson process of N times the rate, each event falling on an account drawn
uniformly -- and draws each event's details (burst size and gaps, whether a
reply is captured just before a fault, its delays, its kind) when the event is
drawn. What the world does therefore never depends on what the engine decided:
the same seed gives the same faults and traffic on either runtime.

It keeps the truth the engine is judged by: which person each account is at
each moment (a relink makes it another one), and which person each reply was
captured for. :func:`simulate` runs a profile on a runtime and returns a
:class:`Summary`.
"""

from __future__ import annotations

import bisect
import gc
import random
import resource
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Protocol, runtime_checkable

from heirline.adapters.channel import Ledger
from heirline.adapters.simulate.fakert import FakeRuntime
from heirline.adapters.simulate.identities import MAX_PERSONS, person_of
from heirline.adapters.simulate.lean import LeanRuntime
from heirline.adapters.simulate.profile import DAY_MS, Profile, Span
from heirline.adapters.simulate.recorder import (
    SERIES,
    IntArray,
    MeasuredEngine,
    Recorder,
    percentiles,
    reply_id,
)
from heirline.core import __version__
from heirline.core.events import (
    Activity,
    ActivityKind,
    Event,
    ReplyCaptured,
    ReplyReady,
    Shutdown,
    Start,
)
from heirline.core.policy import CloseAction, Status

__all__ = [
    "RUNTIMES",
    "Json",
    "Progress",
    "Runtime",
    "Simulation",
    "Summary",
    "World",
    "judge",
    "simulate",
]

#: A value of a JSON document: str, int, float, bool, None, or lists and dicts of them.
Json = object

#: The runtimes a simulation can run on: the lean driver, or the fake gateway itself.
RUNTIMES: Final = ("lean", "fake")
#: The chat every simulated reply answers in.
CHAT: Final = "120363000000000000@g.us"
PAYLOAD: Final = "simulated reply"
#: Virtual time between two looks at the wall clock (progress, time limit).
SLICE_MS: Final = 60_000
_INBOUND: Final = ActivityKind.INBOUND
_LOGGED_OUT: Final = int(Status.LOGGED_OUT)
_TERMINAL: Final = frozenset({CloseAction.LOGGED_OUT, CloseAction.REPLACED, CloseAction.FORBIDDEN})

#: Called once per slice: virtual now, virtual end, engine events so far.
Progress = Callable[[int, int, int], None]


@runtime_checkable
class Runtime(Protocol):
    """What the world needs of a runtime (:class:`LeanRuntime`, :class:`FakeRuntime`)."""

    @property
    def engine(self) -> MeasuredEngine: ...

    @property
    def ledger(self) -> Ledger: ...

    def now_ms(self) -> int: ...

    def call_at(self, at_ms: int, callback: Callable[..., None], *args: Any) -> None: ...

    def run_until(self, ms: int) -> None: ...

    def feed(self, event: Event) -> None: ...

    def add_account(self, account: str, person: int) -> None: ...

    def listening(self, account: str) -> tuple[int, int] | None: ...

    def close_account(self, account: str, status: int) -> int: ...

    def logout(self, account: str) -> int: ...

    def repair(self, account: str) -> None: ...

    def relink(self, account: str, person: int) -> int: ...

    def half_open(self, account: str) -> bool: ...


def _draw(rng: random.Random, span: Span) -> int:
    """Uniform in ``[low, high]`` (one ``random()`` draw: ``randint`` costs three times more)."""
    low, high = span.low, span.high
    return low if low == high else low + int(rng.random() * (high - low + 1))


class World:
    """The fleet's accounts, what happens to them, and who they really are."""

    def __init__(
        self,
        profile: Profile,
        runtime: Runtime,
        recorder: Recorder,
        *,
        accounts: int,
        end_ms: int,
        seed: int,
    ) -> None:
        self.profile = profile
        self.runtime = runtime
        self.recorder = recorder
        self.end_ms = end_ms
        self.rng = random.Random(f"heirline simulate world {seed}")
        self.names = [f"acct-{i}" for i in range(accounts)]
        self.person = array("q", range(accounts))
        self.next_person = accounts
        #: The person each reply was captured for, by reply number.
        self.truth: IntArray = array("q")
        self.closed = False  # past the end: no new replies
        self.injected: Counter[str] = Counter()
        self.hit: Counter[str] = Counter()
        self.traffic: Counter[str] = Counter()
        policy = profile.config.lifecycle.status_policy
        self._faults: dict[str, Callable[[int], int]] = {}
        for kind in profile.faults:
            if kind == "relink":
                self._faults[kind] = self._relink
            elif kind == "half_open":
                self._faults[kind] = self._half_open
            else:
                status = int(kind.removeprefix("close_"))
                terminal = policy.decide(status).action in _TERMINAL
                self._faults[kind] = partial(self._close, status, terminal)
        for name, person in zip(self.names, self.person, strict=True):
            runtime.add_account(name, person)
        self._items = self._stream()
        self._schedule_next()

    # ------------------------------------------------------------------ the stream

    def _stream(self) -> Iterator[tuple[int, Callable[..., None], tuple[Any, ...]]]:
        """Every world event in time order: the starts, then faults and bursts (Poisson)."""
        n = len(self.names)
        profile, rng, end = self.profile, self.rng, self.end_ms
        traffic = profile.traffic
        spread = profile.fleet.start_over_ms
        kinds: list[str] = []
        cumulative: list[float] = []
        total = 0.0
        for kind, rate in (("burst", traffic.bursts), *profile.faults.items()):
            if rate > 0:
                total += rate
                kinds.append(kind)
                cumulative.append(total)
        per_ms = n * total / DAY_MS
        poisson = 0.0
        upcoming: tuple[int, Callable[..., None], tuple[Any, ...]] | None = None
        started = 0
        while True:
            if upcoming is None and per_ms > 0:
                poisson += rng.expovariate(per_ms)
                at = int(poisson)
                if at < end:
                    i = int(rng.random() * n)
                    pick = bisect.bisect_right(cumulative, rng.random() * total)
                    kind = kinds[min(pick, len(kinds) - 1)]
                    upcoming = self._draw_event(kind, at, i)
                else:
                    per_ms = 0.0
            start_at = spread * started // n if started < n else None
            if start_at is not None and start_at >= end:
                start_at = None  # starts after the end are not part of the run
                started = n
            if start_at is not None and (upcoming is None or start_at <= upcoming[0]):
                started += 1
                yield start_at, self._start, (started - 1,)
            elif upcoming is not None:
                yield upcoming
                upcoming = None
            else:
                return

    def _draw_event(
        self, kind: str, at: int, i: int
    ) -> tuple[int, Callable[..., None], tuple[Any, ...]]:
        rng, traffic = self.rng, self.profile.traffic
        if kind == "burst":
            size = _draw(rng, traffic.burst_messages)
            gaps = tuple(_draw(rng, traffic.burst_gap_ms) for _ in range(size - 1))
            reply = None
            if traffic.reply_probability > 0 and rng.random() < traffic.reply_probability:
                reply = (self._kind(), _draw(rng, traffic.ready_ms))
            return at, self._burst, (i, gaps, 0, reply)
        before = None
        if traffic.capture_before_fault > 0 and rng.random() < traffic.capture_before_fault:
            kind_of_reply = self._kind()
            lead = _draw(rng, traffic.capture_lead_ms)
            before = (kind_of_reply, lead, _draw(rng, traffic.ready_after_fault_ms))
        return at, self._fault, (kind, i, before)

    def _kind(self) -> str:
        kinds = self.profile.traffic.kinds
        if len(kinds) == 1:
            return kinds[0][0]
        total = sum(w for _, w in kinds)
        u = self.rng.random() * total
        for kind, weight in kinds:
            u -= weight
            if u < 0:
                return kind
        return kinds[-1][0]

    def _schedule_next(self) -> None:
        item = next(self._items, None)
        if item is None:
            return
        at, action, args = item
        self.runtime.call_at(at, self._fire, action, args)

    def _fire(self, action: Callable[..., None], args: tuple[Any, ...]) -> None:
        action(*args)
        self._schedule_next()

    # ------------------------------------------------------------------ actions

    def _start(self, i: int) -> None:
        self.runtime.feed(Start(account=self.names[i]))

    def _burst(self, i: int, gaps: tuple[int, ...], k: int, reply: tuple[str, int] | None) -> None:
        """Message ``k`` of a burst; the last one may be answered."""
        if k == 0:
            self.traffic["bursts"] += 1
        socket = self._inbound(i)
        if k < len(gaps):
            at = self.runtime.now_ms() + gaps[k]
            self.runtime.call_at(at, self._burst, i, gaps, k + 1, reply)
        elif reply is not None and socket is not None:
            kind, ready_ms = reply
            number = self._capture(i, socket, kind)
            if number >= 0:
                at = self.runtime.now_ms() + ready_ms
                self.runtime.call_at(at, self._ready, number)

    def _inbound(self, i: int) -> tuple[int, int] | None:
        name = self.names[i]
        socket = self.runtime.listening(name)
        if socket is None:
            self.traffic["inbound_dropped"] += 1  # no socket, or a half-open one
            return None
        self.traffic["inbound_messages"] += 1
        generation, attempt = socket
        self.runtime.feed(Activity(name, generation, attempt, _INBOUND))
        return socket

    def _capture(self, i: int, socket: tuple[int, int], kind: str) -> int:
        """Capture a reply to a message that came through ``socket``; its number (-1: none)."""
        if self.closed:
            self.traffic["captures_after_end"] += 1
            return -1
        number = self.recorder.captured(self.runtime.now_ms())
        self.truth.append(self.person[i])
        self.runtime.feed(ReplyCaptured(reply_id(number), self.names[i], socket[0], CHAT, kind))
        return number

    def _ready(self, number: int) -> None:
        if self.recorder.is_open(number):  # else its deadline ended it first
            self.recorder.made_ready(number, self.runtime.now_ms())
            self.runtime.feed(ReplyReady(reply_id(number), PAYLOAD))

    def _fault(self, kind: str, i: int, before: tuple[str, int, int] | None) -> None:
        if before is None:
            self._inject(kind, i, -1, 0)
            return
        reply_kind, lead, ready_after = before
        number = -1
        socket = self.runtime.listening(self.names[i])
        if socket is None:
            self.traffic["captures_skipped"] += 1  # no message can come in: nothing to answer
        else:
            self.traffic["inbound_messages"] += 1
            name = self.names[i]
            self.runtime.feed(Activity(name, socket[0], socket[1], _INBOUND))
            number = self._capture(i, socket, reply_kind)
        at = self.runtime.now_ms() + lead
        self.runtime.call_at(at, self._inject, kind, i, number, ready_after)

    def _inject(self, kind: str, i: int, number: int, ready_after: int) -> None:
        self.injected[kind] += 1
        if self._faults[kind](i):
            self.hit[kind] += 1
        if number >= 0:
            at = self.runtime.now_ms() + ready_after
            self.runtime.call_at(at, self._ready, number)

    def _close(self, status: int, terminal: bool, i: int) -> int:
        name = self.names[i]
        if status == _LOGGED_OUT:  # logged out: logins are refused until the owner re-pairs
            closed = self.runtime.logout(name)
            self._owner_later(i, repair=True)
            return closed
        closed = self.runtime.close_account(name, status)
        if closed and terminal:
            self._owner_later(i, repair=False)
        return closed

    def _relink(self, i: int) -> int:
        person = self.next_person
        if person >= MAX_PERSONS:  # pragma: no cover - a billion relinks
            raise RuntimeError("the simulation ran out of person numbers")
        self.next_person += 1
        self.person[i] = person
        closed = self.runtime.relink(self.names[i], person)
        if closed:
            self._owner_later(i, repair=False)
        return closed

    def _half_open(self, i: int) -> int:
        return int(self.runtime.half_open(self.names[i]))

    def _owner_later(self, i: int, *, repair: bool) -> None:
        delay = self.profile.fleet.owner_restart_ms
        if delay is not None:
            self.runtime.call_at(self.runtime.now_ms() + delay, self._owner, i, repair)

    def _owner(self, i: int, repair: bool) -> None:
        """The owner notices the account is down and starts it (after pairing it again)."""
        name = self.names[i]
        if repair:
            self.runtime.repair(name)
        if self.runtime.engine.current(name) is None:
            self.recorder.owner_restart(self.runtime.now_ms())
            self.runtime.feed(Start(account=name))


# --------------------------------------------------------------------------- the run


@dataclass(slots=True)
class Summary:
    """A run's outcome: ``result`` is what the seed decides, ``measured`` the costs."""

    result: dict[str, Json]
    measured: dict[str, Json]
    problems: list[str] = field(default_factory=list)
    complete: bool = True

    @property
    def ok(self) -> bool:
        """Every invariant held and the run finished."""
        return self.complete and not self.problems

    def to_json(self) -> dict[str, Json]:
        return {
            "ok": self.ok,
            "complete": self.complete,
            "problems": list(self.problems),
            **self.result,
            "measured": self.measured,
        }


def judge(world: World, recorder: Recorder, ledger: Ledger) -> dict[str, int]:
    """The receiver's ledger against the truth: who got what, how often, and should they."""
    wrong = duplicates = never_ended = delivered_not_once = sent_though_not = accepted = 0
    truth, outcome, ends = world.truth, recorder.outcome, recorder.ends
    for number in range(recorder.captured_count):
        holders = ledger.holders(reply_id(number))
        got = len(holders)
        accepted += got
        if got:
            duplicates += got - 1
            wrong += sum(1 for h in holders if person_of(h) != truth[number])
        if ends[number] == 0:
            never_ended += 1
        code = outcome[number]
        if code == 1 and got != 1:
            delivered_not_once += 1
        elif code in (2, 3) and got:
            sent_though_not += 1
    return {
        "wrong_identity": wrong,
        "duplicates": duplicates,
        "never_ended": never_ended,
        "ended_more_than_once": recorder.ended_twice,
        "ended_by_shutdown": recorder.ended_by_shutdown,
        "delivered_not_received_once": delivered_not_once,
        "refused_or_failed_yet_received": sent_though_not,
        "received_unknown_message": ledger.total - accepted,
        "rejected_inputs": recorder.rejections,
    }


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector (reference counting still frees everything).

    A run allocates millions of long-lived objects (controllers, ledger entries),
    and every full collection walks them all: a third of the run's time at 100k
    accounts, for nothing -- a run creates no reference cycles as it goes (the
    simulation as a whole is one, collected once it is dropped).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Simulation:
    """One run: a profile on a fleet of ``accounts`` for ``days`` virtual days, on ``runtime``.

    Build it, :meth:`run` it once; ``world``, ``runtime`` and ``recorder`` stay
    readable afterwards. The cyclic garbage collector is paused while it builds
    and runs (:func:`_no_cyclic_gc`).
    """

    def __init__(
        self,
        profile: Profile,
        *,
        accounts: int,
        days: float,
        seed: int = 0,
        runtime: str = "lean",
    ) -> None:
        if accounts < 1:
            raise ValueError(f"accounts must be >= 1, got {accounts}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.end_ms = round(days * DAY_MS)
        if self.end_ms < 1:
            raise ValueError(f"days must be > 0, got {days}")
        self.profile = profile
        self.accounts = accounts
        self.days = days
        self.seed = seed
        self.runtime_name = runtime
        deadline = profile.config.reply_deadline_ms
        self.recorder = Recorder(self.end_ms + deadline + SLICE_MS)
        rng = random.Random(f"heirline simulate engine {seed}")
        cls = LeanRuntime if runtime == "lean" else FakeRuntime
        self.runtime: LeanRuntime | FakeRuntime = cls(
            profile.config, random=rng.random, recorder=self.recorder, fleet=profile.fleet
        )
        self._wall_start = time.perf_counter()
        with _no_cyclic_gc():
            self.world = World(
                profile,
                self.runtime,
                self.recorder,
                accounts=accounts,
                end_ms=self.end_ms,
                seed=seed,
            )

    def run(self, progress: Progress | None = None, max_wall_s: float | None = None) -> Summary:
        """Run to the end, drain (every open reply ends by its deadline), shut down; judge."""
        with _no_cyclic_gc():
            return self._run(progress, max_wall_s)

    def _run(self, progress: Progress | None, max_wall_s: float | None) -> Summary:
        rt, recorder, end = self.runtime, self.recorder, self.end_ms
        engine = rt.engine
        deadline = self.profile.config.reply_deadline_ms
        started = self._wall_start
        complete = True

        def over_time() -> bool:
            return max_wall_s is not None and time.perf_counter() - started > max_wall_s

        now = 0
        while now < end and complete:
            now = min(end, now + SLICE_MS)
            rt.run_until(now)
            if progress is not None:
                progress(now, end, engine.events)
            complete = not over_time()
        cpu_at_end = engine.cpu_ns
        events_at_end = engine.events
        # Drain: no new replies; every open one ends by its deadline.
        self.world.closed = True
        while complete and recorder.open_count and now < end + deadline + SLICE_MS:
            now += SLICE_MS
            rt.run_until(now)
            complete = not over_time()
        recorder.shutting_down = True
        rt.feed(Shutdown(reason="the simulation is over"))
        wall = time.perf_counter() - started
        invariants = judge(self.world, recorder, rt.ledger)
        result = self._result(invariants)
        days = self.days
        measured: dict[str, Json] = {
            "wall_s": round(wall, 3),
            "engine_events": engine.events,
            "engine_events_in_days": events_at_end,
            "engine_cpu_s": round(engine.cpu_ns / 1e9, 3),
            "engine_cpu_s_per_virtual_day": round(cpu_at_end / 1e9 / days, 3),
            "engine_us_per_event": round(engine.cpu_ns / 1e3 / max(1, engine.events), 3),
            "events_per_wall_s": round(engine.events / wall) if wall > 0 else 0,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        problems = [f"{name}: {count}" for name, count in invariants.items() if count]
        problems += [f"rejected: {r}" for r in recorder.first_rejections]
        if not complete:
            problems.append(f"stopped after {max_wall_s:g} s of wall time (--max-wall)")
        return Summary(result, measured, problems, complete)

    def _result(self, invariants: dict[str, int]) -> dict[str, Json]:
        profile, world, recorder, ledger = (
            self.profile,
            self.world,
            self.recorder,
            self.runtime.ledger,
        )
        outcomes = recorder.outcomes
        return {
            "heirline": __version__,
            "profile": {"name": profile.name, "path": profile.path},
            "accounts": self.accounts,
            "days": self.days,
            "seed": self.seed,
            "runtime": self.runtime_name,
            "invariants": dict(invariants),
            "restarts": {
                "health": dict(sorted(recorder.health.items())),
                "health_total": recorder.health.total(),
                "owner": recorder.owner_restarts,
                "watchdog_closes": recorder.watchdog_closes,
            },
            "faults": {
                kind: {"injected": world.injected[kind], "hit": world.hit[kind]}
                for kind in profile.faults
            },
            "traffic": {
                key: world.traffic[key]
                for key in (
                    "bursts",
                    "inbound_messages",
                    "inbound_dropped",
                    "captures_skipped",
                    "captures_after_end",
                )
            },
            "replies": {
                "captured": recorder.captured_count,
                "delivered": outcomes["delivered"],
                "delivered_via_origin": outcomes["delivered_via_origin"],
                "delivered_via_successor": outcomes["delivered_via_successor"],
                "refused": outcomes["refused"],
                "failed": outcomes["failed"],
                "unknown": outcomes["unknown"],
                "reasons": {
                    outcome: dict(counter.most_common(5))
                    for outcome, counter in recorder.reasons.items()
                    if counter
                },
            },
            "latency_ms": {
                "handoff_from_ready": (percentiles(recorder.handoff_from_ready)),
                "handoff_from_capture": (percentiles(recorder.handoff_from_capture)),
                "origin_from_ready": (percentiles(recorder.origin_from_ready)),
            },
            "receiver": {
                "copies": ledger.total + ledger.duplicates_suppressed,
                "accepted": ledger.total,
                "suppressed": ledger.duplicates_suppressed,
            },
            "engine": {
                "generations": recorder.generations,
                "socket_opens": recorder.socket_opens,
                "log_records": dict(sorted(recorder.logs.items())),
                "log_level": profile.config.log_level.label,
            },
            "timeline": {
                "bucket_ms": recorder.bucket_ms,
                "series": {name: list(recorder.series[name]) for name in SERIES},
            },
        }


def simulate(
    profile: Profile,
    *,
    accounts: int,
    days: float,
    seed: int = 0,
    runtime: str = "lean",
    progress: Progress | None = None,
    max_wall_s: float | None = None,
) -> Summary:
    """Run ``profile`` on ``accounts`` accounts for ``days`` virtual days; the summary."""
    sim = Simulation(profile, accounts=accounts, days=days, seed=seed, runtime=runtime)
    return sim.run(progress, max_wall_s)
