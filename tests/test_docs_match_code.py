"""The tables and copies in docs/ that restate the code say what the code does.

Each test reads one table (or a copied diagram, or an example) out of a doc
page and compares it with the code it describes, so the page cannot drift
silently when the code changes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from heirline.core.controller import AttemptCounter, Controller
from heirline.core.effects import Log
from heirline.core.health import HealthReason
from heirline.core.lifecycle import LIFECYCLE, LifecycleConfig
from heirline.core.policy import DEFAULT_STATUS_POLICY, Status
from heirline.core.registry import ChangeKind, Registry, RegistryChange

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CORE = ROOT / "core"


def read(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def rows(text: str, header: str) -> list[list[str]]:
    """The body rows of the markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    out: list[list[str]] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        out.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return out


def ticked(cell: str) -> list[str]:
    """The names written in backticks in a table cell."""
    return re.findall(r"`([^`]+)`", cell)


# --------------------------------------------------------------- lifecycle.md


def test_the_lifecycle_diagram_copy_draws_exactly_the_declared_edges() -> None:
    (block,) = re.findall(r"```mermaid\n(.*?)```", read("lifecycle.md"), flags=re.S)
    drawn = set(re.findall(r"^  (\w+) --> (\w+): (\w+)$", block, flags=re.M))
    declared = {(t.source.value, t.dest.value, t.trigger.value) for t in LIFECYCLE.transitions}
    assert drawn == declared
    assert "  [*] --> idle" in block.splitlines()


def test_the_status_table_names_every_status_and_its_decision() -> None:
    table = rows(read("lifecycle.md"), "| status | `Status` |")
    named = {int(r[0]): r for r in table if r[0].isdigit()}
    assert set(named) == {int(s) for s in Status}
    for status in Status:
        number, name, _baileys, decision, _why = named[int(status)]
        assert ticked(name) == [status.name], number
        action = DEFAULT_STATUS_POLICY.decide(status).action
        assert decision.startswith(action.value), (number, decision, action)
    rest = {r[0]: r[3] for r in table if not r[0].isdigit()}
    assert rest == {"none": "retry", "other": "retry"}
    assert DEFAULT_STATUS_POLICY.decide(None).action.value == "retry"
    assert DEFAULT_STATUS_POLICY.decide(999).action.value == "retry"


def _controller_logs() -> list[Log]:
    """Every kind of record a controller writes (at the default level, DEBUG)."""
    out: list[Log] = []
    counter = AttemptCounter()

    def run(ctl: Controller, *steps: str) -> None:
        for step in steps:
            now = ctl.last_change_ms + 100_000  # past healthy_after_ms: retries reset
            if step == "start":
                effects = ctl.start(now)
            elif step == "opened":
                effects = ctl.opened(now)
            elif step == "retry_due":
                effects = ctl.retry_due(now)
            elif step == "watchdog":
                effects = ctl.watchdog(now, 300_000)
            elif step == "stop":
                effects = ctl.stop("owner", now)
            else:
                effects = ctl.closed(int(step), now, 0.5)
            out.extend(e for e in effects if isinstance(e, Log))

    config = LifecycleConfig()
    run(Controller("a", 1, config, counter), "start", "opened", "408", "retry_due", "opened")
    run(Controller("a", 2, config, counter), "start", "opened", "515", "opened", "watchdog", "401")
    run(Controller("a", 3, config, counter), "start", "opened", "440")
    run(Controller("a", 4, config, counter), "start", "opened", "403")
    run(Controller("a", 5, config, counter), "start", "stop")
    exhausted = Controller("a", 6, LifecycleConfig(), counter)
    run(exhausted, "start")
    exhausted.retries = exhausted.config.backoff.max_attempts
    run(exhausted, "408")
    return out


def test_the_lifecycle_log_table_lists_every_record_with_its_level_and_fields() -> None:
    documented: dict[str, tuple[str, set[str]]] = {}
    for code_cell, level, fields in rows(read("lifecycle.md"), "| code | level | fields |"):
        codes = [c if c.startswith("lifecycle") else "lifecycle" + c for c in ticked(code_cell)]
        for code in codes:
            documented[code] = (level, set(ticked(fields)))
    written = {log.code: (log.level, set(log.fields)) for log in _controller_logs()}
    assert written == documented


