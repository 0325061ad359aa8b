"""All jobs run through nox. `nox -l` lists them; plain `nox` runs tests, typecheck, lint, node."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "typecheck", "lint", "node"]
nox.options.reuse_existing_virtualenvs = False

PYTHON = "3.11"


def _install(session: nox.Session, extras: str = "") -> None:
    """Install heirline non-editable, so tests and mypy see exactly what users get."""
    session.install(f".{extras}")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit, property, exhaustive, scenario and adapter tests with branch coverage >= 90 %."""
    _install(session, "[test]")
    session.run(
        "pytest",
        "--cov=heirline.core",
        "--cov=heirline.adapters",
        "--cov-branch",
        "--cov-report=term-missing:skip-covered",
        "--cov-fail-under=90",
        "-m",
        "not soak",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": "ci"},
    )


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the installed package and the tests."""
    _install(session, "[dev]")
    session.run("mypy", "--strict", "-p", "heirline.core", "-p", "heirline.adapters")
    session.run("mypy", "--strict", "tests", "noxfile.py")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")  # pinned: formatter output changes between releases
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def node(session: nox.Session) -> None:
    """The Node.js binding's tests: every conformance vector through the real stdio server."""
    _install(session)
    python = str(Path(session.bin) / "python")
    with session.chdir("bindings/node"):
        session.run("node", "--test", external=True, env={"PYTHON": python})


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: the incident, healed on loopback, then the relink refused."""
    _install(session)
    session.run("heirline", "demo", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios against same-process baselines (docs/performance.md)."""
    _install(session)
    session.run("python", "bench/run.py", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The long chaos soak over loopback (bounded in count and time)."""
    _install(session, "[test]")
    # -s: the soak prints its progress and its counts (replies, restarts, wrong identity, ...)
    session.run(
        "pytest", "-m", "soak", "-v", "-s", *session.posargs, env={"HYPOTHESIS_PROFILE": "ci"}
    )
