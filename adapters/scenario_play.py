"""Scripting a scenario: its steps become one runtime-neutral script.

:func:`scenario_script` turns a :class:`~heirline.adapters.scenario_read.Scenario`
into the generator both runtimes run (the fake one on virtual time, the asyncio
one on loopback sockets): each step is an engine event fed to the gateway, a
channel action on the channel, or a wait.
"""

from __future__ import annotations

from heirline.adapters.gateway import GatewayBase
from heirline.adapters.scenario_read import Scenario, Step
from heirline.adapters.script import At, ChannelControl, Script, Until
from heirline.core.events import (
    HealthCheck,
    MappingLearned,
    ReplyCaptured,
    ReplyReady,
    SocketClosed,
    Start,
    Stop,
    TransmitAcked,
)

__all__ = ["scenario_script"]


def scenario_script(sc: Scenario, gw: GatewayBase, channel: ChannelControl) -> Script:
    """The scenario as a runtime-neutral script (for the fake or the asyncio gateway)."""
    for acct in sc.accounts:
        channel.add_account(acct.name, acct.pn, acct.lid, acct.e164)
        gw.auth_dir[acct.name] = list(acct.auth_dir)
        if acct.auth is not None:  # a Baileys auth dir: read into the engine at the first boot
            gw.add_auth_dir(acct.name, acct.auth)
    for lat in sc.latency:
        if lat.boot_ms is not None:
            gw.boot_ms_of[(lat.account, lat.generation)] = lat.boot_ms
    for pn, lid in sc.mapping:
        gw.feed(MappingLearned(pn=pn, lid=lid))
    captured: dict[str, str] = {}  # reply -> account
    last = gw.now_ms()
    for step in sc.steps:
        if step.at_ms is not None:
            yield At(step.at_ms, _describe(step))
        elif step.after_ms is not None:
            yield At(last + step.after_ms, _describe(step))
        if step.note:
            gw.note(step.note, account=step.args.get("account"))
        timeout = step.timeout_ms or sc.timeout_ms
        if step.action == "wait":
            yield _wait(gw, step, timeout)
        else:
            _act(step, gw, channel, captured)
        last = gw.now_ms()
    yield Until(
        lambda: all(r in gw.outcomes for r in captured),
        sc.timeout_ms,
        f"every captured reply ends ({', '.join(captured)})",
    )


def _describe(step: Step) -> str:
    """What a timed step does, for a progress line: "health check", "close (status 408)"."""
    what = step.note or step.action.replace("_", " ")
    if step.note is None and "reply" in step.args:
        what += f" {step.args['reply']}"
    if step.note is None and step.args.get("status") is not None:
        what += f" (status {step.args['status']})"
    return what


def _wait(gw: GatewayBase, step: Step, timeout: int) -> Until:
    a = step.args
    if "reply" in a:
        reply = str(a["reply"])
        return Until(lambda: reply in gw.outcomes, timeout, f"reply {reply} ends")
    account = str(a["account"])

    def gen() -> int | None:
        g = a.get("generation")
        return int(g) if g is not None else gw.engine.current(account)

    def state() -> str | None:
        g = gen()
        return None if g is None else gw.engine.controller_state(account, g)

    which = f" generation {a['generation']}" if "generation" in a else ""
    if "state" in a:
        want = str(a["state"])
        return Until(lambda: state() == want, timeout, f"{account}{which} controller {want}")
    avoid = str(a["not_state"])
    return Until(
        lambda: state() not in (avoid, None), timeout, f"{account}{which} controller not {avoid}"
    )


def _current(gw: GatewayBase, account: str, explicit: object) -> int:
    if explicit is not None:
        return int(str(explicit))
    generation = gw.engine.current(account)
    return 0 if generation is None else generation  # 0: the engine rejects it, reported


def _act(step: Step, gw: GatewayBase, channel: ChannelControl, captured: dict[str, str]) -> None:
    a = step.args
    action = step.action
    account = a.get("account")
    if action == "start":
        gw.feed(Start(account=str(account)))
    elif action == "stop":
        generation = _current(gw, str(account), a.get("generation"))
        gw.feed(Stop(account=str(account), generation=generation, reason=a.get("reason", "owner")))
    elif action == "close":
        gw.note(f"channel closes with status {a.get('status')}", account=account)
        channel.close_account(str(account), a.get("status"))
    elif action == "drop":
        gw.note("channel drops the connection (no status)", account=account)
        channel.close_account(str(account), None)
    elif action == "logout":
        gw.note("channel logs the account out", account=account)
        channel.logout(str(account), a.get("status", 401))
    elif action in ("relink", "login_as"):
        pn, lid, e164 = a.get("pn"), a.get("lid"), a.get("e164")
        if "auth_dir" in a:
            gw.auth_dir[str(account)] = [(p[0], p[1]) for p in a["auth_dir"]]
        forms = " / ".join(x for x in (pn, lid, e164) if x) or "(unauthenticated)"
        if action == "relink":
            gw.note(f"account relinked to {forms}", account=account)
            channel.relink(str(account), pn, lid, e164, a.get("status", 401))
        else:
            gw.note(f"next login shows {forms}", account=account)
            channel.add_account(str(account), pn, lid, e164)
    elif action == "auth_dir":
        gw.auth_dir[str(account)] = [(p[0], p[1]) for p in a["pairs"]]
    elif action == "capture":
        reply = str(a["reply"])
        captured[reply] = str(account)
        deadline = a.get("deadline_ms")
        gw.feed(
            ReplyCaptured(
                reply_id=reply,
                account=str(account),
                generation=_current(gw, str(account), a.get("generation")),
                chat=a.get("chat", "120363000000000000@g.us"),
                kind=a.get("kind", "text"),
                deadline_ms=None if deadline is None else gw.now_ms() + int(deadline),
                message_id=a.get("message_id"),
            )
        )
    elif action == "ready":
        gw.feed(ReplyReady(reply_id=str(a["reply"]), payload=a.get("payload", "")))
    elif action == "health_check":
        gw.feed(HealthCheck())
    elif action == "learn_mapping":
        gw.feed(MappingLearned(pn=str(a["pn"]), lid=str(a["lid"])))
    elif action in ("late_close", "late_ack"):
        _late(step, gw, captured)
    else:  # pragma: no cover - parse_scenario only lets known actions through
        raise ValueError(f"unknown action {action!r}")


def _late(step: Step, gw: GatewayBase, captured: dict[str, str]) -> None:
    """A fact about an older socket, fed to the engine as it would arrive: late."""
    a = step.args
    generation = int(a["generation"])
    if step.action == "late_close":
        account = str(a["account"])
        attempt = a.get("attempt") or gw.last_attempt.get((account, generation), 0)
        status = a.get("status")
        said = "no status" if status is None else f"status {status}"
        gw.note(f"late close ({said}) of g{generation} socket {attempt} arrives", account=account)
        gw.feed(
            SocketClosed(account=account, generation=generation, attempt=attempt, status=status)
        )
        return
    reply = str(a["reply"])
    account = captured[reply]
    ours = [t for t in gw.transmissions if t.reply_id == reply]
    sent = [t.attempt for t in ours if t.generation == generation]
    default = sent[-1] if sent else gw.last_attempt.get((account, generation), 0)
    attempt = a.get("attempt") or default
    gw.note(f"late ack of {reply} from g{generation} socket {attempt} arrives", account=account)
    gw.feed(TransmitAcked(reply_id=reply, generation=generation, attempt=attempt))
