"""Scenario files: every example holds on the fake runtime, the incident and the
relink hold on loopback sockets with identical outcomes, and malformed files get
an error naming the file, the key or line, and what is wrong (never a traceback)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heirline.adapters.scenario import (
    MAX_FILE_BYTES,
    MAX_SPAN_MS,
    Scenario,
    ScenarioError,
    ScenarioResult,
    add_run_parser,
    load_scenario,
    parse_scenario,
    run_command,
    run_fake,
    run_real,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALL = sorted(p.name for p in EXAMPLES.glob("*.toml"))

VALID = """
name = "tiny"
[[accounts]]
name = "a"
pn = "4915123456789@s.whatsapp.net"
[[steps]]
at = 0
action = "start"
account = "a"
[[steps]]
action = "wait"
account = "a"
state = "open"
[[steps]]
after = 10
action = "capture"
reply = "r1"
account = "a"
[[steps]]
after = 1
action = "ready"
reply = "r1"
[expect.r1]
outcome = "delivered"
via = "origin"
"""


def test_all_seven_examples_are_shipped() -> None:
    assert set(ALL) >= {
        "incident.toml",
        "relink.toml",
        "pn-lid.toml",
        "restart-515.toml",
        "logged-out-401.toml",
        "replaced-440.toml",
        "shutdown-mid-send.toml",
    }


@pytest.mark.parametrize("name", ALL)
def test_every_example_holds_on_the_fake_runtime(name: str) -> None:
    result = run_fake(load_scenario(EXAMPLES / name))
    assert result.error is None
    assert result.ok, [c for c in result.checks if not c.ok]
    assert set(result.outcomes) == {e.reply for e in result.scenario.expectations}


@pytest.mark.parametrize("name", ALL)
def test_fake_runs_are_deterministic(name: str) -> None:
    sc = load_scenario(EXAMPLES / name)
    assert run_fake(sc).outcome_rows() == run_fake(sc).outcome_rows()


def _received(result: ScenarioResult) -> list[tuple[str, tuple[str, ...]]]:
    """(identity, message ids it received, sorted) per identity, sorted."""
    return sorted(
        (str(i.identity), tuple(sorted(i.message_ids))) for i in result.ledger.summary().identities
    )


#: Examples whose number of transmissions does not depend on real-time races. In
#: restart-515 the reply is made ready 1 ms after the 515: on real sockets the close
#: may not have reached the client yet, so a first copy goes into the closing socket
#: and is resent after the reconnect (the receiver deduplicates it).
RACE_FREE = frozenset(ALL) - {"restart-515.toml"}


@pytest.mark.parametrize("name", ALL)
def test_every_example_gives_identical_outcomes_on_real_sockets(name: str) -> None:
    sc = load_scenario(EXAMPLES / name)
    fake = run_fake(sc)
    real = asyncio.run(asyncio.wait_for(run_real(sc), 60))
    assert real.ok, [c for c in real.checks if not c.ok]
    assert real.outcome_rows() == fake.outcome_rows()
    assert _received(real) == _received(fake)
    if name in RACE_FREE:
        assert real.transmissions == fake.transmissions


def test_relink_never_transmits() -> None:
    result = run_fake(load_scenario(EXAMPLES / "relink.toml"))
    assert result.transmissions == 0
    assert result.ledger.total == 0


def test_shutdown_mid_send_is_deduplicated_by_the_receiver() -> None:
    result = run_fake(load_scenario(EXAMPLES / "shutdown-mid-send.toml"))
    summary = result.ledger.summary()
    assert summary.duplicates_suppressed == 1
    assert summary.cross_identity == ()


def _args(path: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_run_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["run", str(path), *extra])


def test_run_command_json_and_exit_code(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run_command(_args(EXAMPLES / "incident.toml", "--json"), out=out, err=err)
    assert code == 0
    doc = json.loads(out.getvalue())
    assert doc["ok"] is True
    assert doc["replies"][0]["outcome"] == "delivered"
    assert doc["ledger"]["cross_identity"] == []


def test_run_command_text_report() -> None:
    out = io.StringIO()
    code = run_command(_args(EXAMPLES / "relink.toml", "--no-color"), out=out)
    assert code == 0
    assert "refused" in out.getvalue()
    assert "every expectation held" in out.getvalue()


def test_an_expectation_that_does_not_hold_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "wrong.toml"
    path.write_text(VALID.replace('outcome = "delivered"', 'outcome = "refused"'))
    out = io.StringIO()
    assert run_command(_args(path, "--no-color"), out=out) == 1
    assert "FAILED" in out.getvalue()


def test_the_valid_template_parses_and_holds() -> None:
    assert run_fake(parse_scenario(VALID, "tiny.toml")).ok


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ('name = "x"\n[[accounts]\nname = "a"\n', "line 2", "invalid TOML"),
        (VALID.replace('action = "ready"', 'action = "explode"'), "steps[3].action", "explode"),
        (
            VALID.replace('reply = "r1"\naccount = "a"', 'account = "a"'),
            "steps[2].reply",
            "missing",
        ),
        (VALID.replace("after = 10", 'after = "soon"'), "steps[2].after", "HH:MM:SS.mmm"),
        (
            VALID.replace(
                'at = 0\naction = "start"\naccount = "a"', 'at = 0\naction = "start"\naccount = 7'
            ),
            "steps[0].account",
            "expected str, got int 7",
        ),
        (
            VALID.replace(
                'at = 0\naction = "start"\naccount = "a"',
                'at = 0\naction = "start"\naccount = "zed"',
            ),
            "steps[0].account",
            "unknown account 'zed'",
        ),
        (VALID.replace('outcome = "delivered"', 'outcome = "maybe"'), "expect.r1.outcome", "maybe"),
        (VALID + '[expect.r9]\noutcome = "failed"\n', "expect.r9", "never captured"),
        (
            VALID + '[engine.health]\nretry_grace_ms = "off"\n',
            "engine.health.retry_grace_ms",
            "expected int, got str 'off'",
        ),
        (
            VALID + "[engine]\nbogus = 1\n",
            "engine.bogus",
            "unknown field (known: reply_deadline_ms",
        ),
        (VALID + "[engine]\nmax_transmissions = 0\n", "engine", "max_transmissions"),
        ("frobnicate = 1\n" + VALID, "frobnicate", "unknown field (known: name, description"),
    ],
    ids=[
        "toml-syntax",
        "unknown-action",
        "missing-key",
        "bad-time",
        "wrong-type",
        "unknown-account",
        "bad-outcome",
        "expect-unknown-reply",
        "engine-wrong-type",
        "engine-unknown-key",
        "engine-invalid-value",
        "unknown-top-key",
    ],
)
def test_malformed_scenarios_name_the_file_and_the_key(
    tmp_path: Path, text: str, where: str, what: str
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert str(path) in message
    assert where in message
    assert what in message
    err = io.StringIO()
    assert run_command(_args(path), out=io.StringIO(), err=err) == 2
    assert str(path) in err.getvalue()
    assert where in err.getvalue()
    assert "Traceback" not in err.getvalue()


def test_a_missing_file_is_a_clean_error(tmp_path: Path) -> None:
    err = io.StringIO()
    assert run_command(_args(tmp_path / "nope.toml"), out=io.StringIO(), err=err) == 2
    assert "nope.toml" in err.getvalue()
    assert "cannot read" in err.getvalue()


# --- hostile files: one validation path at load time, exit 2, naming the file and key ----

_ACCOUNT = 'name = "a"\npn = "4915123456789@s.whatsapp.net"'


def _account(extra: str) -> str:
    return VALID.replace(_ACCOUNT, f"{_ACCOUNT}\n{extra}")


_STEP0 = 'at = 0\naction = "start"\naccount = "a"'

HOSTILE = [
    ("x = " + "[" * 3000 + "]" * 3000 + "\n" + VALID, "TOML syntax", "nested too deeply"),
    ("x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n" + VALID, "TOML syntax", "nested too deeply"),
    ("seed = " + "7" * 5000 + "\n" + VALID, "TOML syntax", "value has 5000 digits"),
    ("seed = " + "7" * 30 + "\n" + VALID, "seed", "is outside +-9007199254740991 (2**53-1)"),
    (
        VALID + "[engine]\nreply_deadline_ms = 9007199254740992\n",
        "engine.reply_deadline_ms",
        "2**53",
    ),
    ("speed = nan\n" + VALID, "speed", "expected a finite number, got nan"),
    ("speed = inf\n" + VALID, "speed", "expected a finite number, got inf"),
    ("speed = -inf\n" + VALID, "speed", "expected a finite number, got -inf"),
    ("speed = 5000\n" + VALID, "speed", "between 1 (real time) and 1000, got 5000"),
    ("speed = 0.5\n" + VALID, "speed", "between 1 (real time) and 1000, got 0.5"),
    (VALID + "[engine.backoff]\nfactor = nan\n", "engine.backoff.factor", "finite"),
    (
        VALID.replace(_STEP0, 'at = "25:99:99.999"\naction = "start"\naccount = "a"'),
        "steps[0].at",
        "'25:99:99.999' is not a time of day (HH 00-23, MM and SS 00-59)",
    ),
    ('clock_base = "24:00:00"\n' + VALID, "clock_base", "is not a time of day"),
    (_account('lid = "not a jid"'), "accounts[0].lid", "not a valid self identity"),
    (
        VALID.replace(_ACCOUNT, 'name = "a"\npn = "123456789012345@lid"'),
        "accounts[0].pn",
        "is a LID, but was given as the phone-number JID",
    ),
    (_account('e164 = "+15550001111"'), "accounts[0].e164", "does not match"),
    (_account('e164 = "12"'), "accounts[0].e164", "must be '+' and 7-15 ASCII digits"),
    (_account('auth_dir = [["x", "1@lid"]]'), "accounts[0].auth_dir[0]", "pn user 'x'"),
    ('mapping = [["1", "2@s.whatsapp.net"]]\n' + VALID, "mapping[0]", "not a LID JID"),
    (
        'mapping = [["1", "2"], ["1", "3"]]\n' + VALID,
        "mapping",
        "the pairs contradict each other",
    ),
    (
        VALID + '[[steps]]\naction = "relink"\naccount = "a"\npn = "4915@g.us"\n',
        "steps[4].pn",
        "never a self identity",
    ),
    (
        VALID + '[[steps]]\naction = "learn_mapping"\npn = "1"\nlid = "x@lid"\n',
        "steps[4]",
        "not a valid PN<->LID pair",
    ),
    ("timeout_ms = 86400001\n" + VALID, "timeout_ms", "must be <= 86400000, got 86400001"),
    ("timeout_ms = " + str(2**52) + "\n" + VALID, "timeout_ms", "must be <= 86400000"),
    (VALID.replace("after = 10", "after = 86400001"), "steps[2].after", "must be <= 86400000"),
    (
        VALID.replace('state = "open"', 'state = "open"\ntimeout_ms = 100000000'),
        "steps[1].timeout_ms",
        "must be <= 86400000",
    ),
    ("boot_ms = 86400001\n" + VALID, "boot_ms", "must be <= 86400000"),
]


@pytest.mark.parametrize(("text", "where", "what"), HOSTILE)
def test_hostile_scenarios_are_file_errors_at_load_time(
    tmp_path: Path, text: str, where: str, what: str
) -> None:
    path = tmp_path / "hostile.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert (caught.value.path, caught.value.where) == (str(path), where)
    assert what in caught.value.message
    err = io.StringIO()
    assert run_command(_args(path), out=io.StringIO(), err=err) == 2
    assert err.getvalue().startswith(f"heirline run: {path}: {where}: ")
    assert "Traceback" not in err.getvalue()


def test_the_largest_spans_and_numbers_still_load() -> None:
    text = "timeout_ms = 86400000\nseed = -9007199254740991\nspeed = 1000\n" + VALID.replace(
        _STEP0, 'at = "23:59:59.999"\naction = "start"\naccount = "a"'
    )
    sc = parse_scenario(text, "edge.toml")
    assert (sc.timeout_ms, sc.seed, sc.speed, sc.steps[0].at_ms) == (
        86_400_000,
        -9_007_199_254_740_991,
        1000.0,
        86_399_999,
    )


@pytest.mark.parametrize(
    ("data", "what"),
    [(b"\xff\xfe not utf-8", "cannot read"), (b"#" * (MAX_FILE_BYTES + 1), "is larger than")],
)
def test_unreadable_or_oversized_files_are_file_errors(
    tmp_path: Path, data: bytes, what: str
) -> None:
    path = tmp_path / "odd.toml"
    path.write_bytes(data)
    err = io.StringIO()
    assert run_command(_args(path), out=io.StringIO(), err=err) == 2
    assert f"heirline run: {path}: file: {what}" in err.getvalue()


def test_a_nul_byte_in_the_path_is_a_file_error() -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario("bad\x00name.toml")


@pytest.mark.parametrize("speed", ["inf", "-inf", "nan", "0", "0.5", "1001", "1e308", "fast"])
def test_run_speed_flag_out_of_range_is_a_usage_error(
    speed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--speed inf`` used to overflow the engine clock of the asyncio runtime mid-run."""
    with pytest.raises(SystemExit) as exc:
        _args(EXAMPLES / "incident.toml", f"--speed={speed}")
    assert exc.value.code == 2
    assert "argument --speed" in capsys.readouterr().err


