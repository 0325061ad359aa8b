"""CLI manners (issue 14): Ctrl-C, streamed timelines, one controller naming, 80 columns,
``run --json`` with the timeline and transmissions, latency per generation, late facts.

The Ctrl-C tests send SIGINT to a real ``heirline`` process, each bounded in time.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from heirline.adapters.demo import DemoOptions, headline, restart_gap, run_act_fake, run_demo
from heirline.adapters.gateway import TimelineEntry
from heirline.adapters.scenario import (
    ScenarioError,
    load_scenario,
    parse_scenario,
    run_fake,
    run_real,
)
from heirline.adapters.scenario_render import timeline_lines

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
HEIRLINE = [
    sys.executable,
    "-X",
    "faulthandler",  # a hung process shows where it hangs (see _interrupt)
    "-c",
    "from heirline.adapters.cli import run; run()",  # what the installed `heirline` runs
]
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


# --------------------------------------------------------------------------- Ctrl-C


def _start(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*HEIRLINE, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> list[str]:
    """Lines of stdout up to and including the first that holds ``needle`` (bounded)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if needle in line:
                return lines
    proc.kill()
    proc.communicate(timeout=10)
    raise AssertionError(f"{needle!r} never came; got {''.join(lines)!r}")


def _interrupt(proc: subprocess.Popen[str], times: int = 1) -> tuple[int, str, str]:
    for _ in range(times):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - the failure this test exists for
        proc.send_signal(signal.SIGABRT)  # -X faulthandler: the stacks, on stderr
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"still running 30 s after Ctrl-C: {err}") from None
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def slow_incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The incident with g2 booting 30 s late: r1 is open whenever Ctrl-C lands."""
    path = tmp_path_factory.mktemp("slow") / "incident.toml"
    text = (EXAMPLES / "incident.toml").read_text(encoding="utf-8")
    latency = '[[latency]]\naccount = "default"\ngeneration = 2\nboot_ms = 30000\n\n'
    path.write_text(text.replace("[[steps]]", latency + "[[steps]]", 1), encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["demo", "run --real"])
def test_ctrl_c_ends_the_reply_as_a_shutdown_and_exits_130(
    command: str, slow_incident: Path
) -> None:
    argv = (
        ("demo", "--no-color", "--speed", "1")  # real time: r1 waits 1.5 s for g2
        if command == "demo"
        else ("run", "--real", "--speed", "1", "--no-color", str(slow_incident))
    )
    proc = _start(*argv)
    seen = _read_until(proc, "reply r1 captured")
    assert proc.poll() is None  # the timeline streams: this line came while the act runs
    code, out, err = _interrupt(proc)
    assert code == 130
    assert "Traceback" not in err
    assert err.strip().endswith("interrupted")
    # The shutdown ended the open reply, and the timeline says how; the controller stopped.
    assert "reply r1 failed: interrupted before the reply was sent" in out
    assert "g1  Stopped: interrupted." in out
    assert "Promises" not in "".join(seen) + out  # no summary of an act that did not end


def test_a_second_ctrl_c_still_exits_130_without_a_traceback() -> None:
    proc = _start("demo", "--no-color", "--speed", "2")
    _read_until(proc, "Web connection open")
    code, _, err = _interrupt(proc, times=2)
    assert code == 130
    assert "Traceback" not in err


def _line(proc: subprocess.Popen[str], doc: dict[str, Any]) -> dict[str, Any]:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(doc) + "\n")
    proc.stdin.flush()
    answer: dict[str, Any] = json.loads(_read_until(proc, "}", timeout=30)[-1])
    return answer


def test_ctrl_c_in_serve_writes_the_shutdown_line_and_exits_130() -> None:
    proc = _start("serve", "--stdio")
    _line(proc, {"hello": {"protocol": 2, "seed": 1, "clock": "host"}})
    _line(proc, {"id": 1, "now": 0, "event": {"type": "start", "account": "a"}})
    captured = {
        "type": "reply_captured",
        "reply_id": "r1",
        "account": "a",
        "generation": 1,
        "chat": "c@g.us",
        "kind": "text",
    }
    _line(proc, {"id": 2, "now": 5, "event": captured})
    code, out, err = _interrupt(proc)
    assert code == 130
    assert "Traceback" not in err
    assert "(interrupted)" in err
    last = json.loads(out.splitlines()[-1])
    assert (last["id"], last["shutdown"]) == (None, True)
    ended = [e for e in last["effects"] if e["type"] == "reply_failed"]
    assert ended == [
        {
            "type": "reply_failed",
            "reply_id": "r1",
            "outcome": "failed",
            "reason": "interrupted before the reply was sent",
        }
    ]
    assert any(e["type"] == "close_socket" for e in last["effects"])


def test_a_cancelled_real_run_shuts_down_and_closes_its_server() -> None:
    """In process: cancelling run_real ends the reply, stops g1, frees the port, leaks no task."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seen: list[TimelineEntry] = []

    async def main() -> set[asyncio.Task[Any]]:
        captured = asyncio.Event()

        def on_entry(entry: TimelineEntry) -> None:
            seen.append(entry)
            if entry.code == "reply_captured":
                captured.set()

        sc = load_scenario(EXAMPLES / "incident.toml")
        task = asyncio.create_task(run_real(sc, speed=5.0, port=port, on_entry=on_entry))
        await asyncio.wait_for(captured.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        me = asyncio.current_task()
        return {t for t in asyncio.all_tasks() if t is not me}

    assert asyncio.run(main()) == set()
    codes = [e.code for e in seen]
    assert "reply_failed" in codes
    failed = next(e for e in seen if e.code == "reply_failed")
    assert failed.message == "reply r1 failed: interrupted before the reply was sent"
    assert any(e.message == "Stopped: interrupted." for e in seen)
    with socket.socket() as again, pytest.raises(ConnectionRefusedError):
        again.connect(("127.0.0.1", port))


# --------------------------------------------------------------------------- streaming


def test_the_demo_prints_waits_between_entries_and_an_honest_headline() -> None:
    out = io.StringIO()
    assert run_demo(DemoOptions(color=False, speed=20, progress="lines"), out=out) == 0
    text = out.getvalue()
    lines = text.splitlines()
    waiting = [i for i, line in enumerate(lines) if "waiting for health check at 12:02:2" in line]
    restart = [i for i, line in enumerate(lines) if "health-monitor: restarting" in line]
    assert len(waiting) == len(restart) == 2  # one per act, the wait before its restart
    assert all(w < r for w, r in zip(waiting, restart, strict=True))
    gaps = [int(g) for g in re.findall(r"health restart (\d+) ms after the 408 in engine", text)]
    assert len(gaps) == 2
    assert all(g >= 114 for g in gaps)  # the loop never makes it faster than the script
    assert text.count("the script asks 114 ms, as in the incident") == 2


def test_the_headline_reports_the_measured_gap_and_the_scripted_one() -> None:
    fake = run_act_fake("incident")
    assert restart_gap(fake) == 114
    assert headline("incident", fake, 20) == (
        "health restart 114 ms after the 408 (virtual time; scripted 114 ms)"
    )
    real = asyncio.run(asyncio.wait_for(run_real(fake.scenario, speed=20.0), 60))
    gap = restart_gap(real)
    assert gap is not None
    line = headline("incident", real, 20)
    assert line is not None
    assert line.startswith(f"health restart {gap} ms after the 408 in engine time")
    assert f"({gap / 20:.1f} ms real at 20x)" in line


# --------------------------------------------------------------------------- names, 80 columns


def _no_rich(*argv: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; sys.modules['rich'] = None\n"
        "from heirline.adapters.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=ENV,
    )


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HEIRLINE, *argv], capture_output=True, text=True, timeout=120, check=False, env=ENV
    )


