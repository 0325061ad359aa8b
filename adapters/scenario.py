"""``heirline run SCENARIO``: scenario files (TOML) run on the fake or the asyncio runtime.

A scenario declares accounts (with the identity each login gets and what its
auth dir holds), engine overrides, timed steps (channel and gateway actions)
and, per reply, the expected outcome. The runner is four small modules, all
re-exported here:

* reading -- :mod:`heirline.adapters.scenario_read`: :func:`load_scenario` /
  :func:`parse_scenario` validate a file (a :class:`ScenarioError` names the
  file, the key or line, and what is wrong);
* scripting -- :mod:`heirline.adapters.scenario_play`: :func:`scenario_script`,
  the runtime-neutral :data:`~heirline.adapters.script.Script` both runtimes run;
* checking -- :mod:`heirline.adapters.scenario_check`: :func:`check_result`;
* rendering -- :mod:`heirline.adapters.scenario_render`: :func:`render`.

This module runs them: :func:`run_fake` on virtual time, :func:`run_real` on a
loopback :class:`~heirline.adapters.channel.ChannelServer` with an
:class:`~heirline.adapters.aio.AsyncGateway`, so outcomes compare one to one,
and the ``heirline run`` command. The format is documented in ``docs/scenarios.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, TypeVar, get_args

from heirline.adapters.aio import AsyncGateway, speed_problem
from heirline.adapters.channel import ChannelServer
from heirline.adapters.fake import FakeGateway
from heirline.adapters.gateway import GatewayBase, TimelineEntry
from heirline.adapters.jsonio import dumps_pretty
from heirline.adapters.ledger import Ledger
from heirline.adapters.scenario_check import Check, ScenarioResult, Sent, check_result
from heirline.adapters.scenario_play import scenario_script
from heirline.adapters.scenario_read import (
    ACTIONS,
    DEFAULT_SPEED,
    DEFAULT_TIMEOUT_MS,
    MAX_FILE_BYTES,
    MAX_SPAN_MS,
    Account,
    Expectation,
    Kind,
    Outcome,
    Scenario,
    ScenarioError,
    Step,
    Via,
    load_scenario,
    parse_scenario,
    scenario_schema,
)
from heirline.adapters.scenario_render import (
    Stream,
    make_console,
    render,
    render_head,
    render_tables,
)
from heirline.adapters.script import At, Script, ScriptTimeout, Until
from heirline.core.effects import Transmit

__all__ = [
    "ACTIONS",
    "DEFAULT_SPEED",
    "DEFAULT_TIMEOUT_MS",
    "MAX_FILE_BYTES",
    "MAX_SPAN_MS",
    "Account",
    "Check",
    "Expectation",
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "Step",
    "add_run_parser",
    "check_result",
    "load_scenario",
    "parse_scenario",
    "render",
    "run_command",
    "run_fake",
    "run_interruptible",
    "run_real",
    "scenario_schema",
    "scenario_script",
]

OUTCOMES: Final = frozenset(get_args(Outcome))
VIAS: Final = frozenset(get_args(Via))
KINDS: Final = frozenset(get_args(Kind))


def _finish(
    sc: Scenario,
    runtime: str,
    gw: GatewayBase,
    ledger: Ledger,
    error: str | None,
    started: float,
) -> ScenarioResult:
    result = ScenarioResult(
        sc, runtime, dict(gw.outcomes), list(gw.timeline), len(gw.transmissions), ledger, error
    )
    result.transmitted = Counter(t.reply_id for t in gw.transmissions if isinstance(t, Transmit))
    times = [e.at_ms for e in gw.timeline if e.code == "transmit"]  # one per Transmit, in order
    result.sent = [
        Sent(
            at_ms,
            t.reply_id,
            t.account,
            t.generation,
            t.attempt,
            t.message_id,
            t.transmission,
            gw.opened_as.get((t.account, t.attempt), (None, None, None)),
        )
        for at_ms, t in zip(times, gw.transmissions, strict=True)
    ]
    for rejected in gw.rejections:
        result.checks.append(
            Check(f"engine accepted every input ({rejected.code})", False, rejected.message)
        )
    result.checks.extend(check_result(result))
    result.wall_s = time.monotonic() - started
    return result


OnEntry = Callable[[TimelineEntry], None]
OnWait = Callable[[At | Until], None]


def _announced(script: Script, on_wait: OnWait | None) -> Script:
    """The script, telling ``on_wait`` each wait before it starts."""
    for step in script:
        if on_wait is not None:
            on_wait(step)
        yield step


def run_fake(
    sc: Scenario, *, seed: int | None = None, on_entry: OnEntry | None = None
) -> ScenarioResult:
    """Play the scenario on virtual time (the fake runtime); ``on_entry`` sees each entry."""
    started = time.monotonic()
    gw = FakeGateway(
        sc.config,
        random=random.Random(sc.seed if seed is None else seed).random,
        boot_ms=sc.boot_ms,
        connect_ms=sc.connect_ms,
        ack_ms=sc.ack_ms,
    )
    gw.on_entry = on_entry
    for lat in sc.latency:
        if lat.connect_ms is not None:
            gw.connect_ms_of[(lat.account, lat.generation)] = lat.connect_ms
    error = None
    try:
        gw.run(scenario_script(sc, gw, gw.channel))
    except ScriptTimeout as exc:
        error = str(exc)
    return _finish(sc, "fake", gw, gw.channel.ledger, error, started)


async def run_real(
    sc: Scenario,
    *,
    seed: int | None = None,
    speed: float | None = None,
    port: int = 0,
    on_entry: OnEntry | None = None,
    on_wait: OnWait | None = None,
) -> ScenarioResult:
    """Play the scenario on loopback sockets: a fresh reference server and an AsyncGateway.

    ``port`` is the server's (0: a free one); an ``OSError`` if it cannot listen there.
    ``on_entry`` sees each timeline entry as it is recorded, ``on_wait`` each wait of
    the script before it starts. Cancelled (Ctrl-C), it shuts the engine down as
    ``aclose`` does, reason ``interrupted`` (every open reply ends, and ``on_entry``
    sees how), closes every socket and the server, and re-raises.
    """
    started = time.monotonic()
    speed = sc.speed if speed is None else speed
    server = ChannelServer(port=port)
    try:
        await server.start()
    except OSError:
        await server.stop()
        raise
    error = None
    try:
        if sc.ack_ms:
            server.set_ack_delay(max(0, round(sc.ack_ms / speed)))
        gw = AsyncGateway.over_channel(
            server.port,
            sc.config,
            random=random.Random(sc.seed if seed is None else seed).random,
            boot_ms=sc.boot_ms,
            speed=speed,
        )
        gw.on_entry = on_entry
        async with gw:
            try:
                await gw.run(_announced(scenario_script(sc, gw, server), on_wait))
            except ScriptTimeout as exc:
                error = str(exc)
            except asyncio.CancelledError:
                await gw.aclose("interrupted")
                raise
        return _finish(sc, "real", gw, server.ledger, error, started)
    finally:
        await server.stop()


T = TypeVar("T")


def run_interruptible(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` for a command: Ctrl-C cancels ``main``, a second one exits.

    The first SIGINT cancels ``main`` (``run_real`` then shuts the engine down and
    closes its sockets and server) and raises ``KeyboardInterrupt`` once it has;
    a second SIGINT during that exits at once with status 130, output flushed.
    """

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        interrupted = False

        def second() -> None:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(130)

        def first() -> None:
            nonlocal interrupted
            interrupted = True
            loop.add_signal_handler(signal.SIGINT, second)
            task.cancel()

        loop.add_signal_handler(signal.SIGINT, first)
        try:
            return await main
        except asyncio.CancelledError:
            if interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    return asyncio.run(guarded())