def test_run_command_checks_a_programmatic_speed_too() -> None:
    args = _args(EXAMPLES / "incident.toml", "--real")
    args.speed = float("inf")
    err = io.StringIO()
    assert run_command(args, out=io.StringIO(), err=err) == 2
    assert "heirline run: --speed must be a finite number, got inf" in err.getvalue()


def test_a_wait_at_the_longest_timeout_ends_on_the_fake_runtime() -> None:
    """A wait that never holds is bounded by a day of virtual time: it fails, it never hangs."""
    text = "timeout_ms = 86400000\n" + VALID.replace(
        '[[steps]]\nafter = 10\naction = "capture"\nreply = "r1"\naccount = "a"\n'
        '[[steps]]\nafter = 1\naction = "ready"\nreply = "r1"\n'
        '[expect.r1]\noutcome = "delivered"\nvia = "origin"\n',
        '[[steps]]\naction = "wait"\naccount = "a"\nstate = "stopped"\n',
    )
    sc = parse_scenario(text, "never.toml")
    started = time.monotonic()
    result = run_fake(sc)
    assert result.error is not None
    assert "not reached within 86400000 ms" in result.error
    assert time.monotonic() - started < 30


# --- fuzz: hostile TOML ----------------------------------------------------------------


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string (lone surrogates: invalid)