@pytest.mark.parametrize("rich", [True, False], ids=["rich", "plain"])
def test_every_line_fits_80_columns_and_controllers_are_g1_g2(rich: bool) -> None:
    call = _run if rich else _no_rich
    outputs = [call("demo", "--no-color", "--speed", "40")]
    outputs += [call("run", "--no-color", str(p)) for p in sorted(EXAMPLES.glob("*.toml"))]
    outputs.append(call("run", "--real", "--no-color", str(EXAMPLES / "relink.toml")))
    for done in outputs:
        assert done.returncode == 0, done.stderr
        too_long = [line for line in done.stdout.splitlines() if len(line) > 80]
        assert too_long == [], done.args
    demo = outputs[0].stdout
    assert re.search(r"^12:02:\d\d\.\d{3}  g2  socket 2 open as lid=", demo, re.M)
    assert "successor g2" in demo
    assert not re.search(r"\s[AB]\s\s", demo)  # the old A/B names are gone


def test_a_long_timeline_message_wraps_under_itself() -> None:
    entry = TimelineEntry(5, "info", "x", "word " * 30, generation=12)
    lines = timeline_lines(0, entry, 80)
    assert lines[0].startswith("00:00:00.005  g12 word")
    assert all(len(line) <= 80 for line in lines)
    assert all(line.startswith(" " * 18 + "word") for line in lines[1:])


# --------------------------------------------------------------------------- run --json


def _result_schema() -> dict[str, Any]:
    """The ``run --json`` shape, as docs/scenarios.md documents it."""
    doc = (ROOT / "docs" / "scenarios.md").read_text("utf-8")
    section = doc.split("## The `--json` output", 1)[1]
    block = section.split("```json\n", 1)[1].split("\n```", 1)[0]
    schema: dict[str, Any] = json.loads(block)
    return schema


@pytest.mark.parametrize(
    "argv",
    [("incident.toml",), ("incident.toml", "--real"), ("late-facts.toml",)],
    ids=["fake", "real", "late-facts"],
)
def test_run_json_matches_the_documented_shape(argv: tuple[str, ...]) -> None:
    done = _run("run", "--json", str(EXAMPLES / argv[0]), *argv[1:])
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, _result_schema())
    # A machine can check transmission order, identities and "no restart" from it.
    assert [s["transmission"] for s in doc["sent"]] == list(range(1, len(doc["sent"]) + 1))
    assert [e["at_ms"] for e in doc["timeline"]] == sorted(e["at_ms"] for e in doc["timeline"])