def add_run_parser(
    subparsers: Any,
) -> None:  # argparse._SubParsersAction (not subscriptable at run time)
    """Register ``heirline run SCENARIO [--real] [--json] [--seed N] [--speed X] [--no-color]``."""
    p = subparsers.add_parser(
        "run",
        help="run a scenario file (TOML) and check its expectations",
        description="Run a scenario on virtual time with the fake runtime, or with --real on "
        "loopback sockets. Exit 0 if every expectation held, 1 if not, 2 if the file is "
        "malformed. The format is in docs/scenarios.md.",
    )
    p.add_argument("scenario", help="path to the scenario .toml file")
    p.add_argument("--real", action="store_true", help="run on loopback sockets (asyncio)")
    p.add_argument("--json", action="store_true", help="print a machine-readable outcome")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument(
        "--speed",
        type=_speed_arg,
        default=None,
        help="with --real: engine ms per real ms, 1 (real time) to 1000",
    )
    p.add_argument("--quiet", action="store_true", help="omit the timeline")
    p.add_argument("--no-color", action="store_true", help="plain text output")
    p.set_defaults(handler=run_command)


def _speed_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    problem = speed_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def run_command(args: argparse.Namespace, *, out: Any = None, err: Any = None) -> int:
    """Handler of ``heirline run``: 0 if every expectation held, 1 if not, 2 if malformed.

    ``out``/``err`` are text streams (default stdout/stderr; any object with ``write``).
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        sc = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"heirline run: {exc}", file=err)
        return 2
    speed = getattr(args, "speed", None)
    problem = None if speed is None else speed_problem(speed)
    if problem is not None:
        print(f"heirline run: --speed {problem}", file=err)
        return 2
    seed = getattr(args, "seed", None)
    real = getattr(args, "real", False)
    console = None
    stream = None
    if not getattr(args, "json", False):
        console = make_console(out, not getattr(args, "no_color", False), stdout=out is sys.stdout)
        render_head(console, sc.name, "real" if real else "fake", sc.path, sc.description)
        if not getattr(args, "quiet", False):
            stream = Stream(console, sc.clock_base_ms)
    on_entry = None if stream is None else stream.entry
    if real:
        budget = sc.timeout_ms * (len(sc.steps) + 1) / 1000 / (speed or sc.speed) + 30
        run = run_real(sc, seed=seed, speed=speed, on_entry=on_entry)
        try:
            result = run_interruptible(asyncio.wait_for(run, budget))
        except (OSError, TimeoutError) as exc:
            print(f"heirline run: {sc.path}: could not run on loopback: {exc!r}", file=err)
            return 2
    else:
        result = run_fake(sc, seed=seed, on_entry=on_entry)
    if console is None:
        out.write(dumps_pretty(result.to_json()) + "\n")
    else:
        render_tables(console, result)
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m heirline.adapters.scenario``: the same as ``heirline run``."""
    parser = argparse.ArgumentParser(prog="heirline")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_parser(sub)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