def _toml_float(value: float) -> str:
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return repr(value)


_plausible = st.one_of(
    st.integers(0, 10**6).map(str),
    st.floats(0, 10**4).map(_toml_float),
    st.sampled_from(["true", "false"]),
    st.from_regex(r"[0-9]{1,2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,3})?", fullmatch=True).map(_toml_string),
    st.sampled_from(
        [
            "4915123456789@s.whatsapp.net",
            "4915000000001:3@s.whatsapp.net",
            "123456789012345@lid",
            "123456789012345",
            "+4915123456789",
            "1@g.us",
            "x",
            "",
            "a",
            "r1",
            "open",
            "text",
        ]
    ).map(_toml_string),
    st.sampled_from(
        ['["4915123456789", "123456789012345"]', '[["4915123456789", "123456789012345@lid"]]']
    ),
)
_hostile = st.one_of(
    st.integers().map(str),
    st.sampled_from([2**53 - 1, 2**53, -(2**53), 86_400_000, 86_400_001, -1, 2**80]).map(str),
    st.floats().map(_toml_float),
    st.sampled_from(["12:02:25", "1979-05-27", "1979-05-27T07:32:00Z"]),
    st.text(max_size=10).map(_toml_string),
    st.sampled_from(["1" + "0" * 5000, "[" * 2000 + "]" * 2000, "{a = " * 1000 + "1" + "}" * 1000]),
)
_toml_value = st.recursive(
    st.one_of(_plausible, _plausible, _hostile),
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
        | st.dictionaries(st.from_regex(r"[a-z_]{1,6}", fullmatch=True), inner, max_size=3).map(
            lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}"
        )
    ),
    max_leaves=3,
)
# Where a "key = value" line can land, and the keys that belong there (mostly valid ones,
# so that values -- not unknown keys -- are what the loader has to judge).
_TOP_KEYS = ["seed", "clock_base", "boot_ms", "connect_ms", "ack_ms", "speed", "timeout_ms"]
_PLACES: dict[str, list[str]] = {
    "top": [*_TOP_KEYS, "mapping", "description"],
    'name = "a"': ["lid", "e164", "auth_dir"],
    'action = "start"': ["note", "timeout_ms", "after"],
    'state = "open"': ["timeout_ms", "generation", "note"],
    'action = "capture"': ["generation", "chat", "kind", "message_id", "deadline_ms"],
    'outcome = "delivered"': ["generation", "reason", "received_by"],
    "[engine]": ["reply_deadline_ms", "max_transmissions", "health_timer", "remember_ended"],
    "[engine.health]": ["check_interval_ms", "retry_grace_ms", "startup_grace_ms"],
    "[engine.backoff]": ["initial_ms", "factor", "max_ms", "jitter", "max_attempts"],
    'action = "learn_mapping"': ["pn", "lid", "at", "after"],
    'action = "relink"\naccount = "a"': ["pn", "lid", "e164", "status", "auth_dir", "after"],
    'action = "auth_dir"\naccount = "a"': ["pairs", "at"],
    'action = "close"\naccount = "a"': ["status", "at", "note"],
}
_ANY_KEY = st.sampled_from(sorted({k for keys in _PLACES.values() for k in keys} | {"x"}))
_JIDS = st.sampled_from(
    ["4915123456789@s.whatsapp.net", "123456789012345@lid", "+4915123456789", "1@g.us", "x", ""]
)


