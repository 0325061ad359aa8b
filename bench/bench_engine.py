"""The whole call a user makes: ``Engine.handle`` at scale, against baselines run in this process.

A world of N accounts is started and connected (each with its own phone
number), then a realistic stream is recorded by driving an engine and
reacting to its effects: 408 closes, retry timers, reopened sockets, transport
frames, sockets that go silent and are closed by the watchdog (499), watchdog
timers re-armed by activity. The recorded stream is then replayed on a fresh
engine in the same state, and against:

* a dict-dispatch loop of the same shape that allocates one small effect per
  event (the floor a Python engine can hope for);
* one ``transitions.Machine`` per account doing the same (at the scale where
  building them is bearable).

Also measured at N: bytes per idle connected controller (tracemalloc, the
engine's whole retained state per account; the account names and JID strings
the adapter passes in are allocated before measuring), one health sweep with
every account healthy, one ``MappingLearned`` (new and known pair), and the
reply path (capture, ready, transmit, ack) per step against a dict lookup.
Every time is the minimum over repeats; ratios are what transfers.
"""

from __future__ import annotations

import cProfile
import gc
import heapq
import os
import pstats
import random
import sys
import time
import timeit
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from heirline.core import __file__ as core_file
from heirline.core.effects import CloseSocket, LogLevel, OpenSocket, Rejected, StartTimer
from heirline.core.engine import Engine, EngineConfig
from heirline.core.events import (
    Activity,
    Event,
    HealthCheck,
    MappingLearned,
    ReplyCaptured,
    ReplyReady,
    SocketClosed,
    SocketOpened,
    Start,
    TimerFired,
    TransmitAcked,
)
from heirline.core.timers import RetryTimer, Timer, WatchdogTimer

SEED = 7
REPEATS = 3
PN_SHARED = "4915100000000:12@s.whatsapp.net"
#: Engine settings of a production gateway: log records from INFO up are built.
CONFIG = EngineConfig(health_timer=False, log_level=LogLevel.WARNING)
CONFIG_TEXT = "EngineConfig(health_timer=False, log_level=LogLevel.WARNING)"
STEP_MS = 1_000


def names(n: int) -> tuple[list[str], list[str]]:
    """Account names and phone-number JIDs (with a device part, as Baileys shows them)."""
    return [f"acct-{i}" for i in range(n)], [f"49151{i:08d}:12@s.whatsapp.net" for i in range(n)]


@dataclass(slots=True)
class Connected:
    """An engine with N accounts started and connected, and what the world knows of it."""

    engine: Engine
    now: int
    sockets: dict[str, tuple[int, int]]  # account -> (generation, attempt) of its open socket


def connect(n: int, accounts: list[str], pns: list[str]) -> Connected:
    engine = Engine(CONFIG, random=random.Random(SEED).random)
    sockets: dict[str, tuple[int, int]] = {}
    for i in range(n):
        account = accounts[i]
        for effect in engine.handle(Start(account=account), 0):
            if isinstance(effect, OpenSocket):
                sockets[account] = (effect.generation, effect.attempt)
        generation, attempt = sockets[account]
        engine.handle(SocketOpened(account, generation, attempt, pns[i]), 0)
    return Connected(engine, 0, sockets)


