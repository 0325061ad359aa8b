"""The demo module: acts, promise checks, rendering and exit codes (no CLI parsing here)."""

from __future__ import annotations

import io
import json

from heirline.adapters.aio import LOOP_RESOLUTION_MS
from heirline.adapters.channel import Ledger
from heirline.adapters.demo import (
    MAX_SPEED,
    MESSAGE_ID,
    REPLY,
    SHORTEST_STEP_MS,
    ActResult,
    DemoOptions,
    check_act,
    controller_name,
    run_act_fake,
    run_demo,
)
from heirline.adapters.fake import ReplyOutcome, ScriptTimeout


def _fake_runner(options: DemoOptions) -> list[ActResult]:
    return [run_act_fake("incident", seed=options.seed), run_act_fake("relink", seed=options.seed)]


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
    assert incident["replies"] == [
        {
            "reply_id": REPLY,
            "outcome": "delivered",
            "reason": "acknowledged via successor generation 2",
            "generation": 2,
            "via": "successor",
        }
    ]
    assert incident["ledger"][0]["message_ids"] == [MESSAGE_ID]
    assert relink["replies"][0]["outcome"] == "refused"
    assert relink["ledger"] == []
    assert relink["transmissions"] == 0


def test_a_broken_promise_exits_1() -> None:
    def broken(options: DemoOptions) -> list[ActResult]:
        act = run_act_fake("relink")
        act.outcomes[REPLY] = ReplyOutcome(REPLY, "delivered", "oops", 0, 2, "successor")
        act.transmissions = 1
        act.checks = check_act("relink", act)
        return [act]

    out = io.StringIO()
    assert run_demo(DemoOptions(json=True), out=out, runner=broken) == 1
    doc = json.loads(out.getvalue())
    assert doc["ok"] is False
    assert {c["name"]: c["ok"] for c in doc["acts"][0]["checks"]} == {
        "reply refused": False,
        "B never transmitted": False,
        "ledger: nothing reached the other identity": True,
    }
    text = io.StringIO()
    assert run_demo(DemoOptions(color=False), out=text, runner=broken) == 1
    assert "BROKEN" in text.getvalue()


def test_incident_check_fails_when_the_ledger_holds_it_under_another_identity() -> None:
    act = run_act_fake("incident")
    assert all(c.ok for c in act.checks)
    wrong = Ledger()
    from heirline.adapters.channel import Identity

    wrong.record(Identity(lid="999@lid"), "default", MESSAGE_ID, "c@g.us", "text", "")
    act.ledger = wrong
    checks = {c.name: c.ok for c in check_act("incident", act)}
    assert checks["ledger: exactly once, under the same identity"] is False


def test_controller_names() -> None:
    assert [controller_name(g) for g in (None, 1, 2, 26, 27)] == ["", "A", "B", "Z", "#27"]


def test_an_act_that_does_not_finish_exits_1_with_a_message_not_a_traceback() -> None:
    """``--speed 1e9`` used to end in a ScriptTimeout traceback; any unfinished act is a 1 now."""

    def too_slow(options: DemoOptions) -> list[ActResult]:
        raise ScriptTimeout("not reached within 60000 ms: controller A open")

    out, err = io.StringIO(), io.StringIO()
    assert run_demo(DemoOptions(speed=54), out=out, err=err, runner=too_slow) == 1
    assert out.getvalue() == ""
    assert "an act did not finish (not reached within 60000 ms: controller A open)" in (
        err.getvalue()
    )
    assert "--speed 54" in err.getvalue()


def test_the_speed_ceiling_is_the_shortest_step_over_one_loop_tick() -> None:
    assert SHORTEST_STEP_MS == 54  # ready at +60 ms, health check at +114 ms after the 408
    assert MAX_SPEED == SHORTEST_STEP_MS / LOOP_RESOLUTION_MS