def _typed(key: str) -> st.SearchStrategy[str]:
    """A value of the kind ``key`` takes (its bounds are what the loader must judge)."""
    if key.endswith("_ms") or key in ("at", "after"):
        return st.integers(-2, 2 * 86_400_000).map(str)
    if key in ("seed", "generation", "status", "max_transmissions", "max_attempts"):
        return st.integers(-2, 10**6).map(str)
    if key in ("factor", "jitter", "speed"):
        return st.floats(-1, 2000).map(_toml_float)
    if key in ("health_timer",):
        return st.sampled_from(["true", "false"])
    if key in ("mapping", "auth_dir", "pairs"):
        pair = st.tuples(_JIDS, _JIDS).map(
            lambda p: f"[{_toml_string(p[0])}, {_toml_string(p[1])}]"
        )
        return st.lists(pair, max_size=2).map(lambda xs: "[" + ", ".join(xs) + "]")
    if key == "clock_base":
        return st.from_regex(r"[0-9]{2}:[0-9]{2}:[0-9]{2}", fullmatch=True).map(_toml_string)
    return _JIDS.map(_toml_string)


@st.composite
def _hostile_scenario(draw: st.DrawFn) -> str:
    lines: dict[str, list[str]] = {place: [] for place in _PLACES}
    for _ in range(draw(st.integers(1, 5))):
        place = draw(st.sampled_from(sorted(_PLACES)))
        rare = draw(st.integers(0, 9)) == 9  # now and then a key from elsewhere
        key = draw(_ANY_KEY if rare else st.sampled_from(_PLACES[place]))
        value = draw(_toml_value if draw(st.integers(0, 2)) == 2 else _typed(key))
        lines[place].append(f"{key} = {value}")
    text = "\n".join(lines["top"]) + "\n" + VALID
    for place, extra in lines.items():
        if not extra or place == "top":
            continue
        body = "\n".join(extra)
        if place.startswith("["):
            text += f"\n{place}\n{body}\n"
        elif place in VALID:
            text = text.replace(place, f"{place}\n{body}", 1)
        else:  # a new step
            text += f"\n[[steps]]\n{place}\n{body}\n"
    if draw(st.integers(0, 19)) == 19:  # now and then, garbage anywhere
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=8)) + text[cut:]
    return text