def record(n: int, steps: int, accounts: list[str], pns: list[str]) -> list[tuple[Event, int]]:
    """Drive a connected engine through ``steps`` seconds of churn; the events it was fed."""
    world = connect(n, accounts, pns)
    engine, sockets = world.engine, world.sockets
    rng = random.Random(SEED)
    pn_of = dict(zip(accounts, pns, strict=True))
    timers: list[tuple[int, int, Timer]] = []
    live: dict[Timer, int] = {}
    seq = 0
    silent: set[tuple[str, int]] = set()
    stream: list[tuple[Event, int]] = []
    pending: list[tuple[int, int, Event]] = []  # facts the channel reports later

    def feed(event: Event, now: int) -> None:
        nonlocal seq
        stream.append((event, now))
        effects = engine.handle(event, now)
        assert not any(isinstance(e, Rejected) for e in effects), (event, now, effects)
        for effect in effects:
            if isinstance(effect, StartTimer):
                seq += 1
                live[effect.timer] = seq
                heapq.heappush(timers, (effect.deadline_ms, seq, effect.timer))
            elif isinstance(effect, OpenSocket):
                seq += 1
                fact = SocketOpened(
                    effect.account, effect.generation, effect.attempt, pn_of[effect.account]
                )
                heapq.heappush(pending, (now + 50, seq, fact))
                sockets[effect.account] = (effect.generation, effect.attempt)
            elif isinstance(effect, CloseSocket):
                seq += 1
                closed = SocketClosed(effect.account, effect.generation, effect.attempt, 499)
                heapq.heappush(pending, (now + 5, seq, closed))

    now = 0
    for _ in range(steps):
        now += STEP_MS
        # Channel facts and due timers, merged in time order (time never goes back).
        while (pending and pending[0][0] <= now) or (timers and timers[0][0] <= now):
            if timers and (not pending or timers[0][0] < pending[0][0]):
                at, stamp, timer = heapq.heappop(timers)
                if live.get(timer) == stamp:
                    del live[timer]
                    feed(TimerFired(timer), at)
            else:
                at, _, fact = heapq.heappop(pending)
                feed(fact, at)
        for _ in range(max(1, n // 200)):
            account = accounts[rng.randrange(n)]
            generation, attempt = sockets[account]
            roll = rng.random()
            if roll < 0.3:
                feed(SocketClosed(account, generation, attempt, 408), now)
            elif roll < 0.35:
                silent.add((account, attempt))  # half-open from now on: the watchdog's job
            elif (account, attempt) not in silent:
                feed(Activity(account, generation, attempt), now)
    return stream


def replay_ns(
    n: int, stream: list[tuple[Event, int]], accounts: list[str], pns: list[str]
) -> float:
    """Per-event time of replaying ``stream`` on a freshly connected engine (best of repeats)."""
    best = float("inf")
    for _ in range(REPEATS):
        world = connect(n, accounts, pns)
        handle = world.engine.handle
        gc.collect()
        start = time.process_time_ns()
        for event, now in stream:
            handle(event, now)
        best = min(best, time.process_time_ns() - start)
    return best / len(stream)


class Small:
    """The one small effect the baseline allocates per event."""

    __slots__ = ("account", "at")

    def __init__(self, account: str, at: int) -> None:
        self.account = account
        self.at = at


def _account_of(event: Event) -> str:
    if isinstance(event, TimerFired):
        timer = event.timer
        assert isinstance(timer, RetryTimer | WatchdogTimer)
        return timer.account
    account = getattr(event, "account", None)
    assert isinstance(account, str)
    return account


def baseline_ns(stream: list[tuple[Event, int]], accounts: list[str]) -> float:
    """A dict-dispatch loop of the same shape: one state lookup and one small effect per event."""
    state = dict.fromkeys(accounts, "open")
    routed = [(_account_of(e), type(e), now) for e, now in stream]

    def opened(account: str, now: int) -> list[Small]:
        state[account] = "open"
        return [Small(account, now)]

    def closed(account: str, now: int) -> list[Small]:
        state[account] = "backoff"
        return [Small(account, now)]

    def other(account: str, now: int) -> list[Small]:
        state[account] = state[account]
        return [Small(account, now)]

    handlers: dict[type, Callable[[str, int], list[Small]]] = {
        SocketOpened: opened,
        SocketClosed: closed,
        TimerFired: other,
        Activity: other,
    }
    best = float("inf")
    for _ in range(REPEATS):
        start = time.process_time_ns()
        for account, kind, now in routed:
            handlers[kind](account, now)
        best = min(best, time.process_time_ns() - start)
    return best / len(stream)


def transitions_ns(stream: list[tuple[Event, int]], accounts: list[str]) -> float:
    """One ``transitions.Machine`` per account doing the same: a trigger and an effect per event."""
    from transitions import Machine

    from heirline.core.lifecycle import LIFECYCLE

    spec = {
        "states": [s.value for s in LIFECYCLE.states],
        "transitions": [
            {"trigger": t.trigger.value, "source": t.source.value, "dest": t.dest.value}
            for t in LIFECYCLE.transitions
        ],
    }
    machines = {
        a: Machine(
            states=spec["states"],
            transitions=spec["transitions"],
            initial="open",
            auto_transitions=False,
            ignore_invalid_triggers=True,
        )
        for a in accounts
    }
    triggers = {SocketOpened: "opened", SocketClosed: "close_retry", TimerFired: "retry_due"}
    routed = [(machines[_account_of(e)], triggers.get(type(e)), now) for e, now in stream]
    best = float("inf")
    for _ in range(REPEATS):
        start = time.process_time_ns()
        for machine, trigger, now in routed:
            if trigger is not None:
                machine.trigger(trigger)
            [Small("a", now)]
        best = min(best, time.process_time_ns() - start)
    return best / len(stream)


#: Allocations made by the engine's own code (the bench's bookkeeping is not the engine's).
_ENGINE_CODE = tracemalloc.Filter(True, os.path.join(os.path.dirname(core_file), "*"))


def bytes_per_controller(n: int, accounts: list[str], pns: list[str]) -> float:
    """tracemalloc: what the engine retains per idle connected account.

    Counts what the engine's code allocated and still holds once N accounts are
    connected; the bench world's own map of open sockets is left out.
    """
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot().filter_traces([_ENGINE_CODE])
    world = connect(n, accounts, pns)
    gc.collect()
    after = tracemalloc.take_snapshot().filter_traces([_ENGINE_CODE])
    tracemalloc.stop()
    del world
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / n


def timed_ms(action: Callable[[], object]) -> float:
    start = time.process_time_ns()
    action()
    return (time.process_time_ns() - start) / 1e6


def sweep_and_mapping(n: int, accounts: list[str], pns: list[str]) -> dict[str, float]:
    """One health sweep with every account healthy; one MappingLearned, new and known."""
    world = connect(n, accounts, pns)
    engine = world.engine
    minute = 60_000
    return {
        "sweep_ms": min(
            timed_ms(lambda at=minute + i: engine.handle(HealthCheck(), at)) for i in range(REPEATS)
        ),
        "mapping_new_ms": timed_ms(
            lambda: engine.handle(MappingLearned(pn="4917700000001", lid="900001"), minute + 10)
        ),
        "mapping_touching_ms": timed_ms(
            lambda: engine.handle(MappingLearned(pn="4915100000007", lid="900007"), minute + 11)
        ),
        "mapping_known_ms": min(
            timed_ms(
                lambda: engine.handle(MappingLearned(pn="4917700000001", lid="900001"), minute + 12)
            )
            for _ in range(REPEATS)
        ),
    }


def reply_path_ns(n: int, replies: int, accounts: list[str], pns: list[str]) -> float:
    """Per step (capture, ready with its transmit, ack) of replies through their own socket."""
    best = float("inf")
    for _ in range(REPEATS):
        world = connect(n, accounts, pns)
        handle, sockets = world.engine.handle, world.sockets
        steps: list[tuple[Event, int]] = []
        for r in range(replies):
            account = accounts[r % n]
            generation, attempt = sockets[account]
            rid = f"r{r}"
            steps.append((ReplyCaptured(rid, account, generation, "120363@g.us"), 1_000 + r))
            steps.append((ReplyReady(rid, "hello"), 1_000 + r))
            steps.append((TransmitAcked(rid, generation, attempt), 1_000 + r))
        gc.collect()
        start = time.process_time_ns()
        for event, now in steps:
            handle(event, now)
        best = min(best, (time.process_time_ns() - start) / len(steps))
    return best


def dict_lookup_ns() -> float:
    table = {1: "open", 2: "backoff", 3: "stopped"}

    def loop() -> None:
        d = table
        for _ in range(1000):
            d[1]
            d[2]
            d[3]

    return min(timeit.repeat(loop, number=200, repeat=REPEATS)) / (200 * 3000) * 1e9


def breakdown(
    n: int, stream: list[tuple[Event, int]], accounts: list[str], pns: list[str]
) -> dict[str, tuple[int, float]]:
    """Per event type (timers by kind): count and mean ns, from one timed replay."""
    world = connect(n, accounts, pns)
    handle = world.engine.handle
    clock = time.process_time_ns
    overhead = min(-(clock() - clock()) for _ in range(1000))
    totals: dict[str, list[float]] = {}
    for event, now in stream:
        label = type(event).__name__
        if isinstance(event, TimerFired):
            label = f"TimerFired({event.timer.kind})"
        elif isinstance(event, SocketClosed):
            label = f"SocketClosed({event.status})"
        start = clock()
        handle(event, now)
        took = clock() - start - overhead
        entry = totals.setdefault(label, [0, 0.0])
        entry[0] += 1
        entry[1] += took
    return {label: (int(c), t / c) for label, (c, t) in sorted(totals.items())}


@dataclass(slots=True)
class Figures:
    accounts: int
    events: int
    engine_ns: float
    baseline_ns: float
    transitions_ns: float | None
    bytes_per_controller: float
    sweep_ms: float
    mapping_new_ms: float
    mapping_touching_ms: float
    mapping_known_ms: float
    reply_step_ns: float
    dict_ns: float
    breakdown: dict[str, tuple[int, float]]
    profile: list[tuple[str, int, float]]  # (function, calls, share of own time)


def measure(
    n: int, *, steps: int, with_transitions: bool, progress: Callable[[str], None]
) -> Figures:
    accounts, pns = names(n)
    progress(f"{n:,} accounts: recording a stream of churn")
    stream = record(n, steps, accounts, pns)
    progress(f"{n:,} accounts: replaying {len(stream):,} events")
    engine_ns = replay_ns(n, stream, accounts, pns)
    base = baseline_ns(stream, accounts)
    trans = transitions_ns(stream, accounts) if with_transitions else None
    progress(f"{n:,} accounts: memory, sweep, mapping, replies")
    per_ctl = bytes_per_controller(n, accounts, pns)
    sm = sweep_and_mapping(n, accounts, pns)
    reply = reply_path_ns(n, min(n, 20_000), accounts, pns)
    return Figures(
        accounts=n,
        events=len(stream),
        engine_ns=engine_ns,
        baseline_ns=base,
        transitions_ns=trans,
        bytes_per_controller=per_ctl,
        sweep_ms=sm["sweep_ms"],
        mapping_new_ms=sm["mapping_new_ms"],
        mapping_touching_ms=sm["mapping_touching_ms"],
        mapping_known_ms=sm["mapping_known_ms"],
        reply_step_ns=reply,
        dict_ns=dict_lookup_ns(),
        breakdown=breakdown(n, stream, accounts, pns),
        profile=profile(n, stream, accounts, pns),
    )


def table(figures: Iterable[Figures]) -> list[str]:
    """The issue's table as markdown rows, one column per scale."""
    figs = list(figures)
    head = "| measure | " + " | ".join(f"{f.accounts:,} accounts" for f in figs) + " | goal |"
    rows = [head, "|---|" + "---:|" * len(figs) + "---|"]

    def row(label: str, cells: Iterable[str], goal: str) -> None:
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {goal} |")

    row(
        "lifecycle event through `Engine.handle`",
        (
            f"{f.engine_ns / 1000:.2f} µs, **{f.engine_ns / f.baseline_ns:.1f}x** baseline"
            for f in figs
        ),
        "≤ 3x (must ≤ 6x)",
    )
    row(
        "vs one `transitions.Machine` per account",
        (
            "—" if f.transitions_ns is None else f"**{f.transitions_ns / f.engine_ns:.1f}x** faster"
            for f in figs
        ),
        "≥ 10x faster",
    )
    row(
        "memory per idle connected controller",
        (f"**{f.bytes_per_controller:.0f} B**" for f in figs),
        "≤ 256 B (must ≤ 512 B)",
    )
    row(
        "one health sweep, every account healthy",
        (f"{f.sweep_ms:.3f} ms" for f in figs),
        "≤ 10 ms at 1M",
    )
    row(
        "one `MappingLearned`: new pair / touching one account / known",
        (
            f"{f.mapping_new_ms * 1000:.0f} / {f.mapping_touching_ms * 1000:.0f} / "
            f"{f.mapping_known_ms * 1000:.0f} µs"
            for f in figs
        ),
        "≤ 100 µs",
    )
    row(
        "reply path step (capture, ready+transmit, ack) vs a dict lookup",
        (f"{f.reply_step_ns / 1000:.2f} µs, **{f.reply_step_ns / f.dict_ns:.0f}x**" for f in figs),
        "≤ 30x",
    )
    return rows


def profile(
    n: int, stream: list[tuple[Event, int]], accounts: list[str], pns: list[str], top: int = 12
) -> list[tuple[str, int, float]]:
    """Where a replay's time goes: the functions with the most own time (cProfile).

    Names are ``module.function`` within heirline (no paths); the profiler's own
    overhead inflates small functions, so read the shares, not absolute times.
    """
    world = connect(n, accounts, pns)
    handle = world.engine.handle
    profiler = cProfile.Profile()
    gc.collect()
    profiler.enable()
    for event, now in stream:
        handle(event, now)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values()) or 1.0
    rows = []
    for (filename, _line, function), entry in stats.items():
        where = Path(filename)
        if filename == "~":  # a builtin: cProfile names it "<method 'get' of 'dict' objects>"
            name = function.strip("<>")
        else:
            module = where.stem if "heirline" in where.parts else where.name
            name = f"{module}.{function}"
        rows.append((name, int(entry[1]), entry[2] / total))
    rows.sort(key=lambda row: -row[2])
    return rows[:top]


def profile_rows(f: Figures) -> list[str]:
    rows = ["| function (own time) | calls | share |", "|---|---:|---:|"]
    for name, calls, share in f.profile:
        rows.append(f"| `{name}` | {calls:,} | {share * 100:.1f} % |")
    return rows


def breakdown_rows(f: Figures) -> list[str]:
    rows = ["| event | count | mean |", "|---|---:|---:|"]
    for label, (count, ns) in f.breakdown.items():
        rows.append(f"| `{label}` | {count:,} | {ns / 1000:.2f} µs |")
    return rows


def report(accounts: list[int]) -> list[str]:
    """Measure at each scale; print and return the markdown section."""

    def progress(message: str) -> None:
        print(f"  ... {message}", file=sys.stderr, flush=True)

    figures = [
        measure(n, steps=600, with_transitions=n <= 10_000, progress=progress) for n in accounts
    ]
    shared = {n: shared_identity_bytes(n) for n in accounts}
    lines = [
        "## The whole call: `Engine.handle` at scale",
        "",
        __doc__.strip().split("\n\n")[1].replace("\n", " "),
        "",
        f"Engine settings: `{CONFIG_TEXT}`. Baseline: a dict-dispatch loop over the same events "
        "that looks the account's state up, stores it and allocates one small effect per event.",
        "",
        *table(figures),
        "",
        "Memory per idle connected controller with every account showing its own phone number "
        "(above) and with all of them showing the same one (a parsed identity is shared): "
        + ", ".join(f"{shared[n]:.0f} B at {n:,} accounts" for n in accounts)
        + ".",
        "",
        f"Per event type at {figures[-1].accounts:,} accounts (one timed replay):",
        "",
        *breakdown_rows(figures[-1]),
        "",
        f"Where the replay's time goes at {figures[-1].accounts:,} accounts (cProfile, "
        "own time of each function; the gap to the goals is spread over the dispatch, the "
        "controller's transition and its effects, with no single hot spot left):",
        "",
        *profile_rows(figures[-1]),
        "",
    ]
    print("\n".join(lines))
    return lines


def shared_identity_bytes(n: int) -> float:
    """Like :func:`bytes_per_controller`, every account logged in as the same number."""
    accounts, _ = names(n)
    return bytes_per_controller(n, accounts, [PN_SHARED] * n)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    report([int(a) for a in args if a.isdigit()] or [1_000, 100_000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
