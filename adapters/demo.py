"""``heirline demo``: the 408 -> restart -> successor incident, healed on loopback sockets.

Two acts, each on a fresh reference channel server and an :class:`AsyncGateway`:

1. **incident** -- controller A (logged in showing only its phone-number JID)
   captures a reply in a group; the channel closes A with 408; the health
   monitor restarts the account ~114 ms later (retry grace off, as in
   production); controller B boots, learns the PN<->LID pair from the auth dir
   and logs in showing only its LID; the reply goes out through B the moment
   its socket opens.
2. **relink** -- the same, but the account was relinked to another number
   before B boots: the reply is refused at once and B never transmits.

The scenario is a :data:`~heirline.adapters.fake.Script`, so the tests run the
very same acts on the fake runtime too. :func:`check_act` states what heirline
promises; the exit code is 0 only if every promise held.
"""

from __future__ import annotations

import asyncio
import errno
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import TextIOBase
from typing import Any, TextIO, cast

from rich.console import Console
from rich.table import Table
from rich.text import Text

from heirline.adapters.aio import LOOP_RESOLUTION_MS, AsyncGateway
from heirline.adapters.channel import ChannelServer, Identity, Ledger
from heirline.adapters.fake import (
    At,
    ChannelControl,
    FakeGateway,
    GatewayBase,
    ReplyOutcome,
    Script,
    ScriptTimeout,
    TimelineEntry,
    Until,
)
from heirline.adapters.jsonio import dumps_pretty
from heirline.core.engine import EngineConfig
from heirline.core.events import HealthCheck, ReplyCaptured, ReplyReady, Start
from heirline.core.health import HealthConfig

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_SPEED",
    "MAX_SPEED",
    "SHORTEST_STEP_MS",
    "ActResult",
    "Check",
    "DemoError",
    "check_act",
    "demo_config",
    "incident_script",
    "run_act_async",
    "run_act_fake",
    "run_demo",
]

#: The first draw of ``random.Random(73)`` is 0.2798: retry 1 in 2.14 s, as in the incident.
DEFAULT_SEED = 73
#: Engine ms per real ms by default: the ~10 s act plays in about half a second.
DEFAULT_SPEED = 20.0

ACCOUNT = "default"
PN = "4915123456789@s.whatsapp.net"
LID = "123456789012345@lid"
OTHER_PN = "4917000000001@s.whatsapp.net"
OTHER_LID = "987654321098765@lid"
GROUP = "120363041234567890@g.us"
REPLY = "r1"
MESSAGE_ID = "3EB0C0FFEE0001"
#: Where engine time 0 shows on the timeline clock, so the 408 lands at 12:02:27.820.
CLOCK_BASE_MS = (12 * 3600 + 2 * 60 + 20) * 1000
#: Script times (engine ms): capture, 408, ready (after the 408), health tick (after the 408).
CAPTURE_AT = 5_242
CLOSE_AT = 7_820
READY_AFTER_CLOSE = 60
HEALTH_AFTER_CLOSE = 114
#: From OpenSocket to connecting: the controller boots and reads its auth dir.
BOOT_MS = 1_468
WAIT_MS = 60_000
#: The shortest interval the script must honour: the reply becomes ready 60 ms after the
#: 408 and the health check comes 114 ms after it, 54 ms later.
SHORTEST_STEP_MS = HEALTH_AFTER_CLOSE - READY_AFTER_CLOSE
#: The fastest speed that honours it: one loop tick (LOOP_RESOLUTION_MS of real time) must
#: not span more engine time than the shortest step, or the ready and the health check --
#: and the I/O between them -- land in the same tick and the incident's timing is lost.
MAX_SPEED = SHORTEST_STEP_MS / LOOP_RESOLUTION_MS


class DemoError(Exception):
    """The demo could not run (busy port, ...); exit code 2."""


def demo_config() -> EngineConfig:
    """The engine as the incident ran it: no retry grace, health ticks driven by the script.

    The connect grace is compressed to 2 s (openclaw's is 120 s) so an act stays ~10 s long.
    """
    health = HealthConfig(retry_grace_ms=None, startup_grace_ms=0, connect_grace_ms=2_000)
    return EngineConfig(health=health, health_timer=False)