@given(text=_hostile_scenario())
def test_fuzz_hostile_toml_loads_or_is_a_scenario_error(text: str) -> None:
    """Whatever the file holds: a Scenario within every bound, or a ScenarioError, nothing else."""
    sc = _parse_or_error(text)
    if isinstance(sc, ScenarioError):
        assert sc.path == "fuzz.toml"
        assert sc.where
        assert sc.message
        return
    assert 1 <= sc.speed <= 1000
    spans = [sc.timeout_ms, sc.boot_ms, sc.connect_ms, sc.ack_ms]
    for step in sc.steps:
        spans += [step.at_ms or 0, step.after_ms or 0, step.timeout_ms or 0]
        deadline = step.args.get("deadline_ms")
        spans.append(deadline if isinstance(deadline, int) else 0)
    assert all(0 <= span <= MAX_SPAN_MS for span in spans), spans
    assert abs(sc.seed) <= 2**53 - 1


def test_an_integer_for_a_float_setting_is_taken_as_a_float() -> None:
    """Found by the fuzz: `jitter = 0` reached BackoffConfig as an int (a type violation)."""
    sc = parse_scenario(VALID + "[engine.backoff]\njitter = 0\nfactor = 3\n", "f.toml")
    backoff = sc.config.lifecycle.backoff
    assert (backoff.jitter, backoff.factor) == (0.0, 3.0)
    assert type(backoff.jitter) is float
    assert type(backoff.factor) is float


def _parse_or_error(text: str) -> Scenario | ScenarioError:
    """The loader's outcome; any exception other than ScenarioError propagates (and fails)."""
    try:
        return parse_scenario(text, "fuzz.toml")
    except ScenarioError as exc:
        return exc
