"""The demo module: acts, promise checks, rendering and exit codes (no CLI parsing here)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from heirline.adapters.aio import LOOP_RESOLUTION_MS
from heirline.adapters.channel import Identity, Ledger
from heirline.adapters.demo import (
    MAX_SPEED,
    SHORTEST_STEP_MS,
    DemoOptions,
    act_scenario,
    controller_name,
    run_act_fake,
    run_demo,
)
from heirline.adapters.fake import ReplyOutcome, ScriptTimeout
from heirline.adapters.scenario import ScenarioResult, check_result, load_scenario, run_fake

REPLY = "r1"
MESSAGE_ID = "3EB0C0FFEE0001"
LID = "123456789012345@lid"


def _fake_runner(options: DemoOptions) -> list[tuple[str, ScenarioResult]]:
    return [(name, run_act_fake(name, seed=options.seed)) for name in ("incident", "relink")]


def test_the_acts_are_the_example_scenario_files() -> None:
    """The demo re-encodes nothing: its acts are examples/incident.toml and relink.toml."""
    root = Path(__file__).resolve().parent.parent / "examples"
    for name in ("incident", "relink"):
        from_file = load_scenario(root / f"{name}.toml")
        shipped = act_scenario(name)
        assert (shipped.steps, shipped.expectations) == (from_file.steps, from_file.expectations)
        assert shipped.config == from_file.config
        assert run_act_fake(name).outcome_rows() == run_fake(from_file, seed=73).outcome_rows()


def test_text_output_shows_the_timeline_summary_and_verdict() -> None:
    out = io.StringIO()
    code = run_demo(DemoOptions(color=False), out=out, runner=_fake_runner)
    text = out.getvalue()
    assert code == 0
    assert "Web connection closed (status 408). Retry 1/12 in 2.14s…" in text
    assert "health-monitor: restarting (reason: disconnected)" in text
    assert "12:02:27.820" in text  # the 408 on the seed's clock (virtual time is exact)
    assert "12:02:27.934" in text  # the restart 114 ms later
    assert "socket 2 open as lid=123456789012345@lid" in text  # B's socket, the second
    assert "different identity" in text
    assert "every promise held" in text
    assert "\x1b[" not in text  # --no-color


def test_json_output_is_per_act_with_replies_and_ledger() -> None:
    out = io.StringIO()
    assert run_demo(DemoOptions(json=True), out=out, runner=_fake_runner) == 0
    doc = json.loads(out.getvalue())
    assert doc["ok"] is True
    incident, relink = doc["acts"]
    assert (incident["name"], relink["name"]) == ("incident", "relink")
    assert incident["replies"] == [
        {
            "reply_id": REPLY,
            "outcome": "delivered",
            "reason": "acknowledged via successor generation 2",
            "generation": 2,
            "via": "successor",
        }
    ]
    (holder,) = incident["ledger"]["identities"]
    assert holder["message_ids"] == [MESSAGE_ID]
    assert incident["ledger"]["total"] == 1
    assert incident["transmissions"] == 1
    assert relink["replies"][0]["outcome"] == "refused"
    assert relink["ledger"]["identities"] == []
    assert relink["ledger"]["total"] == 0
    assert relink["transmissions"] == 0


def test_a_broken_promise_exits_1() -> None:
    def broken(options: DemoOptions) -> list[tuple[str, ScenarioResult]]:
        act = run_act_fake("relink")
        act.outcomes[REPLY] = ReplyOutcome(REPLY, "delivered", "oops", 0, 2, "successor")
        act.transmitted[REPLY] = 1
        act.checks = check_result(act)
        return [("relink", act)]

    out = io.StringIO()
    assert run_demo(DemoOptions(json=True), out=out, runner=broken) == 1
    doc = json.loads(out.getvalue())
    assert doc["ok"] is False
    assert {c["name"]: c["ok"] for c in doc["acts"][0]["checks"]} == {
        "r1: refused, transmitted 0 time(s)": False,
        "no message id received by two identities": True,
        "refused/failed replies never reached the channel": True,
    }
    (refused,) = (c for c in doc["acts"][0]["checks"] if c["name"].startswith("r1"))
    assert refused["detail"] == (
        "outcome delivered; reason 'oops' lacks 'different'; transmitted 1 time(s)"
    )
    text = io.StringIO()
    assert run_demo(DemoOptions(color=False), out=text, runner=broken) == 1
    assert "BROKEN" in text.getvalue()


def test_incident_check_fails_when_the_ledger_holds_it_under_another_identity() -> None:
    act = run_act_fake("incident")
    assert all(c.ok for c in act.checks)
    assert act.ledger.received(LID) == (MESSAGE_ID,)
    wrong = Ledger()
    wrong.record(Identity(lid="999@lid"), "default", MESSAGE_ID, "c@g.us", "text", "")
    act.ledger = wrong
    checks = {c.name: c.ok for c in check_result(act)}
    assert checks[f"r1: ledger shows it only under {LID}"] is False
    act.transmitted[REPLY] = 2  # a second copy went out: the promise of exactly once is broken
    checks = {c.name: c.ok for c in check_result(act)}
    assert checks["r1: delivered via successor (generation 2), transmitted 1 time(s)"] is False


def test_controller_names() -> None:
    assert [controller_name(g) for g in (None, 1, 2, 27)] == ["", "g1", "g2", "g27"]


def test_an_act_that_does_not_finish_exits_1_with_a_message_not_a_traceback() -> None:
    """``--speed 1e9`` used to end in a ScriptTimeout traceback; any unfinished act is a 1 now."""

    def too_slow(options: DemoOptions) -> list[tuple[str, ScenarioResult]]:
        raise ScriptTimeout("not reached within 60000 ms: controller A open")

    out, err = io.StringIO(), io.StringIO()
    assert run_demo(DemoOptions(speed=54), out=out, err=err, runner=too_slow) == 1
    assert "Promises" not in out.getvalue()  # the header streamed, no summary of promises
    assert "an act did not finish (not reached within 60000 ms: controller A open)" in (
        err.getvalue()
    )
    assert "--speed 54" in err.getvalue()


def test_the_speed_ceiling_is_the_shortest_step_over_one_loop_tick() -> None:
    assert SHORTEST_STEP_MS == 54  # ready at +60 ms, health check at +114 ms after the 408
    assert MAX_SPEED == SHORTEST_STEP_MS / LOOP_RESOLUTION_MS
