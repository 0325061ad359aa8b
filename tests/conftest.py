"""Test-wide setup: beartype on every heirline boundary, and reproducible hypothesis.

``beartype.claw`` must be armed before anything imports ``heirline``; pytest
loads this conftest before the test modules, so every annotated function and
dataclass of the package is type-checked at run time in tests (and costs
nothing in production, where the hook is not installed).
"""

from __future__ import annotations

import os

import pytest
from beartype import BeartypeConf
from beartype.claw import beartype_package

beartype_package("heirline", conf=BeartypeConf())

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=150,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=2000, deadline=None, print_blob=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
settings.load_profile(PROFILE)


def pytest_report_header() -> str:
    current = settings()
    seed = "derandomized (fixed seed)" if current.derandomize else "random (see failure blob)"
    return f"hypothesis profile: {PROFILE}, max_examples={current.max_examples}, seed: {seed}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long runs run only when asked for by name: ``-m crash`` (``nox -s crash``), ``-m
    fleet`` (``nox -s fleet``); a plain ``-m "not soak"`` run keeps their short versions."""
    wanted = config.getoption("markexpr") or ""
    for marker, session in (("crash", "crash"), ("fleet", "fleet")):
        if marker in wanted:
            continue
        skip = pytest.mark.skip(reason=f"a long run: run it with -m {marker} (nox -s {session})")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


# ----------------------------------------------------------------------------- redis-server

from collections.abc import Iterator  # noqa: E402

from redis_server import RedisServer, redis_binary  # noqa: E402


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real ``redis-server`` of this test process (each xdist worker has its own).

    Skipped only where the binary is missing outside CI; in CI (``.ci/run`` installs it)
    a missing binary fails.
    """
    binary = redis_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs it: apt-get install)")
        pytest.skip("redis-server is not installed: apt-get install redis-server")
    server = RedisServer(binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()
