"""Breakdown: the lifecycle machine alone, against baselines measured in this same run.

Per event: (a) a bare dict lookup (the floor), (b) the compiled table step
(``CompiledMachine.next``) and a full ``Controller`` event (effects included),
(c) the same machine as a per-instance ``transitions.Machine`` (``trigger``).
Memory: tracemalloc over many idle controllers vs many per-instance Machines.
Each timing is the minimum over repeats of a timeit loop. These are component
figures; what a user pays is the whole ``Engine.handle`` call (bench_engine).
"""

from __future__ import annotations

import gc
import timeit
import tracemalloc
from collections.abc import Callable

from transitions import Machine

from heirline.core.controller import AttemptCounter, Controller
from heirline.core.effects import Log, OpenSocket
from heirline.core.lifecycle import LIFECYCLE, LifecycleConfig, State

REPEATS = 7


def _per_call_ns(stmt: Callable[[], object], number: int, calls_per_stmt: int) -> float:
    """Minimum over ``REPEATS`` of the time per inner call, in nanoseconds."""
    best = min(timeit.repeat(stmt, number=number, repeat=REPEATS))
    return best / (number * calls_per_stmt) * 1e9


def _dict_lookup_ns() -> float:
    flat = {"connecting": "open", "open": "backoff", "backoff": "connecting"}

    def loop() -> None:
        d = flat
        for _ in range(1000):
            d["connecting"]
            d["open"]
            d["backoff"]

    return _per_call_ns(loop, 100, 3000)


def _empty_loop_ns() -> float:
    def loop() -> None:
        for _ in range(1000):
            pass

    return _per_call_ns(loop, 100, 3000)


def _compiled_step_ns() -> float:
    step = LIFECYCLE.compile().next
    opened, close_retry, retry_due = (t for t in LIFECYCLE.triggers if t.value in (
        "opened", "close_retry", "retry_due"))  # fmt: skip

    def loop() -> None:
        s = State.CONNECTING
        for _ in range(1000):
            s = step(s, opened)
            s = step(s, close_retry)
            s = step(s, retry_due)

    return _per_call_ns(loop, 100, 3000)


def _controller_event_ns() -> float:
    c = Controller("acct", 1, LifecycleConfig(), AttemptCounter())
    c.start(0)
    clock = [0]

    def loop() -> None:
        now = clock[0]
        for _ in range(200):
            c.opened(now)
            now += 70_000  # open longer than healthy_after_ms: the attempt count resets
            c.closed(408, now, 0.5)
            c.retry_due(now)
        clock[0] = now

    return _per_call_ns(loop, 20, 600)


def _effects_ns() -> float:
    """Constructing the two effects a typical event returns (frozen dataclasses)."""

    def loop() -> None:
        for _ in range(200):
            OpenSocket("acct", 1, 7)
            Log("info", "lifecycle.retrying", "Retry 1/12: connecting.", "acct", 1, {"retry": 1})

    return _per_call_ns(loop, 50, 200)


def _machine(state: str = "idle") -> Machine:
    """A per-instance ``transitions.Machine`` of the same declaration."""
    return Machine(
        states=[s.value for s in LIFECYCLE.states],
        transitions=[
            {"trigger": t.trigger.value, "source": t.source.value, "dest": t.dest.value}
            for t in LIFECYCLE.transitions
        ],
        initial=state,
        auto_transitions=False,
    )


def _transitions_trigger_ns() -> float:
    machine = _machine("connecting")
    trigger = machine.trigger

    def loop() -> None:
        for _ in range(100):
            trigger("opened")
            trigger("close_retry")
            trigger("retry_due")

    return _per_call_ns(loop, 5, 300)


def _bytes_per_instance(make: Callable[[int], object], count: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    keep = [make(i) for i in range(count)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # the list holding the instances is not part of their cost
    total -= keep.__sizeof__()
    del keep
    return total / count


def _row(label: str, value: float, unit: str, note: str = "") -> None:
    print(f"  {label:<42}{value:10.1f} {unit:<2}  {note}".rstrip())


def _goal(label: str, ok: bool) -> str:
    return f"{'PASS' if ok else 'MISS'}  {label}"


def main() -> int:
    """Print the figures and PASS/MISS per goal; always returns 0 (a report, not a gate)."""
    config = LifecycleConfig()
    accounts = [f"acct-{i}" for i in range(20_000)]  # owned by the engine, not counted

    empty = _empty_loop_ns()
    floor = _dict_lookup_ns()
    compiled = _compiled_step_ns()
    controller = _controller_event_ns()
    effects = _effects_ns()
    oracle = _transitions_trigger_ns()
    attempts = AttemptCounter()
    ctrl_bytes = _bytes_per_instance(lambda i: Controller(accounts[i], i, config, attempts), 20_000)
    machine_bytes = _bytes_per_instance(lambda i: _machine(), 300)

    print(f"per event (min of {REPEATS} repeats; loop overhead {empty:.1f} ns included in each)")
    _row("(a) dict lookup d[state]", floor, "ns")
    _row("(b) compiled CompiledMachine.next", compiled, "ns", f"{compiled / floor:.1f}x dict")
    _row("    Controller event (with effects)", controller, "ns", f"{controller / floor:.0f}x dict")
    _row("    of which OpenSocket + Log creation", effects, "ns")
    _row("(c) per-instance transitions trigger()", oracle, "ns")
    _row("transitions / compiled step", oracle / compiled, "x")
    _row("transitions / Controller event", oracle / controller, "x")
    print("memory per instance (tracemalloc)")
    _row("idle Controller", ctrl_bytes, "B")
    _row(
        "per-instance transitions.Machine", machine_bytes, "B", f"{machine_bytes / ctrl_bytes:.0f}x"
    )
    ratio_dict = compiled / floor
    ratio_oracle = oracle / compiled
    print(_goal(f"compiled step <= 10x dict lookup ({ratio_dict:.1f}x)", ratio_dict <= 10))
    print(
        _goal(
            f"compiled step >= 10x faster than transitions ({ratio_oracle:.0f}x)",
            ratio_oracle >= 10,
        )
    )
    print(_goal(f"idle Controller <= 1 KiB ({ctrl_bytes:.0f} B)", ctrl_bytes <= 1024))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
