"""``heirline simulate``: small fleets, every shipped profile, both runtimes, the CLI.

The big runs (a million accounts) live in ``nox -s simulate``; here every
fleet is small enough for the default suite. What is checked:

* the invariants on each shipped profile: no reply through another person,
  no message accepted twice, every reply ended exactly once, no rejected input;
* the incident profile hands replies to same-person successors after health
  restarts in the retry backoff (and the retry grace prevents those restarts);
  the relink profile refuses replies waiting across a relink;
* the lean runtime and the fake gateway (with real keepalive frames) give the
  same outcome, reply for reply, on a fleet that exercises every fault;
* the judge can disagree: a copy under another identity is a wrong identity
  and a duplicate;
* determinism, the ``--json`` shape, profile validation, ``--plot``.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from heirline.adapters import cli
from heirline.adapters.simulate.identities import full_identity, person_of, shown_identity
from heirline.adapters.simulate.profile import Profile, ProfileError, load_profile, parse_profile
from heirline.adapters.simulate.recorder import OUTCOME_CODES, percentiles, reply_id
from heirline.adapters.simulate.report import ProgressLine, render
from heirline.adapters.simulate.world import CHAT, Simulation, Summary, judge, simulate
from heirline.core.lifecycle import State

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "examples" / "profiles"
SHIPPED = ("quiet", "incident", "relink")

#: A small fleet that meets every fault often: for comparing the runtimes.
EVERYTHING = """
name = "everything"
[fleet]
identity = "alternate"
auth_dir = true
boot_ms = 1468
owner_restart_ms = 60000
[faults]
close_408 = 10
close_428 = 1
close_515 = 1
close_440 = 0.5
close_401 = 0.5
relink = 0.5
half_open = 2
[traffic]
bursts = 24
burst_messages = [1, 4]
burst_gap_ms = [200, 3000]
reply_probability = 0.5
capture_before_fault = 0.5
ready_after_fault_ms = [50, 40000]  # some after a half-open socket's last frame: swallowed
kinds = { text = 3, media = 1, read_receipt = 1 }
[engine]
resendable_kinds = ["text", "media"]
[engine.health]
retry_grace_ms = false
"""


def shipped(name: str) -> Profile:
    return load_profile(PROFILES / f"{name}.toml")


def section(summary: Summary, key: str) -> Mapping[str, Any]:
    value = summary.result[key]
    assert isinstance(value, dict)
    return value


def assert_invariants(summary: Summary) -> None:
    invariants = section(summary, "invariants")
    assert invariants, "no invariants were judged"
    assert all(count == 0 for count in invariants.values()), invariants
    assert summary.ok, summary.problems
    replies = section(summary, "replies")
    ended = sum(replies[o] for o in ("delivered", "refused", "failed", "unknown"))
    assert replies["captured"] > 0
    assert ended == replies["captured"]  # every reply ended, once
    assert (
        replies["delivered"] == replies["delivered_via_origin"] + replies["delivered_via_successor"]
    )


# --------------------------------------------------------------------------- shipped profiles


@pytest.fixture(scope="module")
def incident() -> Summary:
    """The incident profile on 100 accounts for a day and a half (shared: a slow run)."""
    return simulate(shipped("incident"), accounts=100, days=1.5, seed=2)


@pytest.mark.parametrize("name", ["quiet", "relink"])
def test_every_shipped_profile_keeps_the_invariants_on_a_small_fleet(name: str) -> None:
    summary = simulate(shipped(name), accounts=150, days=1.0, seed=1)
    assert_invariants(summary)
    assert_receiver(summary)


def assert_receiver(summary: Summary) -> None:
    receiver, replies = section(summary, "receiver"), section(summary, "replies")
    # Each delivered reply was accepted once; an unknown one at most once; no other.
    assert replies["delivered"] <= receiver["accepted"] <= replies["delivered"] + replies["unknown"]
    assert receiver["copies"] == receiver["accepted"] + receiver["suppressed"]


def test_the_incident_profile_hands_captured_replies_to_same_person_successors(
    incident: Summary,
) -> None:
    assert_invariants(incident)
    assert_receiver(incident)
    # The sweep found controllers in their retry backoff and restarted them (grace off).
    assert section(incident, "restarts")["health"].get("disconnected", 0) > 0
    replies = section(incident, "replies")
    assert replies["delivered_via_successor"] > 0
    handoff = section(incident, "latency_ms")["handoff_from_ready"]
    assert handoff["count"] == replies["delivered_via_successor"]
    # Most go through a successor the sweep started: it boots (1468 ms) and connects in
    # seconds (the owner's restarts after a logout or a takeover take 2 minutes).
    assert 1468 < handoff["p50"] < 60_000
    assert section(incident, "invariants")["wrong_identity"] == 0


def test_the_retry_grace_holds_what_the_incident_profile_restarts(incident: Summary) -> None:
    text = (PROFILES / "incident.toml").read_text("utf-8")
    assert "retry_grace_ms = false" in text
    with_grace = parse_profile(
        text.replace("retry_grace_ms = false", "retry_grace_ms = 30000"), "incident+grace"
    )
    on = simulate(with_grace, accounts=100, days=1.5, seed=2)
    assert_invariants(on)
    assert section(on, "restarts")["health"].get("disconnected", 0) == 0
    # The replies those restarts handed over now wait for the controller's own retry.
    via = "delivered_via_successor"
    assert section(on, "replies")[via] < section(incident, "replies")[via]


def test_the_relink_profile_refuses_replies_waiting_across_a_relink() -> None:
    summary = simulate(shipped("relink"), accounts=150, days=1.0, seed=3)
    assert_invariants(summary)
    replies = section(summary, "replies")
    assert replies["refused"] > 0
    assert any("different identity" in reason for reason in replies["reasons"]["refused"])
    # Logouts and takeovers come back as the same person: those go out via a successor.
    assert replies["delivered_via_successor"] > 0
    assert section(summary, "restarts")["owner"] > 0


# --------------------------------------------------------------------------- the runtimes


def test_the_lean_runtime_and_the_fake_gateway_give_the_same_outcome() -> None:
    """Reply for reply (via the timeline and latencies), restart for restart."""
    profile = parse_profile(EVERYTHING, "everything.toml")
    lean = simulate(profile, accounts=25, days=0.5, seed=5, runtime="lean")
    fake = simulate(profile, accounts=25, days=0.5, seed=5, runtime="fake")
    assert_invariants(lean)
    # The fake gateway reports a frame every 30 s and re-arms the watchdog on it: many
    # more engine events, the same decisions.
    assert fake.measured["engine_events"] > 5 * lean.measured["engine_events"]  # type: ignore[operator]
    same = {k: v for k, v in lean.result.items() if k != "runtime"}
    assert same == {k: v for k, v in fake.result.items() if k != "runtime"}
    # Not vacuous: the fleet met every path the two runtimes could disagree on.
    restarts, replies = section(lean, "restarts"), section(lean, "replies")
    assert restarts["watchdog_closes"] > 0
    assert restarts["owner"] > 0
    assert restarts["health_total"] > 0
    assert replies["delivered_via_successor"] > 0
    assert replies["refused"] > 0
    assert replies["unknown"] > 0  # a send swallowed by a half-open socket


@pytest.mark.parametrize("runtime", ["lean", "fake"])
def test_a_half_open_socket_is_closed_a_watchdog_period_after_its_last_frame(
    runtime: str,
) -> None:
    """Opened at 5 ms, silent from 100 s: its last frame is at 120.005 s (30 s grid)."""
    profile = parse_profile("[fleet]\nstart_over_ms = 0\n[engine]\nhealth_timer = false\n", "p")
    sim = Simulation(profile, accounts=1, days=0.01, runtime=runtime)
    rt, engine = sim.runtime, sim.runtime.engine
    rt.run_until(100_000)
    assert engine.controller_state("acct-0", 1) is State.OPEN
    assert rt.half_open("acct-0")
    rt.run_until(420_004)
    assert engine.controller_state("acct-0", 1) is State.OPEN
    assert rt.listening("acct-0") is None  # silent: no message can come in
    rt.run_until(420_005)  # 120 005 + the 300 000 ms watchdog
    assert engine.controller_state("acct-0", 1) is State.BACKOFF
    assert sim.recorder.watchdog_closes == 1


def test_the_same_seed_gives_the_same_result_and_another_seed_another() -> None:
    profile = parse_profile(EVERYTHING, "everything.toml")
    first = simulate(profile, accounts=12, days=0.25, seed=11)
    again = simulate(profile, accounts=12, days=0.25, seed=11)
    other = simulate(profile, accounts=12, days=0.25, seed=12)
    assert first.result == again.result
    assert first.result != other.result


# --------------------------------------------------------------------------- the judge


def test_the_judge_counts_a_copy_under_another_identity_and_a_refused_reply_received() -> None:
    profile = parse_profile(EVERYTHING, "everything.toml")
    sim = Simulation(profile, accounts=20, days=0.25, seed=7)
    assert sim.run().ok
    outcome = sim.recorder.outcome
    delivered = outcome.index(OUTCOME_CODES["delivered"])
    refused = outcome.index(OUTCOME_CODES["refused"])
    ledger = sim.runtime.ledger
    stranger = full_identity(10**7)
    assert person_of(stranger) != sim.world.truth[delivered]
    ledger.record(stranger, "acct-0", reply_id(delivered), CHAT, "text", "")
    truth = shown_identity(sim.world.truth[refused], "pn", 1)
    ledger.record(truth, "acct-0", reply_id(refused), CHAT, "text", "")
    verdict = judge(sim.world, sim.recorder, ledger)
    assert verdict["wrong_identity"] == 1
    assert verdict["duplicates"] == 1
    assert verdict["delivered_not_received_once"] == 1
    assert verdict["refused_or_failed_yet_received"] == 1


def test_percentiles_are_nearest_rank() -> None:
    from array import array

    assert percentiles(array("q")) == {"count": 0}
    values = array("q", range(1, 101))
    assert percentiles(values) == {"count": 100, "p50": 50, "p90": 90, "p99": 99, "max": 100}
    assert percentiles(array("q", [7])) == {"count": 1, "p50": 7, "p90": 7, "p99": 7, "max": 7}


def test_identities_tell_the_person_from_any_form() -> None:
    for mode in ("pn", "lid", "pn+lid", "alternate"):
        for attempt in (1, 2):
            assert person_of(shown_identity(42, mode, attempt)) == 42
    assert shown_identity(5, "alternate", 1).lid is None
    assert shown_identity(5, "alternate", 2).pn is None


# --------------------------------------------------------------------------- the command


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["simulate", "--no-progress", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_summary_shape(capsys: pytest.CaptureFixture[str]) -> None:
    profile = str(PROFILES / "relink.toml")
    argv = ["--profile", profile, "--accounts", "40", "--days", "0.25", "--seed", "4", "--json"]
    code, out, err = run_cli(argv, capsys)
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert doc["ok"] is True
    assert doc["complete"] is True
    assert doc["problems"] == []
    assert (doc["accounts"], doc["days"], doc["seed"], doc["runtime"]) == (40, 0.25, 4, "lean")
    assert doc["profile"] == {"name": "relink", "path": profile}
    assert set(doc["invariants"]) >= {"wrong_identity", "duplicates", "never_ended"}
    assert all(v == 0 for v in doc["invariants"].values())
    assert set(doc["restarts"]) == {"health", "health_total", "owner", "watchdog_closes"}
    assert set(doc["replies"]) >= {"captured", "delivered", "refused", "failed", "unknown"}
    for name in ("handoff_from_ready", "handoff_from_capture", "origin_from_ready"):
        stats = doc["latency_ms"][name]
        assert set(stats) in ({"count"}, {"count", "p50", "p90", "p99", "max"})
    assert set(doc["faults"]) == set(load_profile(profile).faults)
    measured = doc["measured"]
    for key in ("wall_s", "engine_cpu_s", "engine_cpu_s_per_virtual_day", "peak_rss_mb"):
        assert isinstance(measured[key], int | float)
        assert measured[key] >= 0
    assert measured["engine_events"] > 0
    timeline = doc["timeline"]
    lengths = {len(series) for series in timeline["series"].values()}
    assert len(lengths) == 1
    assert timeline["bucket_ms"] > 0
    assert sum(timeline["series"]["delivered"]) == doc["replies"]["delivered"]


def test_text_summary_names_the_outcome(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--profile", str(PROFILES / "quiet.toml"), "--accounts", "30", "--days", "0.2"]
    code, out, _ = run_cli(argv, capsys)
    assert code == 0
    assert "restarts" in out
    assert "replies" in out
    assert "invariants" in out
    assert out.rstrip().endswith("every reply ended exactly once")


def test_a_violated_invariant_exits_1_and_says_which(capsys: pytest.CaptureFixture[str]) -> None:
    summary = simulate(parse_profile(EVERYTHING, "e"), accounts=5, days=0.05, seed=1)
    summary.problems.append("wrong_identity: 1")
    assert not summary.ok
    assert "NOT OK: wrong_identity: 1" in render(summary)


def test_max_wall_stops_the_run_incomplete(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--profile", str(PROFILES / "quiet.toml"), "--accounts", "50", "--days", "2"]
    code, out, _ = run_cli([*argv, "--max-wall", "0.000001", "--json"], capsys)
    doc = json.loads(out)
    assert code == 1
    assert doc["complete"] is False
    assert doc["ok"] is False
    assert any("--max-wall" in p for p in doc["problems"])


BAD_PROFILES = [
    ("colour = 1", "colour", "unknown key"),
    ("fleet = 3", "fleet", "must be a table"),
    ("[fleet]\nidentity = 'email'", "fleet.identity", "must be one of"),
    ("[fleet]\nboot_ms = -1", "fleet.boot_ms", "must be in 0..86400000"),
    ("[fleet]\nauth_dir = 1", "fleet.auth_dir", "must be true or false"),
    ("[fleet]\nkeepalive_ms = 300000", "fleet.keepalive_ms", "below engine.watchdog_ms"),
    ("[fleet]\nowner_restart_ms = 'soon'", "fleet.owner_restart_ms", "integer or false"),
    ("[faults]\nclose_4080 = 1", "faults.close_4080", "unknown fault"),
    ("[faults]\nclose_408 = 'many'", "faults.close_408", "must be a number"),
    ("[faults]\nclose_408 = -1", "faults.close_408", "must be in 0..10000"),
    ("[faults]\nrelink = nan", "faults.relink", "finite"),
    ("[traffic]\nreply_probability = 1.5", "traffic.reply_probability", "must be in 0..1"),
    ("[traffic]\nburst_messages = [3, 1]", "traffic.burst_messages", "min <= max"),
    ("[traffic]\nready_ms = [1, 2, 3]", "traffic.ready_ms", "[min, max]"),
    ("[traffic]\nkinds = { sms = 1 }", "traffic.kinds.sms", "unknown key"),
    ("[traffic]\nkinds = { text = 0 }", "traffic.kinds", "above 0"),
    ("[engine]\nlog_level = 'loud'", "engine.log_level", "must be one of"),
    ("[engine]\nexternal_registry = true", "engine.external_registry", "unknown key"),
    ("[engine]\nwatchdog_ms = 0", "engine.watchdog_ms", ">= 1, or false"),
    ("[engine]\nresendable_kinds = ['sms']", "engine.resendable_kinds", "unknown kinds"),
    ("[engine.health]\ncooldown_ms = -5", "engine.health.cooldown_ms", ">= 0"),
    ("[engine.health]\nretry_grace_ms = 'off'", "engine.health.retry_grace_ms", "or false"),
    ("[engine.health]\nwindow = 1", "engine.health.window", "unknown key"),
    ("[engine.backoff]\ninitial_ms = 100\nmax_ms = 10", "engine.backoff", "max_ms must be"),
    ("[engine.backoff]\nfactor = true", "engine.backoff.factor", "must be a number"),
    ("[faults\nclose_408 = 1", "line 1, column", "invalid TOML"),
]


@pytest.mark.parametrize(("text", "key", "message"), BAD_PROFILES)
def test_a_bad_profile_is_refused_naming_the_file_and_the_key(
    text: str, key: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    assert raised.value.path == str(path)
    assert raised.value.key.startswith(key)
    assert message in raised.value.message
    code, out, err = run_cli(["--profile", str(path), "--accounts", "5"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"heirline simulate: {path}: {key}")


def test_a_missing_profile_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    code, out, err = run_cli(["--profile", str(missing)], capsys)
    assert (code, out) == (2, "")
    assert f"{missing}: file: cannot read it" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--accounts", "0"], "--accounts: must be in 1..10,000,000, got 0"),
        (["--accounts", "-5"], "--accounts: must be in 1..10,000,000, got -5"),
        (["--accounts", "10000001"], "--accounts: must be in 1..10,000,000, got 10000001"),
        (["--accounts", "many"], "--accounts: not a whole number: 'many'"),
        (["--accounts", "1.5"], "--accounts: not a whole number: '1.5'"),
        (["--days", "0"], "--days: must be above 0 and at most 366, got 0"),
        (["--days", "-1"], "--days: must be above 0 and at most 366, got -1"),
        (["--days", "367"], "--days: must be above 0 and at most 366, got 367"),
        (["--days", "nan"], "--days: must be above 0 and at most 366, got nan"),
        (["--days", "inf"], "--days: must be above 0 and at most 366, got inf"),
        (["--days", "a week"], "--days: not a number: 'a week'"),
        (["--max-wall", "0"], "--max-wall: must be a positive number of seconds, got 0"),
        (["--max-wall", "inf"], "--max-wall: must be a positive number of seconds, got inf"),
        (["--seed", "x"], "--seed: invalid int value: 'x'"),
        (["--runtime", "fast"], "--runtime: invalid choice: 'fast'"),
    ],
)
def test_bad_arguments_exit_2_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["simulate", "--profile", str(PROFILES / "quiet.toml"), *argv])
    assert raised.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"argument {message}" in err


def test_a_profile_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["simulate", "--accounts", "5"])
    assert raised.value.code == 2
    assert "--profile" in capsys.readouterr().err


def test_a_profile_name_instead_of_a_file_says_what_a_profile_is(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no file called "quiet" here
    code, out, err = run_cli(["--profile", "quiet", "--accounts", "5"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("heirline simulate: quiet: file: cannot read it: No such file")
    assert "examples/profiles/quiet.toml" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),  # the path is a directory
        (b"name = '\xff'\n", "not UTF-8"),
        (b"#" * (1 << 20) + b"\n", "larger than 1048576 bytes"),
        (b"", None),  # empty: every default, which is a valid profile
    ],
)
def test_a_profile_file_that_cannot_be_read_is_refused(
    content: bytes | None, message: str | None, tmp_path: Path
) -> None:
    path = tmp_path / "p.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    if message is None:
        assert load_profile(path).name == "p"
        return
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    assert (raised.value.path, raised.value.key) == (str(path), "file")
    assert message in raised.value.message


def test_plot_without_matplotlib_names_the_extra_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    png = tmp_path / "out.png"
    argv = ["--profile", str(PROFILES / "quiet.toml"), "--accounts", "5", "--plot", str(png)]
    code, out, err = run_cli(argv, capsys)
    assert (code, out) == (2, "")
    assert "heirline[plot]" in err
    assert "matplotlib" in err
    assert not png.exists()


@pytest.mark.parametrize(
    ("where", "message"),
    [("missing/out.png", "no directory"), ("a-dir", "is a directory"), ("file/out.png", "not a")],
)
def test_a_plot_that_cannot_be_written_is_refused_before_the_run(
    where: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "file").write_text("not a directory", "utf-8")
    target = tmp_path / where
    argv = ["--profile", str(PROFILES / "quiet.toml"), "--accounts", "5", "--plot", str(target)]
    code, out, err = run_cli(argv, capsys)
    assert (code, out) == (2, "")  # nothing ran: no summary
    assert err.startswith(f"heirline simulate: --plot {target}: ")
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-dir", "file"]


def test_a_plot_that_fails_while_written_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    def half_then_full_disk(self: Figure, fname: Any, **kwargs: Any) -> None:
        fname.write(b"\x89PNG\r\n\x1a\n half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", half_then_full_disk)
    png = tmp_path / "out.png"
    png.write_bytes(b"the previous run's plot")
    argv = ["--profile", str(PROFILES / "quiet.toml"), "--accounts", "5", "--days", "0.05"]
    code, out, err = run_cli([*argv, "--plot", str(png)], capsys)
    assert code == 2
    assert "every reply ended exactly once" in out  # the summary itself was printed
    assert f"--plot {png}: cannot write it: No space left on device" in err
    assert png.read_bytes() == b"the previous run's plot"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary left


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "out.png"
    argv = ["--profile", str(PROFILES / "incident.toml"), "--accounts", "20", "--days", "0.2"]
    png.write_bytes(b"an older plot")
    code, _, _ = run_cli([*argv, "--plot", str(png)], capsys)
    assert code == 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_progress_redraws_one_line_on_a_terminal() -> None:
    stream = io.StringIO()
    line = ProgressLine(stream, tty=True)
    line.started -= 10  # ten seconds in
    line._last = (line.started, 0)
    line(43_200_000, 86_400_000, 1_000)
    line(86_400_000, 86_400_000, 2_000)
    text = stream.getvalue()
    assert text.startswith("\rday 0.50/1  1,000 events")
    assert "ETA 10s" in text  # half the day took 10 s: as long again
    assert text.count("\r") == 2
    assert text.endswith("\n")
    assert text.count("\n") == 1
    assert "done in" in text


def test_progress_without_a_terminal_writes_few_plain_lines() -> None:
    stream = io.StringIO()
    line = ProgressLine(stream, tty=False)
    line(1_000, 86_400_000, 10)  # too soon for a plain line
    line(86_400_000, 86_400_000, 20)  # the end always gets one
    assert stream.getvalue().count("\n") == 1
    assert "\r" not in stream.getvalue()


def test_the_documented_format_loads_and_names_every_key() -> None:
    """docs/simulate.md's format block is a valid profile that sets every key there is."""
    import re
    import tomllib

    from heirline.adapters.simulate.profile import _ENGINE_KEYS, Fleet, Traffic
    from heirline.core.backoff import BackoffConfig
    from heirline.core.health import HealthConfig

    doc = (ROOT / "docs" / "simulate.md").read_text("utf-8")
    block = re.search(r"## The profile format.*?```toml\n(.*?)```", doc, re.S)
    assert block is not None
    profile = parse_profile(block.group(1), "docs/simulate.md")
    assert profile.fleet == Fleet()  # [fleet] shows the defaults
    table = tomllib.loads(block.group(1))
    assert set(table["fleet"]) == set(Fleet.__dataclass_fields__)
    assert set(table["traffic"]) == set(Traffic.__dataclass_fields__)
    assert set(table["engine"]) == set(_ENGINE_KEYS)
    for name in (*HealthConfig.__dataclass_fields__, *BackoffConfig.__dataclass_fields__):
        assert name == "bases" or name in block.group(1), f"docs/simulate.md: {name}"