# --------------------------------------------------------------------- core.md

_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warning", "ERROR": "error"}
# A record built in core/: Log("<level>", "<code>" ... or self._log(_<LEVEL>, "<code>" ...
# or self._ignored(_<LEVEL>, "<code>" ...; an f-string code is expanded by hand below.
_SITE = re.compile(
    r'(?:\bLog\(\s*"(?P<label>\w+)"|\b_(?:log|ignored)\(\s*_(?P<const>[A-Z]+))'
    r',\s*(?P<f>f?)"(?P<code>[\w.{}]+)"'
)


def _codes_in_source() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(CORE.glob("*.py")):
        for m in _SITE.finditer(path.read_text(encoding="utf-8")):
            level = m["label"] or _LEVELS[m["const"]]
            if m["f"]:
                assert m["code"] == "lifecycle.{dest.value}", (path.name, m["code"])
                for dest in ("exhausted", "logged_out", "replaced", "forbidden"):
                    found[f"lifecycle.{dest}"] = level
            else:
                found[m["code"]] = level
    return found


def test_the_source_scan_finds_the_records_it_should() -> None:
    found = _codes_in_source()
    # A sample from each of the four ways a record is built, so the scan cannot go blind.
    assert found["health_restart"] == "warning"  # Log("warning", ...) in sweep.py
    assert found["late_close"] == "debug"  # self._log(_DEBUG, ...) in sockets.py
    assert found["late_ack"] == "warning"  # self._ignored(_WARNING, ...) in book.py
    assert found["lifecycle.exhausted"] == "error"  # f"lifecycle.{dest.value}"
    assert len(found) >= 25


def test_every_log_record_the_core_builds_is_documented_with_its_level() -> None:
    found = _codes_in_source()
    documented = {
        ticked(code)[0]: level
        for code, level, _ in rows(read("core.md"), "| code | level | says |")
    }
    lifecycle = {log.code: log.level for log in _controller_logs()}
    assert {c: lvl for c, lvl in found.items() if c.startswith("lifecycle.")} == lifecycle
    assert {c: lvl for c, lvl in found.items() if not c.startswith("lifecycle.")} == documented


# ------------------------------------------------------------------- health.md


def test_the_registry_example_does_what_its_comments_say() -> None:
    (block,) = re.findall(r"```python\n(.*?)```", read("health.md"), flags=re.S)
    namespace: dict[str, object] = {"Registry": Registry}
    results = []
    for line in block.splitlines():
        code, _, comment = line.partition("  # ")
        target, eq, expr = code.partition(" = ")
        value = eval(expr if eq else code, namespace)
        if eq:
            namespace[target] = value
        results.append((value, comment))
    checked = 0
    for value, comment in results:
        if comment.startswith(("REGISTERED", "IGNORED")):
            kind, _, rest = comment.partition(", ")
            assert isinstance(value, RegistryChange)
            assert value.kind is ChangeKind[kind], comment
            if rest.startswith("predecessor="):
                assert str(value.predecessor) == rest.removeprefix("predecessor="), comment
            else:
                assert rest == f'reason "{value.reason}"', comment
            checked += 1
        elif comment:
            assert value == int(comment.split()[0]), comment
            checked += 1
    assert checked == 6


@pytest.mark.parametrize("reason", list(HealthReason))
def test_the_reasons_table_names_every_health_reason(reason: HealthReason) -> None:
    decisions = " ".join(r[1] for r in rows(read("health.md"), "| snapshot | decision |"))
    assert f"`{reason.value}`" in decisions


def test_the_reasons_table_uses_the_snapshot_field_names() -> None:
    snapshots = " ".join(r[0] for r in rows(read("health.md"), "| snapshot | decision |"))
    assert "`retries >= gave_up_attempts`" in snapshots
    assert "`max_attempts` is `None`" in snapshots
    assert "attempt " not in snapshots  # the field was renamed to retries