def incident_script(gw: GatewayBase, channel: ChannelControl, *, relinked: bool) -> Script:
    """The incident (``relinked=False``) or the relink variant, as a runtime-neutral script."""
    channel.add_account(ACCOUNT, pn=PN)  # A's login shows only the phone-number JID
    gw.auth_dir[ACCOUNT] = []  # no lid-mapping file written yet
    gw.feed(Start(account=ACCOUNT))
    yield Until(
        lambda: gw.engine.controller_state(ACCOUNT, 1) == "open", WAIT_MS, "controller A open"
    )
    yield At(CAPTURE_AT)
    gw.note(f"inbound message in group {GROUP}", account=ACCOUNT, generation=1)
    gw.feed(
        ReplyCaptured(
            reply_id=REPLY, account=ACCOUNT, generation=1, chat=GROUP, message_id=MESSAGE_ID
        )
    )
    yield At(CLOSE_AT)
    gw.note("channel closes the socket with status 408", account=ACCOUNT, generation=1)
    channel.close_account(ACCOUNT, 408)
    yield Until(lambda: gw.engine.controller_state(ACCOUNT, 1) != "open", WAIT_MS, "A sees the 408")
    closed_at = gw.now_ms()
    if relinked:
        gw.note(f"account relinked to {OTHER_PN} (LID {OTHER_LID})", account=ACCOUNT)
        channel.relink(ACCOUNT, None, OTHER_LID, None)
        gw.auth_dir[ACCOUNT] = [(OTHER_PN, OTHER_LID)]
    else:
        channel.add_account(ACCOUNT, lid=LID)  # the next login shows only the LID
        gw.auth_dir[ACCOUNT] = [(PN, LID)]  # Baileys wrote lid-mapping-4915123456789.json
    yield At(closed_at + READY_AFTER_CLOSE)
    gw.feed(ReplyReady(reply_id=REPLY, payload="Sure, see you at 3."))
    yield At(closed_at + HEALTH_AFTER_CLOSE)
    gw.feed(HealthCheck())
    yield Until(lambda: REPLY in gw.outcomes, WAIT_MS, f"reply {REPLY} ends")


# --------------------------------------------------------------------------- running an act


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool


@dataclass(slots=True)
class ActResult:
    """What one act produced: outcomes, the ledger, the timeline and the promise checks."""

    name: str
    title: str
    timeline: list[TimelineEntry]
    outcomes: dict[str, ReplyOutcome]
    transmissions: int
    ledger: Ledger
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        summary = self.ledger.summary()
        return {
            "name": self.name,
            "ok": self.ok,
            "replies": [
                {
                    "reply_id": o.reply_id,
                    "outcome": o.outcome,
                    "reason": o.reason,
                    "generation": o.generation,
                    "via": o.via,
                }
                for o in self.outcomes.values()
            ],
            "transmissions": self.transmissions,
            "ledger": [
                {
                    "identity": {
                        "pn": i.identity.pn,
                        "lid": i.identity.lid,
                        "e164": i.identity.e164,
                    },
                    "message_ids": list(i.message_ids),
                    "duplicates_suppressed": i.duplicates_suppressed,
                }
                for i in summary.identities
            ],
            "checks": [{"name": c.name, "ok": c.ok} for c in self.checks],
        }


ACTS: tuple[tuple[str, str, bool], ...] = (
    ("incident", "Act 1 - the incident: 408, restart 114 ms later, successor B", False),
    ("relink", "Act 2 - the same, but the account was relinked to another number", True),
)


def check_act(name: str, result: ActResult) -> list[Check]:
    """heirline's promises for each act, checked against outcomes and the server's ledger."""
    outcome = result.outcomes.get(REPLY)
    holders = result.ledger.holders(MESSAGE_ID)
    if name == "incident":
        return [
            Check(
                "reply delivered via successor B",
                outcome is not None
                and outcome.outcome == "delivered"
                and outcome.via == "successor"
                and outcome.generation == 2,
            ),
            Check(
                "ledger: exactly once, under the same identity",
                len(holders) == 1
                and holders[0].lid == LID
                and result.ledger.received(LID) == (MESSAGE_ID,)
                and result.ledger.total == 1,
            ),
        ]
    return [
        Check(
            "reply refused",
            outcome is not None and outcome.outcome == "refused",
        ),
        Check("B never transmitted", result.transmissions == 0),
        Check("ledger: nothing reached the other identity", result.ledger.total == 0),
    ]


def _result(name: str, title: str, gw: GatewayBase, ledger: Ledger) -> ActResult:
    result = ActResult(
        name, title, list(gw.timeline), dict(gw.outcomes), len(gw.transmissions), ledger
    )
    result.checks = check_act(name, result)
    return result


def run_act_fake(name: str, *, seed: int = DEFAULT_SEED) -> ActResult:
    """One act on virtual time (the fake runtime)."""
    title, relinked = _act(name)
    gw = FakeGateway(demo_config(), random=random.Random(seed).random, boot_ms=BOOT_MS)
    gw.run(incident_script(gw, gw.channel, relinked=relinked))
    return _result(name, title, gw, gw.channel.ledger)


