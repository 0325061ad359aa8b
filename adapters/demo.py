"""``heirline demo``: the 408 -> restart -> successor incident, healed on loopback sockets.

Two acts, the scenario files ``examples/incident.toml`` and ``examples/relink.toml``
(shipped in the package as :mod:`heirline.examples`), each played by the scenario
runner on a fresh reference channel server and an :class:`AsyncGateway`:

1. **incident** -- controller A (logged in showing only its phone-number JID)
   captures a reply in a group; the channel closes A with 408; the health
   monitor restarts the account 114 ms later (retry grace off, as in
   production); controller B boots, learns the PN<->LID pair from the auth dir
   and logs in showing only its LID; the reply goes out through B the moment
   its socket opens.
2. **relink** -- the same, but the account was relinked to another number
   before B boots: the reply is refused at once and B never transmits.

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
    Scenario,
    ScenarioResult,
    parse_scenario,
    run_fake,
    run_real,
)
from heirline.adapters.scenario_doc import clock_text
from heirline.adapters.scenario_render import Console, Table, Text
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
    ("incident", "Act 1 - the incident: 408, restart 114 ms later, successor B", "incident.toml"),
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
    name: str, *, seed: int = DEFAULT_SEED, speed: float | int = DEFAULT_SPEED, port: int = 0
) -> ScenarioResult:
    """One act on real sockets: a fresh reference server and an AsyncGateway over loopback."""
    try:
        return await run_real(act_scenario(name), seed=seed, speed=float(speed), port=port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise DemoError(
                f"port {port} on 127.0.0.1 is busy; pick another with --port, "
                "or omit --port to use a free one"
            ) from exc
        raise DemoError(f"cannot listen on 127.0.0.1:{port}: {exc}") from exc


# --------------------------------------------------------------------------- rendering


def controller_name(generation: int | None) -> str:
    """A, B, C, ... for generations 1, 2, 3, ...; blank when none."""
    if generation is None:
        return ""
    return chr(ord("A") + generation - 1) if 1 <= generation <= 26 else f"#{generation}"


_STYLE = {
    "note": "cyan",
    "debug": "dim",
    "info": "",
    "warning": "yellow",
    "error": "bold red",
    "reply_delivered": "bold green",
    "reply_refused": "bold red",
    "reply_failed": "bold red",
    "reply_unknown": "bold red",
}


def _title(name: str) -> str:
    return next(title for act, title, _ in ACTS if act == name)


def render_timeline(console: Console, name: str, act: ScenarioResult) -> None:
    console.print()
    console.print(Text(_title(name), style="bold"))
    base = act.scenario.clock_base_ms
    for entry in act.timeline:
        style = _STYLE.get(entry.code) or _STYLE.get(entry.level, "")
        line = Text(f"{clock_text((base + entry.at_ms) % 86_400_000)}  ")
        line.append(f"{controller_name(entry.generation):<2} ", style="bold")
        line.append(entry.message, style=style)
        console.print(line, overflow="fold")


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
    seed: int = DEFAULT_SEED
    speed: float | int = DEFAULT_SPEED
    port: int = 0
    json: bool = False
    color: bool = True


Acts = list[tuple[str, ScenarioResult]]


async def _run_all(options: DemoOptions) -> Acts:
    acts = []
    for name, _, _ in ACTS:
        sc = act_scenario(name)
        budget = sc.timeout_ms * (len(sc.steps) + 1) / 1000 / options.speed + 30
        run = run_act_async(name, seed=options.seed, speed=options.speed, port=options.port)
        acts.append((name, await asyncio.wait_for(run, budget)))
    return acts


def _failed(act: ScenarioResult) -> bool:
    """An act that did not finish (a wait timed out): its promises are not shown."""
    return act.error is not None


def run_demo(
    options: DemoOptions,
    *,
    out: TextIOBase | TextIO | None = None,
    err: TextIOBase | TextIO | None = None,
    runner: Callable[[DemoOptions], Acts] | None = None,
) -> int:
    """Run both acts and print them; 0 if every promise held, 1 if not, 2 if it could not run.

    An act that does not finish in time (a machine too busy for the speed) is a
    promise not shown: a message on ``err`` and 1, never a traceback.
    """
    out = sys.stdout if out is None else cast(TextIO, out)
    err = sys.stderr if err is None else cast(TextIO, err)
    started = time.monotonic()
    try:
        acts = (runner or (lambda o: asyncio.run(_run_all(o))))(options)
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
    ok = all(act.ok for _, act in acts)
    if options.json:
        doc = {
            "ok": ok,
            "seed": options.seed,
            "speed": options.speed,
            "acts": [{"name": name, **act.to_json()} for name, act in acts],
        }
        out.write(dumps_pretty(doc) + "\n")
        return 0 if ok else 1
    console = Console(
        file=out,
        no_color=not options.color,
        color_system="auto" if options.color else None,
        highlight=False,
        width=None if out is sys.stdout else 120,
    )
    console.print(
        Text(
            f"heirline demo - seed {options.seed}, speed {options.speed:g}x, "
            "retry grace off (as in production), loopback reference server",
            style="bold",
        )
    )
    for name, act in acts:
        render_timeline(console, name, act)
    render_summary(console, acts)
    elapsed = time.monotonic() - started
    verdict = "every promise held" if ok else "a promise was BROKEN"
    console.print(Text(f"{verdict} ({elapsed:.2f}s)", style="bold green" if ok else "bold red"))
    return 0 if ok else 1
