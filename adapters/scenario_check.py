"""Checking a scenario's run: each expectation, and the safety invariants every run keeps.

A :class:`ScenarioResult` is what a run produced (outcomes, timeline,
transmissions, the receiver's ledger); :func:`check_result` judges it against
the scenario's ``[expect.<reply>]`` tables and against what heirline promises
whatever the scenario: no message id received by two identities, and no
refused or failed reply ever reached the channel.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from heirline.adapters.gateway import ReplyOutcome, TimelineEntry
from heirline.adapters.ledger import Ledger
from heirline.adapters.scenario_doc import clock_text
from heirline.adapters.scenario_read import Scenario

__all__ = ["Check", "ScenarioResult", "Sent", "check_result"]


@dataclass(frozen=True, slots=True)
class Check:
    """One expectation or invariant, whether it held, and what was seen if not."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Sent:
    """One transmission, in order: when, which reply, through which socket, as whom."""

    at_ms: int
    reply_id: str
    account: str
    generation: int
    attempt: int
    message_id: str
    transmission: int
    #: The identity the socket opened as (pn, lid, e164); all ``None`` if it never opened.
    identity: tuple[str | None, str | None, str | None]

    def to_json(self) -> dict[str, Any]:
        pn, lid, e164 = self.identity
        return {
            "at_ms": self.at_ms,
            "reply_id": self.reply_id,
            "account": self.account,
            "generation": self.generation,
            "attempt": self.attempt,
            "message_id": self.message_id,
            "transmission": self.transmission,
            "identity": {"pn": pn, "lid": lid, "e164": e164},
        }


def entry_json(entry: TimelineEntry, clock_base_ms: int) -> dict[str, Any]:
    """One timeline entry as JSON: engine time (ms and clock), who, what."""
    return {
        "at_ms": entry.at_ms,
        "clock": clock_text((clock_base_ms + entry.at_ms) % 86_400_000),
        "level": entry.level,
        "code": entry.code,
        "account": entry.account,
        "generation": entry.generation,
        "message": entry.message,
        "fields": dict(entry.fields),
    }


@dataclass(slots=True)
class ScenarioResult:
    """What one run of a scenario produced; ``transmitted`` counts each reply's transmissions."""

    scenario: Scenario
    runtime: str
    outcomes: dict[str, ReplyOutcome]
    timeline: list[TimelineEntry]
    transmissions: int
    ledger: Ledger
    error: str | None = None
    checks: list[Check] = field(default_factory=list)
    wall_s: float = 0.0
    transmitted: Counter[str] = field(default_factory=Counter)
    sent: list[Sent] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)

    def outcome_rows(self) -> list[tuple[str, str, str | None, int | None, str]]:
        """(reply, outcome, via, generation, reason) per reply, sorted: compare runtimes with it."""
        return sorted(
            (o.reply_id, o.outcome, o.via, o.generation, o.reason) for o in self.outcomes.values()
        )

    def to_json(self) -> dict[str, Any]:
        summary = self.ledger.summary()
        return {
            "scenario": self.scenario.name,
            "file": self.scenario.path,
            "runtime": self.runtime,
            "ok": self.ok,
            "error": self.error,
            "replies": [
                {"reply_id": r, "outcome": o, "via": v, "generation": g, "reason": why}
                for r, o, v, g, why in self.outcome_rows()
            ],
            "transmissions": self.transmissions,
            "sent": [s.to_json() for s in self.sent],
            "timeline": [entry_json(e, self.scenario.clock_base_ms) for e in self.timeline],
            "ledger": {
                "total": summary.total,
                "duplicates_suppressed": summary.duplicates_suppressed,
                "cross_identity": list(summary.cross_identity),
                "identities": [
                    {
                        "identity": {
                            "pn": i.identity.pn,
                            "lid": i.identity.lid,
                            "e164": i.identity.e164,
                        },
                        "message_ids": list(i.message_ids),
                        "duplicates_suppressed": i.duplicates_suppressed,
                    }
                    for i in summary.identities
                ],
            },
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "wall_s": round(self.wall_s, 3),
        }


def check_result(result: ScenarioResult) -> list[Check]:
    """Each expectation, plus the safety invariants every scenario must keep."""
    sc = result.scenario
    ids = sc.message_ids
    checks: list[Check] = []
    for exp in sc.expectations:
        got = result.outcomes.get(exp.reply)
        name = f"{exp.reply}: {exp.outcome}" + (f" via {exp.via}" if exp.via else "")
        if exp.generation is not None:
            name += f" (generation {exp.generation})"
        if exp.transmissions is not None:
            name += f", transmitted {exp.transmissions} time(s)"
        problems: list[str] = []
        if got is None:
            problems.append("never ended")
        else:
            if got.outcome != exp.outcome:
                problems.append(f"outcome {got.outcome}")
            if exp.via is not None and got.via != exp.via:
                problems.append(f"via {got.via}")
            if exp.generation is not None and got.generation != exp.generation:
                problems.append(f"generation {got.generation}")
            if exp.reason is not None and exp.reason not in got.reason:
                problems.append(f"reason {got.reason!r} lacks {exp.reason!r}")
        sent = result.transmitted[exp.reply]
        if exp.transmissions is not None and sent != exp.transmissions:
            problems.append(f"transmitted {sent} time(s)")
        checks.append(Check(name, not problems, "; ".join(problems)))
        if exp.received_by is not None:
            holders = result.ledger.holders(ids[exp.reply])
            ok = len(holders) == 1 and holders[0].has_form(exp.received_by)
            checks.append(
                Check(
                    f"{exp.reply}: ledger shows it only under {exp.received_by}",
                    ok,
                    "" if ok else f"holders: {[str(h) for h in holders] or 'nobody'}",
                )
            )
    summary = result.ledger.summary()
    checks.append(
        Check(
            "no message id received by two identities",
            not summary.cross_identity,
            ", ".join(summary.cross_identity),
        )
    )
    not_sent = [
        r
        for r, o in result.outcomes.items()
        if o.outcome in ("refused", "failed") and result.ledger.holders(ids.get(r, r))
    ]
    checks.append(
        Check("refused/failed replies never reached the channel", not not_sent, ", ".join(not_sent))
    )
    return checks
