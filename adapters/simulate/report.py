"""Showing a simulation: the progress line, the text summary, and the plot.

Plain text only (the command runs with no extra installed); the plot needs
matplotlib, the optional extra ``heirline[plot]``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from heirline.adapters.simulate.profile import DAY_MS
from heirline.adapters.simulate.world import Json, Summary

__all__ = [
    "PlotUnavailable",
    "ProgressLine",
    "TextStream",
    "check_plot_path",
    "plot",
    "render",
    "require_matplotlib",
]

#: Without a terminal, a progress line at most this often (wall seconds).
PLAIN_EVERY_S: Final = 30.0
#: On a terminal, the line is redrawn at most this often.
TTY_EVERY_S: Final = 0.5
PLOT_EXTRA: Final = "heirline[plot]"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@runtime_checkable
class TextStream(Protocol):
    """Where text goes: ``sys.stderr``, a file, an ``io.StringIO``."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...

    def isatty(self) -> bool: ...


class ProgressLine:
    """One status line on ``stream``: virtual day, engine events per second, ETA.

    On a terminal it is redrawn in place; otherwise a plain line is written now
    and then, so a log keeps a few of them.
    """

    def __init__(self, stream: TextStream, *, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.started = time.perf_counter()
        self._last = (self.started, 0)  # wall, virtual ms of the last line
        self._width = 0

    def __call__(self, now_ms: int, end_ms: int, events: int) -> None:
        wall = time.perf_counter()
        done = now_ms >= end_ms
        last_wall, last_ms = self._last
        if not done and wall - last_wall < (TTY_EVERY_S if self.tty else PLAIN_EVERY_S):
            return
        spent = wall - self.started
        rate = events / spent if spent > 0 else 0.0
        # The ETA goes by the pace since the last line: the start (every account connecting
        # in the first minute) is much slower per virtual ms than the rest of the day.
        pace = (wall - last_wall) / (now_ms - last_ms) if now_ms > last_ms else 0.0
        self._last = (wall, now_ms)
        when = (
            f"done in {_duration(spent)}" if done else f"ETA {_duration(pace * (end_ms - now_ms))}"
        )
        line = (
            f"day {now_ms / DAY_MS:.2f}/{end_ms / DAY_MS:g}  {events:,} events  "
            f"{rate:,.0f} events/s  {when}"
        )
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
            if done:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# --------------------------------------------------------------------------- text


def _n(value: Json) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _d(value: Json) -> Mapping[str, Json]:
    assert isinstance(value, dict)
    return value


def _pct(stats: Mapping[str, Json]) -> str:
    if not stats.get("count"):
        return "none"
    return "  ".join(f"{k} {_n(stats[k])}" for k in ("count", "p50", "p90", "p99", "max"))


def render(summary: Summary) -> str:
    """The summary as text for a terminal (the same content as ``--json``, shortened)."""
    r, m = summary.result, summary.measured
    profile = _d(r["profile"])
    restarts, replies = _d(r["restarts"]), _d(r["replies"])
    lines = [
        f"heirline simulate: profile {profile['name']} ({profile['path']}), "
        f"{_n(r['accounts'])} accounts, {r['days']:g} virtual days, seed {r['seed']}, "
        f"{r['runtime']} runtime",
        "",
        "restarts",
    ]
    health = _d(restarts["health"])
    by_reason = " · ".join(f"{k} {_n(v)}" for k, v in health.items()) or "none"
    lines += [
        f"  health restarts      {_n(restarts['health_total']):>12}   {by_reason}",
        f"  owner restarts       {_n(restarts['owner']):>12}",
        f"  watchdog closes      {_n(restarts['watchdog_closes']):>12}",
        "faults (injected / hit a socket)",
    ]
    for kind, counts in _d(r["faults"]).items():
        c = _d(counts)
        lines.append(f"  {kind:<20} {_n(c['injected']):>12} / {_n(c['hit'])}")
    traffic = _d(r["traffic"])
    lines += [
        "traffic",
        f"  inbound bursts       {_n(traffic['bursts']):>12}   messages "
        f"{_n(traffic['inbound_messages'])} · dropped (no socket, or half-open) "
        f"{_n(traffic['inbound_dropped'])}",
        "replies",
        f"  captured             {_n(replies['captured']):>12}",
        f"  delivered            {_n(replies['delivered']):>12}   via origin "
        f"{_n(replies['delivered_via_origin'])} · via successor "
        f"{_n(replies['delivered_via_successor'])}",
    ]
    reasons = _d(replies["reasons"])
    for outcome in ("refused", "failed", "unknown"):
        lines.append(f"  {outcome:<20} {_n(replies[outcome]):>12}")
        for reason, count in _d(reasons.get(outcome) or {}).items():
            lines.append(f"      {_n(count):>10}  {reason}")
    latency = _d(r["latency_ms"])
    lines.append("latency (virtual ms)")
    for key, label in (
        ("handoff_from_ready", "handoff, ready -> delivered via a successor"),
        ("handoff_from_capture", "handoff, capture -> delivered via a successor"),
        ("origin_from_ready", "origin, ready -> delivered"),
    ):
        lines.append(f"  {label:<46} {_pct(_d(latency[key]))}")
    receiver = _d(r["receiver"])
    lines.append(
        f"receiver: {_n(receiver['copies'])} copies, {_n(receiver['accepted'])} accepted, "
        f"{_n(receiver['suppressed'])} suppressed as repeats"
    )
    invariants = _d(r["invariants"])
    lines.append(
        "invariants: " + " · ".join(f"{k.replace('_', ' ')} {_n(v)}" for k, v in invariants.items())
    )
    lines += [
        f"cost: {_n(m['engine_events'])} engine events, engine CPU {m['engine_cpu_s']} s "
        f"({m['engine_cpu_s_per_virtual_day']} s per virtual day, {m['engine_us_per_event']} µs "
        f"per event); wall {m['wall_s']} s ({_n(m['events_per_wall_s'])} events/s); "
        f"peak RSS {m['peak_rss_mb']} MB",
        "",
    ]
    if summary.ok:
        lines.append("OK: 0 wrong identity, 0 duplicates, every reply ended exactly once")
    else:
        lines.append("NOT OK: " + "; ".join(summary.problems))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plot


class PlotUnavailable(Exception):
    """``--plot`` was asked for but matplotlib is not installed."""


def require_matplotlib() -> None:
    """Raise :class:`PlotUnavailable` (naming the extra) unless matplotlib imports."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(
            f"--plot needs matplotlib, which is not installed: pip install '{PLOT_EXTRA}'"
        ) from None


def check_plot_path(path: Path) -> str | None:
    """Why a PNG could not be written at ``path``, or ``None``: checked before a run.

    A run may take an hour; finding only then that ``--plot`` names a missing
    directory or a directory itself would throw the run's picture away.
    """
    parent = path.parent
    if path.is_dir():
        return f"{path} is a directory"
    if not parent.is_dir():
        return f"{parent} is not a directory" if parent.exists() else f"no directory {parent}"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write in {parent}"
    if path.exists() and not os.access(path, os.W_OK):
        return f"cannot overwrite {path}"
    return None


def plot(summary: Summary, path: Path) -> None:
    """A PNG of restarts and reply outcomes per bucket of virtual time, written at ``path``.

    The image is drawn into a temporary file next to ``path`` and renamed over it
    only once complete, so a failure (a full disk, matplotlib failing) leaves
    ``path`` as it was, never a truncated PNG.
    """
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = _d(summary.result["timeline"])
    bucket = timeline["bucket_ms"]
    assert isinstance(bucket, int)
    series = _d(timeline["series"])
    first = series["delivered"]
    assert isinstance(first, list)
    hours = [i * bucket / 3_600_000 for i in range(len(first))]
    profile = _d(summary.result["profile"])
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 7))
    restarts: Any = top
    outcomes: Any = bottom
    for name, label in (
        ("health_restarts", "health restarts"),
        ("owner_restarts", "owner restarts"),
        ("watchdog_closes", "watchdog closes (499)"),
    ):
        restarts.plot(hours, series[name], label=label, linewidth=1)
    for name, label in (
        ("delivered", "delivered"),
        ("delivered_via_successor", "delivered via a successor"),
        ("refused", "refused"),
        ("failed", "failed"),
        ("unknown", "unknown"),
    ):
        outcomes.plot(hours, series[name], label=label, linewidth=1)
    per = f"per {bucket // 60_000} virtual min"
    restarts.set_ylabel(f"restarts {per}")
    outcomes.set_ylabel(f"replies ended {per}")
    outcomes.set_xlabel("virtual hours")
    for axis in (restarts, outcomes):
        axis.set_yscale("symlog", linthresh=1)
        axis.grid(True, alpha=0.3)
        axis.legend(loc="upper right", fontsize="small")
    restarts.set_title(
        f"heirline simulate: {profile['name']}, {_n(summary.result['accounts'])} accounts, "
        f"{summary.result['days']:g} days, seed {summary.result['seed']}"
    )
    fig.tight_layout()
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    finally:
        plt.close(fig)