async def run_act_async(
    name: str, *, seed: int = DEFAULT_SEED, speed: float | int = DEFAULT_SPEED, port: int = 0
) -> ActResult:
    """One act on real sockets: a fresh reference server and an AsyncGateway over loopback."""
    title, relinked = _act(name)
    server = ChannelServer(port=port)
    try:
        await server.start()
    except OSError as exc:
        await server.stop()
        if exc.errno == errno.EADDRINUSE:
            raise DemoError(
                f"port {port} on 127.0.0.1 is busy; pick another with --port, "
                "or omit --port to use a free one"
            ) from exc
        raise DemoError(f"cannot listen on 127.0.0.1:{port}: {exc}") from exc
    try:
        gw = AsyncGateway.over_channel(
            server.port,
            demo_config(),
            random=random.Random(seed).random,
            boot_ms=BOOT_MS,
            speed=speed,
        )
        async with gw:
            await gw.run(incident_script(gw, server, relinked=relinked))
        return _result(name, title, gw, server.ledger)
    finally:
        await server.stop()


def _act(name: str) -> tuple[str, bool]:
    for act, title, relinked in ACTS:
        if act == name:
            return title, relinked
    raise ValueError(f"unknown act {name!r}")


# --------------------------------------------------------------------------- rendering


def _clock(ms: int) -> str:
    total = CLOCK_BASE_MS + ms
    h, rest = divmod(total // 1000, 3600)
    m, s = divmod(rest, 60)
    return f"{h % 24:02d}:{m:02d}:{s:02d}.{total % 1000:03d}"


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


def render_timeline(console: Console, act: ActResult) -> None:
    console.print()
    console.print(Text(act.title, style="bold"))
    for entry in act.timeline:
        style = _STYLE.get(entry.code) or _STYLE.get(entry.level, "")
        line = Text(f"{_clock(entry.at_ms)}  ")
        line.append(f"{controller_name(entry.generation):<2} ", style="bold")
        line.append(entry.message, style=style)
        console.print(line, overflow="fold")


def _identity(identity: Identity) -> str:
    return str(identity)


def render_summary(console: Console, acts: Sequence[ActResult]) -> None:
    replies = Table(title="Replies", title_justify="left")
    for column in ("act", "reply", "outcome", "via", "reason"):
        replies.add_column(column, overflow="fold")
    for act in acts:
        for o in act.outcomes.values():
            style = "green" if o.outcome == "delivered" else "red"
            via = "" if o.generation is None else f"{o.via} {controller_name(o.generation)}"
            replies.add_row(act.name, o.reply_id, Text(o.outcome, style=style), via, o.reason)
    ledger = Table(title="Server ledger (what each identity received)", title_justify="left")
    for column in ("act", "identity", "message ids", "repeats suppressed"):
        ledger.add_column(column, overflow="fold")
    for act in acts:
        summary = act.ledger.summary()
        if not summary.identities:
            ledger.add_row(act.name, "(nobody)", "-", "0")
        for i in summary.identities:
            ledger.add_row(
                act.name,
                _identity(i.identity),
                ", ".join(i.message_ids),
                str(i.duplicates_suppressed),
            )
    checks = Table(title="Promises", title_justify="left")
    checks.add_column("act")
    checks.add_column("check")
    checks.add_column("held")
    for act in acts:
        for c in act.checks:
            checks.add_row(
                act.name, c.name, Text("yes" if c.ok else "NO", "green" if c.ok else "red")
            )
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


async def _run_all(options: DemoOptions) -> list[ActResult]:
    acts = []
    for name, _, _ in ACTS:
        run = run_act_async(name, seed=options.seed, speed=options.speed, port=options.port)
        acts.append(await asyncio.wait_for(run, WAIT_MS / 1000 / options.speed + 30))
    return acts


def run_demo(
    options: DemoOptions,
    *,
    out: TextIOBase | TextIO | None = None,
    err: TextIOBase | TextIO | None = None,
    runner: Callable[[DemoOptions], list[ActResult]] | None = None,
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
    ok = all(act.ok for act in acts)
    if options.json:
        doc = {
            "ok": ok,
            "seed": options.seed,
            "speed": options.speed,
            "acts": [act.to_json() for act in acts],
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
    for act in acts:
        render_timeline(console, act)
    render_summary(console, acts)
    elapsed = time.monotonic() - started
    verdict = "every promise held" if ok else "a promise was BROKEN"
    console.print(Text(f"{verdict} ({elapsed:.2f}s)", style="bold green" if ok else "bold red"))
    return 0 if ok else 1
