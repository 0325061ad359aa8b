"""``heirline demo`` end to end, in process: real loopback sockets, --json parsed, exit codes."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from heirline.adapters import cli


def test_demo_json_on_loopback_keeps_every_promise(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--json", "--speed", "40"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True
    assert doc["seed"] == 73
    incident, relink = doc["acts"]
    reply = incident["replies"][0]
    assert (reply["outcome"], reply["via"], reply["generation"]) == ("delivered", "successor", 2)
    holders = incident["ledger"]["identities"]
    assert [e["identity"]["lid"] for e in holders] == ["123456789012345@lid"]
    assert holders[0]["message_ids"] == ["3EB0C0FFEE0001"]
    assert relink["replies"][0]["outcome"] == "refused"
    assert relink["transmissions"] == 0
    assert relink["ledger"]["identities"] == []


def test_demo_text_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--no-color", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "Act 1" in out
    assert "Act 2" in out
    assert "every promise held" in out


def test_busy_port_is_a_clear_error_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["demo", "--json", "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert f"port {port} on 127.0.0.1 is busy" in captured.err
    assert captured.out == ""


def test_demo_leaves_no_task_behind() -> None:
    from heirline.adapters.demo import DemoOptions, _run_all

    async def main() -> set[asyncio.Task[Any]]:
        acts = await _run_all(DemoOptions(speed=50))
        assert all(act.ok for _, act in acts)
        me = asyncio.current_task()
        return {t for t in asyncio.all_tasks() if t is not me}

    assert asyncio.run(main()) == set()


@pytest.mark.parametrize(
    "argv",
    [["demo", "--speed", "0"], ["demo", "--speed", "fast"], ["demo", "--port", "70000"], []],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err


@pytest.mark.parametrize(
    ("speed", "message"),
    [
        ("1e9", "must be between 1 (real time) and 54, got 1e+09 (faster, one tick of the event"),
        ("inf", "must be a finite number, got inf"),
        ("-inf", "must be a finite number, got -inf"),
        ("nan", "must be a finite number, got nan"),
        ("55", "and 54, got 55 (faster, one tick of the event loop (1 ms) spans more than the"),
        ("0.5", "must be between 1 (real time) and 54, got 0.5"),
    ],
)
def test_demo_speed_is_finite_and_within_what_the_script_honours(
    speed: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--speed 1e9`` and ``--speed inf`` used to crash mid-run; now a usage error, exit 2."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--json", f"--speed={speed}"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert "argument --speed: " in captured.err
    assert message in " ".join(captured.err.split())
    assert captured.out == ""


def test_demo_help_states_the_speed_range(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "1 (real time) to 54" in help_text
    assert "shortest step" in help_text


def test_subcommands_are_a_table() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["demo"]).handler is cli._cmd_demo


def test_serve_without_a_transport_flag_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["serve"]) == 2
    assert "pass --stdio" in capsys.readouterr().err


def test_serve_stdio_answers_the_handshake_and_one_event_per_line() -> None:
    import json
    import subprocess
    import sys

    lines = (
        '{"hello":{"protocol":2,"seed":1}}\n'
        '{"id":1,"now":0,"event":{"type":"start","account":"a"}}\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "heirline.adapters.cli", "serve", "--stdio"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    hello, answer, end = (json.loads(line) for line in done.stdout.splitlines())
    assert hello["hello"]["protocol"] == 2
    assert answer["id"] == 1
    assert [e["type"] for e in answer["effects"]][:2] == ["registered", "open_socket"]
    assert answer["effects"][1]["attempt"] == 1
    # EOF shuts the engine down: the last line closes the socket the start asked for
    assert end["shutdown"] is True
    assert end["effects"][0]["type"] == "close_socket"
    assert end["effects"][0]["attempt"] == 1
    assert "1 events, 0 errors" in done.stderr


def test_run_checks_an_example_scenario_and_reports_its_outcome(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "relink.toml"
    assert cli.main(["run", str(example), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert [(r["reply_id"], r["outcome"]) for r in report["replies"]] == [("r1", "refused")]
    assert report["transmissions"] == 0


def test_run_names_the_file_of_a_malformed_scenario(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("x = [\n", encoding="utf-8")
    assert cli.main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    assert "TOML syntax" in err


def test_version_names_the_installed_heirline(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.metadata

    from heirline.core import __version__

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"heirline {__version__}\n"
    assert importlib.metadata.version("heirline") == __version__


def test_the_console_script_prints_the_version() -> None:
    import subprocess
    import sys
    from pathlib import Path

    from heirline.core import __version__

    script = Path(sys.executable).parent / "heirline"  # installed next to this interpreter
    done = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == f"heirline {__version__}\n"
