"""``heirline simulate``: the command line of the fleet simulator (docs/simulate.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

from heirline.adapters.simulate.profile import ProfileError, load_profile
from heirline.adapters.simulate.report import (
    PlotUnavailable,
    ProgressLine,
    TextStream,
    check_plot_path,
    plot,
    render,
    require_matplotlib,
)
from heirline.adapters.simulate.world import RUNTIMES, simulate

__all__ = ["add_simulate_parser", "run_simulate"]

MAX_ACCOUNTS: Final = 10_000_000
MAX_DAYS: Final = 366.0


def _accounts(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= MAX_ACCOUNTS:
        raise argparse.ArgumentTypeError(f"must be in 1..{MAX_ACCOUNTS:,}, got {value}")
    return value


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= MAX_DAYS:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be above 0 and at most {MAX_DAYS:g}, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def add_simulate_parser(subparsers: Any) -> None:  # argparse._SubParsersAction
    """Register ``heirline simulate``."""
    p = subparsers.add_parser(
        "simulate",
        help="run a fleet on virtual time through the real engine and summarize it",
        description="Drive the engine through a simulated fleet: seeded faults and traffic "
        "from a profile (TOML), on virtual time. Prints restarts by reason, reply outcomes, "
        "handoff latencies, the invariants (0 wrong identity, 0 duplicates) and the cost. "
        "Exit 0 if every invariant held, 1 if not (or --max-wall stopped it), 2 for a "
        "usage or profile error. The format and the model are in docs/simulate.md.",
    )
    p.add_argument(
        "--profile", required=True, help="profile file (.toml), e.g. examples/profiles/quiet.toml"
    )
    p.add_argument("--accounts", type=_accounts, default=1000, help="fleet size (default 1000)")
    p.add_argument("--days", type=_days, default=1.0, help="virtual days to run (default 1)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the faults, traffic and jitter (default 0)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument(
        "--plot",
        metavar="FILE",
        type=Path,
        default=None,
        help="write a PNG of restarts and reply outcomes over virtual time (needs heirline[plot])",
    )
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="lean",
        help="lean (default: any fleet size) or fake (FakeGateway with real keepalive "
        "frames: the reference, for small fleets)",
    )
    p.add_argument(
        "--max-wall",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="stop after this much wall time (the run is then incomplete: exit 1)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(handler=run_simulate)


def run_simulate(
    args: argparse.Namespace, *, out: TextStream | None = None, err: TextStream | None = None
) -> int:
    """Handler of ``heirline simulate``: 0 every invariant held, 1 not, 2 usage or file error."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if args.plot is not None:
        try:
            require_matplotlib()
        except PlotUnavailable as exc:
            print(f"heirline simulate: {exc}", file=err)
            return 2
        problem = check_plot_path(args.plot)
        if problem is not None:
            print(f"heirline simulate: --plot {args.plot}: {problem}", file=err)
            return 2
    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        print(f"heirline simulate: {exc}", file=err)
        return 2
    progress = None if args.no_progress else ProgressLine(err)
    summary = simulate(
        profile,
        accounts=args.accounts,
        days=args.days,
        seed=args.seed,
        runtime=args.runtime,
        progress=progress,
        max_wall_s=args.max_wall,
    )
    if args.json:
        out.write(json.dumps(summary.to_json(), indent=2) + "\n")
    else:
        out.write(render(summary))
    if args.plot is not None:
        try:
            plot(summary, args.plot)
        except OSError as exc:
            reason = exc.strerror or exc
            print(f"heirline simulate: --plot {args.plot}: cannot write it: {reason}", file=err)
            return 2
    return 0 if summary.ok else 1
