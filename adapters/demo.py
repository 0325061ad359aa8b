"""``heirline demo``: the 408 -> restart -> successor incident, healed on loopback sockets.

Two acts, the scenario files ``examples/incident.toml`` and ``examples/relink.toml``
(shipped in the package as :mod:`heirline.examples`), each played by the scenario
runner on a fresh reference channel server and an :class:`AsyncGateway`:

1. **incident** -- controller g1 (logged in showing only its phone-number JID)
   captures a reply in a group; the channel closes g1 with 408; the health
   monitor restarts the account 114 ms later as scripted (retry grace off, as in
   production); controller g2 boots, learns the PN<->LID pair from the auth dir
   and logs in showing only its LID; the reply goes out through g2 the moment
   its socket opens.
2. **relink** -- the same, but the account was relinked to another number
   before g2 boots: the reply is refused at once and g2 never transmits.

The timeline is printed as it happens, with what the act waits for in between,
and each act ends with the gap between the 408 and the restart as measured on
loopback (in engine time, loop latency included) beside the scripted one.

What heirline promises is what the files expect (``[expect.r1]``) plus the
invariants every scenario run checks; the exit code is 0 only if all held. The
tests play the very same acts on the fake runtime (:func:`run_act_fake`).
"""

from __future__ import annotations

import asyncio
import errno
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from io import TextIOBase
from typing import Final, TextIO, cast

from heirline.adapters.aio import LOOP_RESOLUTION_MS
from heirline.adapters.jsonio import dumps_pretty
from heirline.adapters.scenario import (
    OnEntry,
    OnWait,
    Scenario,
    ScenarioResult,
    parse_scenario,
    run_fake,
    run_interruptible,
    run_real,
)
from heirline.adapters.scenario_render import (
    Console,
    Stream,
    Table,
    Text,
    controller_name,
    make_console,
)
from heirline.adapters.script import ScriptTimeout

__all__ = [
    "ACTS",
    "DEFAULT_SEED",
    "DEFAULT_SPEED",
    "MAX_SPEED",
    "SHORTEST_STEP_MS",
    "DemoError",
    "DemoOptions",
    "act_scenario",
    "controller_name",
    "headline",
    "restart_gap",
    "run_act_async",
    "run_act_fake",
    "run_demo",
]

#: The first draw of ``random.Random(73)`` is 0.2798: retry 1 in 2.14 s, as in the incident.
DEFAULT_SEED: Final = 73
#: Engine ms per real ms by default: the ~10 s act plays in about half a second.
DEFAULT_SPEED: Final = 20.0

#: The acts: name, title, scenario file in :mod:`heirline.examples`.
ACTS: Final[tuple[tuple[str, str, str], ...]] = (
    ("incident", "Act 1 - the incident: 408, health restart, successor g2", "incident.toml"),
    ("relink", "Act 2 - the same, but the account was relinked to another number", "relink.toml"),
)


@cache
def act_scenario(name: str) -> Scenario:
    """The scenario of one act, read from the package's copy of ``examples/``."""
    for act, _, file in ACTS:
        if act == name:
            text = resources.files("heirline.examples").joinpath(file).read_text("utf-8")
            return parse_scenario(text, f"examples/{file}")
    raise ValueError(f"unknown act {name!r}")


#: The shortest interval the acts must honour: the reply becomes ready 60 ms after the
#: 408 and the health check comes 114 ms after it, 54 ms later (read from the files).
SHORTEST_STEP_MS: Final = min(
    step.after_ms
    for name, _, _ in ACTS
    for step in act_scenario(name).steps
    if step.after_ms is not None
)
#: The fastest speed that honours it: one loop tick (LOOP_RESOLUTION_MS of real time) must
#: not span more engine time than the shortest step, or the ready and the health check --
#: and the I/O between them -- land in the same tick and the incident's timing is lost.
MAX_SPEED: Final = SHORTEST_STEP_MS / LOOP_RESOLUTION_MS


class DemoError(Exception):
    """The demo could not run (busy port, ...); exit code 2."""


def run_act_fake(name: str, *, seed: int = DEFAULT_SEED) -> ScenarioResult:
    """One act on virtual time (the fake runtime)."""
    return run_fake(act_scenario(name), seed=seed)


