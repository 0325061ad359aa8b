"""All jobs run through nox. `nox -l` lists them; plain `nox` runs tests, typecheck, lint, node."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "typecheck", "lint", "node"]
nox.options.reuse_existing_virtualenvs = False
# A missing interpreter fails its session (nox's default outside CI is to skip it, and a
# run that skipped every session exits 0). nox first looks for pythonX.Y on PATH, then
# (uv backend) tries `uv python install`; only if both fail is the interpreter missing.
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "auto"

#: Every supported CPython: the classifiers and requires-python in pyproject.toml say
#: the same (tests/test_packaging.py). The tests session runs on each.
PYTHONS = ("3.11", "3.12", "3.13")
#: The other sessions, and the tests session that measures coverage: the oldest.
PYTHON = PYTHONS[0]
#: Tests run on PYTHON only. The exhaustive explorer is more than half of the suite's
#: time and checks the pure core's invariants, which do not depend on the interpreter;
#: the hostile exploration, the stateful tests and the rest of the suite run on each.
ONCE = ("tests/test_explore.py::test_every_plausible_interleaving_keeps_the_invariants",)
#: The Node.js package; its package.json "engines" says which Node.js it needs.
NODE_PACKAGE = Path("bindings/node")


def _install(session: nox.Session, extras: str = "") -> None:
    """Install heirline non-editable, so tests and mypy see exactly what users get."""
    session.install(f".{extras}")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The suite on each CPython; on the oldest also coverage >= 90 % and the explorer."""
    # neonize: tests/test_neonize.py runs the adapter against neonize's own client. It skips
    # itself where the extra is missing; here that would be a false green, so import it first.
    # plot: the same for `heirline simulate --plot` (tests/test_simulate.py) and matplotlib.
    _install(session, "[test,neonize,cli,plot,fleet]")
    session.run("python", "-c", "import heirline.adapters.neonize, matplotlib")
    oldest = [
        "--cov=heirline.core",
        "--cov=heirline.adapters",
        "--cov-branch",
        "--cov-report=term-missing:skip-covered",
        "--cov-fail-under=90",
    ]
    others = [f"--deselect={test}" for test in ONCE]
    session.run(
        "pytest",
        # xdist: one worker per CPU; CI's whole run must stay well under 15 minutes
        "--numprocesses=auto",
        *(oldest if session.python == PYTHON else others),
        "-m",
        "not soak",
        *session.posargs,
        # HEIRLINE_NOX_PYTHON: the interpreter running nox, for tests/test_packaging.py
        env={"HYPOTHESIS_PROFILE": "ci", "HEIRLINE_NOX_PYTHON": sys.executable},
    )


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the installed package, the tests and the example programs."""
    # typed against each optional library: neonize, rich (the cli extra), matplotlib (plot)
    _install(session, "[dev,neonize,cli,plot]")
    session.run("mypy", "--strict", "-p", "heirline.core", "-p", "heirline.adapters")
    session.run("mypy", "--strict", "tests", "noxfile.py", "docs/neonize_echo.py")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")  # pinned: formatter output changes between releases
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


def _require_node(session: nox.Session) -> None:
    """Fail with the fix when node or npm is missing, or node is older than "engines" allows."""
    engines = json.loads((NODE_PACKAGE / "package.json").read_text("utf-8"))["engines"]["node"]
    major = int(engines.removeprefix(">="))  # ">=18": the only form used
    need = f"Node.js >= {major} with npm"
    fix = "install it: apt-get install nodejs npm (Debian/Ubuntu), or see https://nodejs.org"
    for program in ("node", "npm"):
        if shutil.which(program) is None:
            session.error(f"the node session needs {need}; {program} is not on PATH: {fix}")
    found = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if int(found.lstrip("v").split(".")[0]) < major:
        session.error(f"the node session needs {need}, found node {found}: {fix}")


@nox.session(python=PYTHON)
def node(session: nox.Session) -> None:
    """The Node.js package: its tests (every conformance vector via the real server), npm pack."""
    _require_node(session)
    _install(session)
    python = str(Path(session.bin) / "python")
    with session.chdir(NODE_PACKAGE):
        # npm test: the test files are named in package.json, so helpers are not run as tests;
        # test/pack.test.mjs checks that `npm pack` holds every file the README uses.
        session.run("npm", "test", external=True, env={"PYTHON": python})


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: the incident, healed on loopback, then the relink refused."""
    _install(session)
    session.run("heirline", "demo", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks at 1k and 100k accounts; regenerates docs/performance.md (args: run.py's)."""
    _install(session)
    args = session.posargs or ["--write", "docs/performance.md", "--accounts", "1000,100000"]
    session.run("python", "bench/run.py", *args)


@nox.session(name="bench-million", python=PYTHON)
def bench_million(session: nox.Session) -> None:
    """The whole-engine table at 1M accounts (minutes, several GB): docs/performance-million.md."""
    _install(session)
    args = ["--write", "docs/performance-million.md", "--accounts", "1000000", "engine"]
    session.run("python", "bench/run.py", *(session.posargs or args))


#: The big fleet runs of `nox -s simulate` (docs/simulate.md): profile, accounts, days.
SIMULATIONS = (("quiet", 1_000_000, 1), ("incident", 100_000, 1), ("relink", 100_000, 1))
#: Each big run stops (and fails) after this much wall time.
SIMULATE_MAX_WALL_S = 3600


@nox.session(python=PYTHON)
def simulate(session: nox.Session) -> None:
    """The big fleet runs: a million accounts for a day, then 100k for a day (bounded in time).

    `nox -s simulate -- --json` passes extra flags to every run.
    """
    _install(session)
    for profile, accounts, days in SIMULATIONS:
        session.run(
            "heirline",
            "simulate",
            "--profile",
            f"examples/profiles/{profile}.toml",
            "--accounts",
            str(accounts),
            "--days",
            str(days),
            "--max-wall",
            str(SIMULATE_MAX_WALL_S),
            *session.posargs,
        )


@nox.session(python=PYTHON)
def crash(session: nox.Session) -> None:
    """The long crash test: a journaled server SIGKILLed a few hundred times (bounded in time)."""
    _install(session, "[test]")
    # -s: the test prints its counts (kills, replies, outcomes, lost, duplicates, identity)
    session.run(
        "pytest", "-m", "crash", "-v", "-s", *session.posargs, env={"HYPOTHESIS_PROFILE": "ci"}
    )


@nox.session(python=PYTHON)
def fleet(session: nox.Session) -> None:
    """The long fleet chaos: 3 gateway processes, 200 accounts, one redis-server (bounded)."""
    if shutil.which("redis-server") is None:
        session.error("the fleet session needs redis-server: apt-get install redis-server")
    _install(session, "[test,fleet]")
    # -s: the run prints its counts (captured, delivered, lost, wrong identity, takeover)
    session.run(
        "pytest", "-m", "fleet", "-v", "-s", "tests/test_fleet_chaos.py", *session.posargs,
        env={"HYPOTHESIS_PROFILE": "ci"},
    )  # fmt: skip


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The long chaos soak over loopback (bounded in count and time)."""
    _install(session, "[test]")
    # -s: the soak prints its progress and its counts (replies, restarts, wrong identity, ...)
    session.run(
        "pytest", "-m", "soak", "-v", "-s", *session.posargs, env={"HYPOTHESIS_PROFILE": "ci"}
    )