def test_run_json_lists_transmissions_in_order_with_their_identity() -> None:
    done = _run("run", "--json", str(EXAMPLES / "late-facts.toml"))
    doc = json.loads(done.stdout)
    pn = "4915123456789@s.whatsapp.net"
    assert [
        (s["generation"], s["attempt"], s["message_id"], s["identity"]["pn"], s["transmission"])
        for s in doc["sent"]
    ] == [(1, 1, "3EB0LATE0001", pn, 1), (2, 2, "3EB0LATE0001", pn, 2)]
    incident = json.loads(_run("run", "--json", str(EXAMPLES / "incident.toml")).stdout)
    codes = [e["code"] for e in incident["timeline"]]
    assert codes.count("health_restart") == 1
    (sent,) = incident["sent"]
    assert sent["identity"] == {"pn": None, "lid": "123456789012345@lid", "e164": None}
    restart = next(e for e in incident["timeline"] if e["code"] == "health_restart")
    assert (restart["at_ms"], restart["clock"]) == (7934, "12:02:27.934")


def test_the_schema_would_catch_an_undocumented_key() -> None:
    doc = json.loads(_run("run", "--json", str(EXAMPLES / "relink.toml")).stdout)
    doc["timeline"][0]["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, _result_schema())


# --------------------------------------------------------------------------- latency, late facts


def test_a_generation_boots_and_connects_with_its_own_latency() -> None:
    result = run_fake(load_scenario(EXAMPLES / "late-facts.toml"))
    assert result.ok, [c for c in result.checks if not c.ok]
    by_gen = {
        (e.generation, e.code): e.at_ms
        for e in result.timeline
        if e.code in ("lifecycle.connecting", "socket_opened")
    }
    assert by_gen[(1, "socket_opened")] - by_gen[(1, "lifecycle.connecting")] == 200 + 5
    assert by_gen[(2, "socket_opened")] - by_gen[(2, "lifecycle.connecting")] == 3000 + 400


def test_late_facts_are_answered_as_late_and_change_nothing() -> None:
    sc = load_scenario(EXAMPLES / "late-facts.toml")
    for result in (run_fake(sc), asyncio.run(asyncio.wait_for(run_real(sc), 60))):
        assert result.ok, [c for c in result.checks if not c.ok]
        late = {e.code: e for e in result.timeline if e.code in ("late_ack", "late_close")}
        assert set(late) == {"late_ack", "late_close"}
        assert "after it ended (delivered)" in late["late_ack"].message
        assert "generation 1 is over and forgotten" in late["late_close"].message
        assert result.outcomes["r1"].generation == 2  # the late ack did not move the outcome


def test_without_the_late_facts_the_timeline_has_no_late_entry() -> None:
    """The check above could fail: the late entries come from the late steps alone."""
    text = (EXAMPLES / "late-facts.toml").read_text("utf-8")
    cut = text.split('[[steps]]\nafter = 10\naction = "late_ack"', 1)[0]
    cut += text[text.index("[expect.r1]") :]
    result = run_fake(parse_scenario(cut, "cut.toml"))
    assert result.ok
    assert not [e for e in result.timeline if e.code.startswith("late_")]


TINY = """
[[accounts]]
name = "default"
pn = "4915123456789@s.whatsapp.net"
[[steps]]
at = 0
action = "start"
account = "default"
"""


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        ('[[latency]]\naccount = "nobody"\ngeneration = 2\n', "latency[0].account", "unknown"),
        (
            '[[latency]]\naccount = "default"\ngeneration = 2\n'
            '[[latency]]\naccount = "default"\ngeneration = 2\nboot_ms = 1\n',
            "latency[1].generation",
            "given twice",
        ),
        ('[[latency]]\naccount = "default"\ngeneration = 0\n', "latency[0].generation", ""),
        (
            '[[latency]]\naccount = "default"\ngeneration = 2\nboot_ms = -1\n',
            "latency[0].boot_ms",
            "",
        ),
        (
            '[[steps]]\naction = "late_close"\naccount = "default"\n',
            "steps[1].generation",
            "missing",
        ),
    ],
)
def test_bad_latency_tables_and_late_steps_are_named(extra: str, where: str, message: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(TINY + extra, "bad.toml")
    assert exc.value.where.startswith(where), exc.value
    assert message in exc.value.message


def test_main_gives_the_callers_sigint_handler_back_after_an_interrupt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An embedder that calls ``main()`` keeps its own Ctrl-C handling afterwards."""
    import argparse

    from heirline.adapters import cli

    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    parser = argparse.ArgumentParser(prog="heirline")
    parser.set_defaults(command="demo", handler=interrupted)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)

    def mine(signum: int, frame: object) -> None:
        raise AssertionError("not called")

    previous = signal.signal(signal.SIGINT, mine)
    try:
        assert cli.main([]) == cli.EXIT_INTERRUPTED
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().err == "heirline demo: interrupted\n"