async def run_act_async(
    name: str,
    *,
    seed: int = DEFAULT_SEED,
    speed: float | int = DEFAULT_SPEED,
    port: int = 0,
    on_entry: OnEntry | None = None,
    on_wait: OnWait | None = None,
) -> ScenarioResult:
    """One act on real sockets: a fresh reference server and an AsyncGateway over loopback."""
    try:
        return await run_real(
            act_scenario(name),
            seed=seed,
            speed=float(speed),
            port=port,
            on_entry=on_entry,
            on_wait=on_wait,
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise DemoError(
                f"port {port} on 127.0.0.1 is busy; pick another with --port, "
                "or omit --port to use a free one"
            ) from exc
        raise DemoError(f"cannot listen on 127.0.0.1:{port}: {exc}") from exc


# --------------------------------------------------------------------------- rendering


def _title(name: str) -> str:
    return next(title for act, title, _ in ACTS if act == name)


def restart_gap(act: ScenarioResult) -> int | None:
    """Engine ms from the engine learning of the 408 to its health restart; None if absent."""
    closed = next((e.at_ms for e in act.timeline if e.fields.get("status") == 408), None)
    restart = next((e.at_ms for e in act.timeline if e.code == "health_restart"), None)
    return None if closed is None or restart is None else restart - closed


@cache
def scripted_gap(name: str) -> int | None:
    """The act's gap on virtual time, where it is exactly what the file scripts (114 ms)."""
    return restart_gap(run_act_fake(name))


def headline(name: str, act: ScenarioResult, speed: float | int) -> str | None:
    """What happened between the 408 and the restart, honestly: measured, then as scripted."""
    gap, scripted = restart_gap(act), scripted_gap(name)
    if gap is None or scripted is None:
        return None
    if act.runtime == "fake":
        return f"health restart {gap} ms after the 408 (virtual time; scripted {scripted} ms)"
    added = f"; loopback and event loop add {gap - scripted} ms" if gap > scripted else ""
    return (
        f"health restart {gap} ms after the 408 in engine time "
        f"({gap / speed:.1f} ms real at {speed:g}x)\n"
        f"the script asks {scripted} ms, as in the incident{added}"
    )


class DemoView:
    """Prints each act as it plays: title, timeline entries as they come, waits, headline."""

    def __init__(self, console: Console, options: DemoOptions, progress: str | None) -> None:
        self.console = console
        self.options = options
        self.progress = progress
        self.streams: dict[str, Stream] = {}
        self.ended: set[str] = set()

    def begin(self, name: str) -> Stream:
        if name not in self.streams:
            self.console.print()
            self.console.print(Text(_title(name), style="bold"))
            base = act_scenario(name).clock_base_ms
            self.streams[name] = Stream(self.console, base, self.progress)
        return self.streams[name]

    def end(self, name: str, act: ScenarioResult) -> None:
        """The act's entries not streamed yet (a runner that did not stream), then its headline."""
        stream = self.begin(name)
        stream.close()
        for entry in act.timeline[stream.printed :]:
            stream.entry(entry)
        if name not in self.ended:
            self.ended.add(name)
            line = headline(name, act, self.options.speed)
            if line is not None:
                self.console.print(Text(line, style="bold"))

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()


def render_summary(console: Console, acts: Sequence[tuple[str, ScenarioResult]]) -> None:
    replies = Table(title="Replies", title_justify="left")
    for column in ("act", "reply", "outcome", "via", "reason"):
        replies.add_column(column, overflow="fold")
    for name, act in acts:
        for o in act.outcomes.values():
            style = "green" if o.outcome == "delivered" else "red"
            via = "" if o.generation is None else f"{o.via} {controller_name(o.generation)}"
            replies.add_row(name, o.reply_id, Text(o.outcome, style=style), via, o.reason)
    ledger = Table(title="Server ledger (what each identity received)", title_justify="left")
    for column in ("act", "identity", "message ids", "repeats suppressed"):
        ledger.add_column(column, overflow="fold")
    for name, act in acts:
        summary = act.ledger.summary()
        if not summary.identities:
            ledger.add_row(name, "(nobody)", "-", "0")
        for i in summary.identities:
            ids = ", ".join(i.message_ids)
            ledger.add_row(name, str(i.identity), ids, str(i.duplicates_suppressed))
    checks = Table(title="Promises", title_justify="left")
    for column in ("act", "check", "held"):
        checks.add_column(column)
    for name, act in acts:
        for c in act.checks:
            checks.add_row(name, c.name, Text("yes" if c.ok else "NO", "green" if c.ok else "red"))
    console.print()
    console.print(replies)
    console.print(ledger)
    console.print(checks)


# --------------------------------------------------------------------------- entry point


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """``progress``: how waits show (``"live"``, ``"lines"``, ``None``: not); auto if unset."""

    seed: int = DEFAULT_SEED
    speed: float | int = DEFAULT_SPEED
    port: int = 0
    json: bool = False
    color: bool = True
    progress: str | None = "auto"


Acts = list[tuple[str, ScenarioResult]]


async def _run_all(options: DemoOptions, view: DemoView | None = None) -> Acts:
    acts = []
    for name, _, _ in ACTS:
        sc = act_scenario(name)
        budget = sc.timeout_ms * (len(sc.steps) + 1) / 1000 / options.speed + 30
        stream = None if view is None else view.begin(name)
        run = run_act_async(
            name,
            seed=options.seed,
            speed=options.speed,
            port=options.port,
            on_entry=None if stream is None else stream.entry,
            on_wait=None if stream is None else stream.wait,
        )
        act = await asyncio.wait_for(run, budget)
        if view is not None:
            view.end(name, act)
        acts.append((name, act))
    return acts


def _failed(act: ScenarioResult) -> bool:
    """An act that did not finish (a wait timed out): its promises are not shown."""
    return act.error is not None


def _progress(options: DemoOptions, console: Console, out: TextIOBase | TextIO) -> str | None:
    """How waits show: as set, else live on a terminal (one line under rich), else not."""
    if options.progress != "auto":
        return options.progress
    if not out.isatty():
        return None
    return "live" if type(console).__module__.startswith("rich") else "lines"


def run_demo(
    options: DemoOptions,
    *,
    out: TextIOBase | TextIO | None = None,
    err: TextIOBase | TextIO | None = None,
    runner: Callable[[DemoOptions], Acts] | None = None,
) -> int:
    """Run both acts and print them as they play; 0 if every promise held, 1 if not, 2 if not run.

    An act that does not finish in time (a machine too busy for the speed) is a
    promise not shown: a message on ``err`` and 1, never a traceback. ``runner``
    (tests) returns finished acts; they are printed as if streamed.
    """
    out = sys.stdout if out is None else cast(TextIO, out)
    err = sys.stderr if err is None else cast(TextIO, err)
    started = time.monotonic()
    view = None
    if not options.json:
        console = make_console(out, options.color, stdout=out is sys.stdout)
        console.print(
            Text(
                f"heirline demo - seed {options.seed}, speed {options.speed:g}x, retry grace off "
                "(as in production), loopback reference server",
                style="bold",
            )
        )
        view = DemoView(console, options, _progress(options, console, out))
    try:
        acts = (runner or (lambda o: run_interruptible(_run_all(o, view))))(options)
        unfinished = next((act.error for _, act in acts if _failed(act)), None)
        if unfinished is not None:
            raise ScriptTimeout(unfinished)
    except DemoError as exc:
        print(f"heirline demo: {exc}", file=err)
        return 2
    except (ScriptTimeout, TimeoutError) as exc:
        print(
            f"heirline demo: an act did not finish ({exc or 'timed out'}); "
            f"the machine may be too busy for --speed {options.speed:g}, try a lower one",
            file=err,
        )
        return 1
    finally:
        if view is not None:
            view.close()
    ok = all(act.ok for _, act in acts)
    if view is None:
        doc = {
            "ok": ok,
            "seed": options.seed,
            "speed": options.speed,
            "acts": [{"name": name, **act.to_json()} for name, act in acts],
        }
        out.write(dumps_pretty(doc) + "\n")
        return 0 if ok else 1
    for name, act in acts:
        view.end(name, act)
    render_summary(view.console, acts)
    elapsed = time.monotonic() - started
    verdict = "every promise held" if ok else "a promise was BROKEN"
    view.console.print(
        Text(f"{verdict} ({elapsed:.2f}s)", style="bold green" if ok else "bold red")
    )
    return 0 if ok else 1