def _doc_section(title: str) -> str:
    doc = (ROOT / "docs" / "simulate.md").read_text("utf-8")
    start = doc.index(f"\n## {title}\n")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end >= 0 else len(doc)]


def test_the_documented_flags_are_the_commands_flags() -> None:
    """docs/simulate.md's usage block and flag table name every option, and no other."""
    import argparse
    import re

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {
        option
        for action in sub.choices["simulate"]._actions
        for option in action.option_strings
        if option not in ("-h", "--help")
    }
    running = _doc_section("Running it")
    usage = running.split("```")[1]
    table = re.findall(r"^\| `(--[a-z-]+)", running, re.M)
    assert set(re.findall(r"--[a-z-]+", usage)) == flags
    assert sorted(table) == sorted(flags)


def test_the_documented_json_keys_are_the_summarys_keys() -> None:
    """Every key of ``--json`` (two levels down, but for open-ended maps) is documented."""
    import re

    summary = simulate(parse_profile(EVERYTHING, "e"), accounts=5, days=0.05, seed=1)
    doc = summary.to_json()
    documented = set(re.findall(r"`([a-z0-9_]+)`", _doc_section("Reading the summary")))
    keys = set(doc)
    for name, value in doc.items():
        if isinstance(value, dict) and name not in ("faults",):  # faults: the profile's own
            keys |= set(value)
            if name == "timeline":
                keys |= set(value["series"])
    keys -= set(section(summary, "restarts")["health"])  # reasons, not keys
    assert keys, "no keys"
    assert keys - documented == set()
