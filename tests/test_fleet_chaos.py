"""Fleet chaos with real processes: SIGKILL and SIGSTOP owners, nothing lost or misdelivered.

The short run is part of the default suite; the long ones (200 accounts, a
minute) and the run with a Redis restart run only when asked for by name: ``-m
fleet`` (``nox -s fleet``). The Redis restart left accounts without a new owner in
one CI run on a loaded machine (nothing lost or misdelivered; a liveness gap, not
yet understood), so it is not in the default suite until it is.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_chaos import ChaosReport, ChaosSize, run_chaos
from redis_server import RedisServer, redis_binary


def check(report: ChaosReport) -> None:
    print(report.summary())
    for reply_id, outcome in sorted(report.not_delivered.items())[:10]:
        print(f"  not delivered: {reply_id}: {outcome}")
    assert report.errors == []
    assert report.captured > 0
    assert report.kills > 0
    assert report.lost == []  # every captured reply ended (its record is in Redis)
    assert report.open_left == 0
    assert report.outcomes_reported_twice == []
    assert report.delivered_not_in_ledger == []
    assert report.in_ledger_not_captured == 0
    assert report.wrong_identity == []
    assert report.cross_identity == 0
    # no relink in this run: every reply has a same-identity route, so all are delivered
    assert report.states == {"delivered": report.captured}
    assert report.takeovers_ms, "no account changed hands"
    assert report.never_taken == 0  # every account a dead or stalled owner held moved on
    # The next owner waits out the lease; beyond that, adoption time (the p99 on a busy
    # machine with a hundred accounts moving at once is printed, not bounded).
    assert statistics.median(report.takeovers_ms) < report.size.ttl_ms * 3


def test_fleet_chaos_short(redis_server: RedisServer) -> None:
    size = ChaosSize(accounts=24, seconds=4.0, max_kills=4, max_stops=1, settle_s=20.0)
    check(asyncio.run(asyncio.wait_for(run_chaos(size, 1, redis_server), 60)))


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of its own that writes every acknowledged command to disk first."""
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed: apt-get install redis-server")
    server = RedisServer(binary, aof_dir=str(tmp_path))
    server.start()
    yield server
    server.stop()


@pytest.mark.fleet  # runs only when -m names it (tests/conftest.py): nox -s fleet
def test_fleet_chaos_survives_a_redis_restart(durable_redis: RedisServer) -> None:
    """redis-server killed halfway and started again on its append-only file: the owners
    ride through the outage (their calls fail, leases lapse, accounts move), nothing is lost."""
    size = ChaosSize(
        accounts=24, seconds=5.0, max_kills=3, max_stops=1, settle_s=25.0, redis_restart=True
    )
    report = asyncio.run(asyncio.wait_for(run_chaos(size, 2, durable_redis), 90))
    assert report.redis_restarts == 1
    check(report)


@pytest.mark.fleet  # runs only when -m names it (tests/conftest.py): nox -s fleet
@pytest.mark.parametrize("seed", [11, 12])
def test_fleet_chaos_long(durable_redis: RedisServer, seed: int) -> None:
    size = ChaosSize(
        accounts=200,
        seconds=45.0,
        ttl_ms=1_000,
        max_kills=20,
        max_stops=5,
        pause_s=(1.0, 2.5),
        redis_restart=True,
    )
    report = asyncio.run(asyncio.wait_for(run_chaos(size, seed, durable_redis), 240))
    assert report.redis_restarts == 1
    check(report)
