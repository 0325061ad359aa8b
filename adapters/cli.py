"""The ``heirline`` command line.

One subparser and one handler per subcommand: add a ``_add_<name>`` that
registers its arguments and sets ``handler`` to a ``_cmd_<name>(args) -> int``,
then list it in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from heirline.core import __version__

Handler = Callable[[argparse.Namespace], int]
#: ``argparse._SubParsersAction[ArgumentParser]``, which is not subscriptable at run time.
Subparsers = Any


# --------------------------------------------------------------------------- demo


def _demo_speed(text: str) -> float:
    """``--speed`` of the demo: finite, from real time up to what its script can honour."""
    from heirline.adapters.aio import LOOP_RESOLUTION_MS, speed_problem
    from heirline.adapters.demo import MAX_SPEED, SHORTEST_STEP_MS

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    problem = speed_problem(value, MAX_SPEED)
    if problem is not None and value > MAX_SPEED:
        problem += (
            f" (faster, one tick of the event loop ({LOOP_RESOLUTION_MS} ms) spans more than "
            f"the demo's shortest step, {SHORTEST_STEP_MS} engine ms from reply ready to "
            "health check, and the incident's timing is lost)"
        )
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value}")
    return value


def _add_demo(sub: Subparsers) -> None:
    from heirline.adapters.demo import DEFAULT_SEED, DEFAULT_SPEED, MAX_SPEED

    p = sub.add_parser(
        "demo",
        help="replay the 408 -> restart -> successor incident on loopback, then the relink",
        description="Replay the incident on a loopback reference server: the captured reply "
        "is delivered through the successor; then the relinked variant is refused. "
        "Exit 0 only if every promise held.",
    )
    p.add_argument(
        "--speed",
        type=_demo_speed,
        default=DEFAULT_SPEED,
        help=f"engine ms per real ms, 1 (real time) to {MAX_SPEED:g} (default {DEFAULT_SPEED:g}; "
        "faster, one 1 ms event-loop tick spans more than the script's shortest step)",
    )
    p.add_argument("--json", action="store_true", help="print a machine-readable outcome")
    p.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"backoff jitter seed ({DEFAULT_SEED})"
    )
    p.add_argument("--no-color", action="store_true", help="plain text output")
    p.add_argument(
        "--port", type=_port, default=0, help="reference server port (default: a free one)"
    )
    p.add_argument(
        "--fleet",
        action="store_true",
        help="instead: two gateway processes on a redis-server of their own; one is killed "
        "holding replies, the other takes its accounts over (needs heirline[fleet])",
    )
    p.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from heirline.adapters.demo import DEFAULT_SEED, DEFAULT_SPEED, DemoOptions, run_demo

    if args.fleet:
        if args.json or args.port or args.seed != DEFAULT_SEED or args.speed != DEFAULT_SPEED:
            print("heirline demo: --fleet takes no other option but --no-color", file=sys.stderr)
            return 2
        from heirline.adapters.fleet_demo import run_fleet_demo

        return run_fleet_demo()

    options = DemoOptions(
        seed=args.seed, speed=args.speed, port=args.port, json=args.json, color=not args.no_color
    )
    return run_demo(options)


# -------------------------------------------------------------------------- serve


def _add_serve(sub: Subparsers) -> None:
    from heirline.adapters.stdio import add_serve_parser, run_serve

    add_serve_parser(sub)
    sub.choices["serve"].set_defaults(handler=run_serve)


# ---------------------------------------------------------------------------- run


def _add_run(sub: Subparsers) -> None:
    from heirline.adapters.scenario import add_run_parser

    add_run_parser(sub)


def _add_simulate(sub: Subparsers) -> None:
    from heirline.adapters.simulate.cli import add_simulate_parser

    add_simulate_parser(sub)


# --------------------------------------------------------------------------- table

SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_demo,
    _add_run,
    _add_serve,
    _add_simulate,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heirline",
        description="heirline: a sans-I/O decision engine for chat-gateway connection handoff.",
    )
    parser.add_argument("--version", action="version", version=f"heirline {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


#: The exit status of a command ended by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; Ctrl-C ends it quietly with :data:`EXIT_INTERRUPTED`.

    A command interrupted while it runs has already shut its engine down (every
    open reply ended, and said how) and closed its sockets when this sees it.
    The caller's SIGINT handler is in place again when this returns (``main``
    may be embedded in a longer-lived process); the ``heirline`` program is
    :func:`run`.
    """
    return _main(argv, keep_ignoring=False)


def run() -> NoReturn:
    """The ``heirline`` program: :func:`main`, then exit with its status.

    After a Ctrl-C, a second one is ignored until the process is gone: Python
    puts SIGINT's default action back while it finalizes, and a signal then
    would kill the process (status -2) instead of letting it exit 130.
    """
    sys.exit(_main(sys.argv[1:], keep_ignoring=True))


def _main(argv: Sequence[str] | None, *, keep_ignoring: bool) -> int:
    command = "heirline"
    try:
        args = build_parser().parse_args(argv)
        command += f" {args.command}"
        handler: Handler = args.handler
        return handler(args)
    except KeyboardInterrupt:
        # Exiting already: a second Ctrl-C waits for this line (only the main thread may).
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            print(f"{command}: interrupted", file=sys.stderr)
        finally:
            if previous is not None and not keep_ignoring:
                signal.signal(signal.SIGINT, previous)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    run()
