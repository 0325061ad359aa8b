"""``heirline demo --fleet``: two real gateway processes, a real redis-server, end to end."""

from __future__ import annotations

import os
import re
import socket
import subprocess

import pytest
from redis_server import RedisServer
from test_cli_manners import ENV, HEIRLINE, _interrupt, _read_until, _start

from heirline.adapters import cli, redis_server


def _gone(pid: int) -> bool:
    """The process ``pid`` has exited (the demo is its parent; once the demo exits, init
    reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as stat:  # a zombie not yet reaped is gone too
        return stat.read().split(") ", 1)[1].startswith("Z")


def test_the_fleet_demo_shows_the_takeover_and_the_refusal_and_exits_0(
    redis_server: RedisServer,  # skips (or fails in CI) like every fleet test without redis
) -> None:
    done = subprocess.run(
        [*HEIRLINE, "demo", "--fleet"], capture_output=True, text=True, env=ENV, timeout=90
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert done.stderr == ""
    for line in out.splitlines():
        assert len(line) <= 80, line
    assert "SIGKILL g1: two replies captured in Redis, neither delivered" in out
    took = re.findall(r"g2 takes (alice|bob) over (\d+\.\d\d) s after the kill", out)
    assert sorted(a for a, _ in took) == ["alice", "bob"], out
    for _, after in took:  # the lease had to run out first (renewed every TTL/3)
        assert 0.5 < float(after) < 10, out
    assert "g2: alice-1 delivered: acknowledged via successor generation 2" in out
    assert re.search(r"g2: bob-1 refused: successor generation 2: different identity", out)
    assert "alice +15550001111 received ['alice-1'] ok" in out
    assert "bob (either identity) received [] ok" in out
    assert out.rstrip().endswith("both promises held: one copy to the right identity, none "
                                 "to the wrong one")  # fmt: skip
    for pid in re.findall(r"\(pid (\d+)\)", out):
        assert _gone(int(pid)), f"worker {pid} outlived the demo"
    port = re.search(r"redis-server on 127\.0\.0\.1:(\d+)", out)
    assert port is not None
    with pytest.raises(ConnectionRefusedError):  # the demo's redis-server is gone too
        socket.create_connection(("127.0.0.1", int(port[1])), timeout=1)


def test_ctrl_c_ends_the_fleet_demo_with_130_and_takes_its_processes_along(
    redis_server: RedisServer,
) -> None:
    proc = _start("demo", "--fleet")
    lines = _read_until(proc, "holds alice and bob")
    code, _, err = _interrupt(proc)
    assert code == 130, err
    assert err == "heirline demo: interrupted\n"
    pid = re.search(r"g1 \(pid (\d+)\)", "".join(lines))
    assert pid is not None
    assert _gone(int(pid[1]))


def test_without_redis_server_the_fleet_demo_names_the_fix_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(redis_server, "redis_binary", lambda: None)
    assert cli.main(["demo", "--fleet"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "heirline demo --fleet: redis-server is not on PATH; install it: "
        "apt-get install redis-server\n"
    )


def test_the_fleet_demo_takes_no_options_of_the_incident_demo(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["demo", "--fleet", "--json"]) == 2
    assert "--fleet takes no other option" in capsys.readouterr().err
