"""The auth-dir reader on generated fixture dirs: happy, corrupt and hostile."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heirline.adapters.authdir import MAX_FILE_BYTES, AuthDir, AuthDirError, read_auth_dir
from heirline.core.errors import HeirlineError
from heirline.core.identity import (
    EMPTY_MAPPING,
    UNAUTHENTICATED,
    LidMapping,
    SelfIdentity,
    VerdictKind,
    compare,
)

PN_USER = "4915123456789"
LID_USER = "123456789012345"
OTHER_PN_USER = "4915987654321"
OTHER_LID_USER = "987654321098765"


def make_dir(
    root: Path,
    me: object = None,
    mappings: dict[str, object] | None = None,
    extra: dict[str, str] | None = None,
) -> Path:
    """An auth dir like Baileys' useMultiFileAuthState writes (only the parts heirline reads)."""
    root.mkdir(parents=True, exist_ok=True)
    creds: dict[str, object] = {"noiseKey": {"private": {"type": "Buffer", "data": "AA=="}}}
    if me is not None:
        creds["me"] = me
    (root / "creds.json").write_text(json.dumps(creds))
    for name, value in (mappings or {}).items():
        (root / name).write_text(json.dumps(value))
    for name, text in (extra or {}).items():
        (root / name).write_text(text)
    return root


def paired(root: Path) -> Path:
    return make_dir(
        root,
        me={"id": f"{PN_USER}:12@s.whatsapp.net", "lid": f"{LID_USER}:12@lid", "name": "Bot"},
        mappings={
            f"lid-mapping-{PN_USER}.json": LID_USER,
            f"lid-mapping-{LID_USER}_reverse.json": PN_USER,
            f"lid-mapping-{OTHER_PN_USER}.json": OTHER_LID_USER,
        },
    )


def expect_error(path: Path | str, file: str, fragment: str) -> AuthDirError:
    with pytest.raises(AuthDirError) as info:
        read_auth_dir(path)
    assert info.value.file.endswith(file), info.value.file
    assert fragment in str(info.value), str(info.value)
    assert file in str(info.value)
    return info.value


# --- happy path -----------------------------------------------------------------


def test_reads_identity_and_mapping(tmp_path: Path) -> None:
    auth = read_auth_dir(paired(tmp_path / "auth"))
    assert auth == AuthDir(
        identity=SelfIdentity.parse(pn=f"{PN_USER}@s.whatsapp.net", lid=f"{LID_USER}@lid"),
        mapping=LidMapping.from_pairs([(PN_USER, LID_USER), (OTHER_PN_USER, OTHER_LID_USER)]),
        path=str(tmp_path / "auth"),
    )
    assert auth.resolved_identity.e164 == f"+{PN_USER}"


def test_accepts_str_and_pathlike(tmp_path: Path) -> None:
    root = paired(tmp_path / "auth")
    assert read_auth_dir(str(root)) == read_auth_dir(root)


def test_never_paired_dir_is_unauthenticated(tmp_path: Path) -> None:
    auth = read_auth_dir(make_dir(tmp_path / "auth"))
    assert auth.identity == UNAUTHENTICATED
    assert auth.mapping == EMPTY_MAPPING
    (tmp_path / "auth" / "creds.json").write_text('{"me": null}')
    assert read_auth_dir(tmp_path / "auth").identity == UNAUTHENTICATED


def test_me_without_lid(tmp_path: Path) -> None:
    auth = read_auth_dir(make_dir(tmp_path / "a", me={"id": f"{PN_USER}:3@s.whatsapp.net"}))
    assert auth.identity == SelfIdentity.parse(pn=f"{PN_USER}@s.whatsapp.net")
    auth = read_auth_dir(make_dir(tmp_path / "b", me={"id": f"{PN_USER}@c.us", "lid": None}))
    assert auth.identity == SelfIdentity.parse(pn=f"{PN_USER}@s.whatsapp.net")


def test_pn_only_original_and_lid_only_successor_match_through_the_dir_mapping(
    tmp_path: Path,
) -> None:
    auth = read_auth_dir(
        make_dir(
            tmp_path / "auth",
            me={"id": f"{PN_USER}:1@s.whatsapp.net"},
            mappings={f"lid-mapping-{LID_USER}_reverse.json": PN_USER},
        )
    )
    successor = SelfIdentity.parse(lid=f"{LID_USER}:4@lid")
    assert compare(auth.identity, successor, auth.mapping).kind is VerdictKind.SAME
    assert compare(auth.identity, successor).kind is VerdictKind.NOT_COMPARABLE


def test_ignores_unrelated_files_dirs_and_links(tmp_path: Path) -> None:
    root = paired(tmp_path / "auth")
    outside = tmp_path / "outside.json"
    outside.write_text('"666"')
    (root / "pre-key-1.json").write_text("not json at all")
    (root / "session-4915123456789.0.json").write_text("{")
    (root / "lid-mapping-123.json.bak").write_text("garbage")
    (root / "app-state-sync-key-AAA.json").symlink_to(outside)
    (root / "subdir").mkdir()
    auth, clean = read_auth_dir(root), read_auth_dir(paired(tmp_path / "clean"))
    assert (auth.identity, auth.mapping) == (clean.identity, clean.mapping)


def test_never_writes(tmp_path: Path) -> None:
    root = paired(tmp_path / "auth")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.iterdir()}
    dir_mtime = root.stat().st_mtime_ns
    read_auth_dir(root)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.iterdir()}
    assert after == before
    assert root.stat().st_mtime_ns == dir_mtime


def test_auth_dir_error_is_a_heirline_error(tmp_path: Path) -> None:
    with pytest.raises(HeirlineError):
        read_auth_dir(tmp_path / "missing")


# --- missing and corrupt --------------------------------------------------------


def test_missing_dir(tmp_path: Path) -> None:
    expect_error(tmp_path / "missing", "missing", "auth dir does not exist")


def test_path_through_a_file_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    expect_error(tmp_path / "file" / "auth", "auth", "auth dir cannot be read")


def test_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "auth").write_text("{}")
    expect_error(tmp_path / "auth", "auth", "auth dir is not a directory")


def test_missing_creds(tmp_path: Path) -> None:
    root = paired(tmp_path / "auth")
    (root / "creds.json").unlink()
    expect_error(root, "creds.json", "file is missing")


@pytest.mark.parametrize("text", ["", "  \n\t"])
def test_empty_creds(tmp_path: Path, text: str) -> None:
    root = paired(tmp_path / "auth")
    (root / "creds.json").write_text(text)
    expect_error(root, "creds.json", "is empty")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"me": {"id": "1@s.whatsapp.net"', "invalid JSON: Expecting"),
        ("{'me': 1}", "line 1 column 2"),
        ('{"me": {"id": "4915123456789@s.whatsapp.net", "id": "1@lid"}}', "duplicate key 'id'"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_invalid_json_creds(tmp_path: Path, text: str, fragment: str) -> None:
    root = paired(tmp_path / "auth")
    (root / "creds.json").write_text(text)
    expect_error(root, "creds.json", fragment)


def test_creds_not_utf8(tmp_path: Path) -> None:
    root = paired(tmp_path / "auth")
    (root / "creds.json").write_bytes(b'{"me": "\xff"}')
    expect_error(root, "creds.json", "is not UTF-8")


def test_creds_too_large(tmp_path: Path) -> None:
    root = paired(tmp_path / "auth")
    (root / "creds.json").write_bytes(b" " * (MAX_FILE_BYTES + 1))
    expect_error(root, "creds.json", "is larger than")


def test_creds_is_a_directory(tmp_path: Path) -> None:
    root = paired(tmp_path / "auth")
    (root / "creds.json").unlink()
    (root / "creds.json").mkdir()
    expect_error(root, "creds.json", "is not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_creds_is_a_fifo_and_does_not_block(tmp_path: Path) -> None:
    root = paired(tmp_path / "auth")
    (root / "creds.json").unlink()
    os.mkfifo(root / "creds.json")
    expect_error(root, "creds.json", "is not a regular file")


@pytest.mark.parametrize(
    ("creds", "fragment"),
    [
        ([], "expected a JSON object, got array"),
        ("me", "expected a JSON object, got string"),
        ({"me": "4915123456789@s.whatsapp.net"}, "'me' must be an object, got string"),
        ({"me": {}}, "'me.id' must be a string, got null"),
        ({"me": {"id": 4915123456789}}, "'me.id' must be a string, got number"),
        (
            {"me": {"id": "4915123456789@s.whatsapp.net", "lid": True}},
            "'me.lid' must be a string, got boolean",
        ),
        (
            {"me": {"id": "4915123456789@s.whatsapp.net", "lid": {}}},
            "'me.lid' must be a string, got object",
        ),
    ],
)
def test_creds_wrong_types(tmp_path: Path, creds: object, fragment: str) -> None:
    root = paired(tmp_path / "auth")
    (root / "creds.json").write_text(json.dumps(creds))
    expect_error(root, "creds.json", f"wrong type: {fragment}")


@pytest.mark.parametrize(
    ("me", "fragment"),
    [
        ({"id": ""}, "empty JID"),
        ({"id": "4915123456789 @s.whatsapp.net"}, "whitespace"),
        ({"id": "120363025246125486@g.us"}, "never a self identity"),
        ({"id": f"{LID_USER}@lid"}, "is a LID"),
        (
            {"id": f"{PN_USER}@s.whatsapp.net", "lid": f"{PN_USER}@s.whatsapp.net"},
            "but was given as the LID",
        ),
        ({"id": f"{PN_USER}@example.com"}, "unknown JID server"),
    ],
)
def test_creds_bad_identity(tmp_path: Path, me: dict[str, object], fragment: str) -> None:
    root = make_dir(tmp_path / "auth", me=me)
    error = expect_error(root, "creds.json", "'me' is not a valid self identity")
    assert fragment in error.problem


# --- corrupt mapping files --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (123456789012345, "expected a JSON string (the LID user), got number"),
        ([LID_USER], "got array"),
        (None, "got null"),
        (f"{LID_USER}@lid", "not a numeric LID user"),
        ("", "not a numeric LID user"),
    ],
)
def test_forward_mapping_wrong_content(tmp_path: Path, value: object, fragment: str) -> None:
    name = f"lid-mapping-{PN_USER}.json"
    root = make_dir(tmp_path / "auth", mappings={name: value})
    expect_error(root, name, fragment)


def test_reverse_mapping_wrong_content(tmp_path: Path) -> None:
    name = f"lid-mapping-{LID_USER}_reverse.json"
    root = make_dir(tmp_path / "auth", mappings={name: 4915123456789})
    expect_error(root, name, "expected a JSON string (the PN user), got number")


@pytest.mark.parametrize("text", ["", '"unterminated', f'"{LID_USER}" "again"'])
def test_mapping_empty_or_invalid_json(tmp_path: Path, text: str) -> None:
    name = f"lid-mapping-{PN_USER}.json"
    root = make_dir(tmp_path / "auth", extra={name: text})
    expect_error(root, name, "is empty" if not text else "invalid JSON")


def test_forward_and_reverse_disagree(tmp_path: Path) -> None:
    """Forward says A -> B, reverse says B -> C."""
    root = make_dir(
        tmp_path / "auth",
        mappings={
            f"lid-mapping-{PN_USER}.json": LID_USER,
            f"lid-mapping-{LID_USER}_reverse.json": OTHER_PN_USER,
        },
    )
    error = expect_error(root, f"lid-mapping-{PN_USER}.json", "mapping files disagree")
    assert f"lid-mapping-{LID_USER}_reverse.json" in error.problem


def test_two_forward_files_claim_one_lid(tmp_path: Path) -> None:
    root = make_dir(
        tmp_path / "auth",
        mappings={
            f"lid-mapping-{PN_USER}.json": LID_USER,
            f"lid-mapping-{OTHER_PN_USER}.json": LID_USER,
        },
    )
    error = expect_error(root, f"lid-mapping-{OTHER_PN_USER}.json", "mapping files disagree")
    assert f"lid-mapping-{PN_USER}.json pairs LID {LID_USER}" in error.problem


def test_two_reverse_files_claim_one_number(tmp_path: Path) -> None:
    root = make_dir(
        tmp_path / "auth",
        mappings={
            f"lid-mapping-{LID_USER}_reverse.json": PN_USER,
            f"lid-mapping-{OTHER_LID_USER}_reverse.json": PN_USER,
        },
    )
    error = expect_error(root, f"lid-mapping-{OTHER_LID_USER}_reverse.json", "disagree")
    assert f"pairs phone number {PN_USER}" in error.problem


def test_forward_and_reverse_that_agree_are_one_pair(tmp_path: Path) -> None:
    root = make_dir(
        tmp_path / "auth",
        mappings={
            f"lid-mapping-{PN_USER}.json": LID_USER,
            f"lid-mapping-{LID_USER}_reverse.json": PN_USER,
        },
    )
    assert read_auth_dir(root).mapping == LidMapping.from_pairs([(PN_USER, LID_USER)])


# --- hostile ------------------------------------------------------------------------


def test_symlinked_creds_escaping_the_dir_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "stolen-creds.json"
    outside.write_text(json.dumps({"me": {"id": f"{OTHER_PN_USER}@s.whatsapp.net"}}))
    root = paired(tmp_path / "auth")
    (root / "creds.json").unlink()
    (root / "creds.json").symlink_to(outside)
    expect_error(root, "creds.json", "is a symbolic link")


def test_symlinked_creds_inside_the_dir_is_refused_too(tmp_path: Path) -> None:
    root = paired(tmp_path / "auth")
    (root / "creds.json").rename(root / "real.json")
    (root / "creds.json").symlink_to("real.json")
    expect_error(root, "creds.json", "never follows links")


def test_dangling_symlink_creds_is_refused(tmp_path: Path) -> None:
    root = paired(tmp_path / "auth")
    (root / "creds.json").unlink()
    (root / "creds.json").symlink_to(tmp_path / "nowhere.json")
    expect_error(root, "creds.json", "is a symbolic link")


def test_symlinked_mapping_file_escaping_the_dir_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "evil.json"
    outside.write_text(json.dumps(OTHER_LID_USER))
    root = make_dir(tmp_path / "auth", me={"id": f"{PN_USER}@s.whatsapp.net"})
    (root / f"lid-mapping-{PN_USER}.json").symlink_to(outside)
    expect_error(root, f"lid-mapping-{PN_USER}.json", "is a symbolic link")


def test_symlinked_auth_dir_is_refused(tmp_path: Path) -> None:
    real = paired(tmp_path / "real")
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    expect_error(tmp_path / "link", "link", "auth dir is a symbolic link")


@pytest.mark.parametrize(
    "value", ["../../etc/passwd", "../creds", "1/../../x", "..", f"{LID_USER}/..", "1\x00"]
)
def test_dot_dot_or_slash_in_a_derived_name_is_refused(tmp_path: Path, value: str) -> None:
    """A forward file's content would name the reverse file: it must be a numeric user."""
    outside = tmp_path / "passwd_reverse.json"
    outside.write_text(json.dumps(OTHER_PN_USER))
    name = f"lid-mapping-{PN_USER}.json"
    root = make_dir(tmp_path / "auth", mappings={name: value})
    expect_error(root, name, "not a numeric LID user; refused")


@pytest.mark.parametrize(
    "name",
    [
        "lid-mapping-...json",
        "lid-mapping-..json",
        "lid-mapping-.json",
        "lid-mapping-_reverse.json",
        "lid-mapping-12a.json",
        "lid-mapping-1_reverse_reverse.json",
        "lid-mapping-..\n.json",
    ],
)
def test_mapping_file_name_with_a_non_numeric_user_is_refused(tmp_path: Path, name: str) -> None:
    root = make_dir(tmp_path / "auth", extra={name: json.dumps(LID_USER)})
    expect_error(root, name, "in the file name is not numeric; refused")


# --- hostile numbers, paths and names: every failure is an AuthDirError ----------------


@pytest.mark.parametrize(
    "name", ["creds.json", f"lid-mapping-{PN_USER}.json", f"lid-mapping-{LID_USER}_reverse.json"]
)
def test_a_5000_digit_number_is_an_auth_dir_error(tmp_path: Path, name: str) -> None:
    """Python's int() limit used to escape as a ValueError."""
    root = paired(tmp_path / "auth")
    (root / name).write_text('{"me": ' + "7" * 5000 + "}" if name == "creds.json" else "7" * 5000)
    expect_error(root, name, "invalid JSON: an integer of 5000 digits")


def test_integers_as_long_as_javascript_writes_them_are_accepted(tmp_path: Path) -> None:
    """JSON.stringify writes at most 21 digits (1e21 and up in exponent form)."""
    root = paired(tmp_path / "auth")
    me = f'{{"id": "{PN_USER}@s.whatsapp.net"}}'
    (root / "creds.json").write_text(f'{{"me": {me}, "n": -{"9" * 21}, "f": 1e21}}')
    assert read_auth_dir(root).identity == SelfIdentity.parse(pn=f"{PN_USER}@s.whatsapp.net")
    (root / "creds.json").write_text(f'{{"me": {me}, "n": {"9" * 22}}}')
    expect_error(root, "creds.json", "an integer of 22 digits (JSON from Baileys has at most 21)")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_refused(tmp_path: Path, constant: str) -> None:
    root = paired(tmp_path / "auth")
    (root / "creds.json").write_text(f'{{"me": null, "x": {constant}}}')
    expect_error(root, "creds.json", f"invalid JSON: {constant} is not JSON")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("auth\x00dir", "it holds a NUL character"), ("auth\ud800", "surrogates not allowed")],
    ids=["nul", "lone-surrogate"],
)
def test_a_path_no_file_can_have_is_an_auth_dir_error(
    tmp_path: Path, name: str, fragment: str
) -> None:
    with pytest.raises(AuthDirError) as info:
        read_auth_dir(str(tmp_path / name))
    assert info.value.file == str(tmp_path / name)
    assert "auth dir path cannot name a file" in info.value.problem
    assert fragment in info.value.problem
    assert str(info.value).encode("utf-8")  # printable, even with a lone surrogate in the path


def test_a_mapping_file_name_that_is_not_utf8_is_refused_printably(tmp_path: Path) -> None:
    root = paired(tmp_path / "auth")
    bad = os.fsencode(root) + b"/lid-mapping-\xff.json"
    with open(bad, "wb") as handle:
        handle.write(b'"123"')
    with pytest.raises(AuthDirError) as info:
        read_auth_dir(root)
    assert info.value.file == str(root / os.fsdecode(b"lid-mapping-\xff.json"))
    assert "in the file name is not numeric; refused" in info.value.problem
    assert "lid-mapping-\\udcff.json" in str(info.value)
    assert str(info.value).encode("utf-8")


def test_deeply_nested_mapping_file_is_an_auth_dir_error(tmp_path: Path) -> None:
    name = f"lid-mapping-{PN_USER}.json"
    root = make_dir(tmp_path / "auth", extra={name: "[" * 50_000 + "]" * 50_000})
    expect_error(root, name, "nested too deeply")


# --- fuzz -----------------------------------------------------------------------------

_hostile_text = st.sampled_from(
    [
        "7" * 5000,
        "-" + "1" * 30,
        "NaN",
        "-Infinity",
        "1e99999",
        "[" * 5000 + "]" * 5000,
        '{"a": ' * 3000 + "1" + "}" * 3000,
        '"\\ud800"',
        "\ufeff{}",
        '{"me": {"id": "1@s.whatsapp.net", "id": 2}}',
        '{"me": {"id": "\\u0000@s.whatsapp.net"}}',
        f'{{"me": {{"id": "{PN_USER}:1@s.whatsapp.net", "lid": "{LID_USER}:2@lid"}}}}',
        f'"{LID_USER}"',
        f'"{PN_USER}"',
        '"\u0661\u0662\u0663"',  # Arabic-Indic digits: digits, but not ASCII
        '"12³"',
    ]
)
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from([PN_USER, LID_USER, f"{PN_USER}@s.whatsapp.net", f"{LID_USER}@lid"]),
)
_json_doc = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["me", "id", "lid", "x"]) | st.text(max_size=4), inner)
    ),
    max_leaves=8,
)
_content = st.one_of(
    st.binary(max_size=64),
    _hostile_text.map(str.encode),
    _json_doc.map(lambda v: json.dumps(v).encode()),  # json.dumps writes NaN and huge ints
    _json_doc.map(lambda v: json.dumps(v).encode()[:-1]),  # truncated
)
_user = st.one_of(
    st.sampled_from([PN_USER, LID_USER, OTHER_PN_USER, "0", "7" * 300, "", "..", "²", "\u0661"]),
    st.text(alphabet="0123456789_.-x²\x00\n", max_size=8),
)
_mapping_name = st.builds(
    lambda user, reverse: f"lid-mapping-{user}{'_reverse' if reverse else ''}.json",
    _user,
    st.booleans(),
)


def _write(root: Path, name: str, data: bytes) -> None:
    try:
        with open(os.fsencode(root) + b"/" + os.fsencode(name), "wb") as handle:
            handle.write(data)
    except (OSError, ValueError):  # a name no file system takes (NUL, too long, '/')
        pass


@given(
    creds=st.one_of(st.none(), _content),
    files=st.dictionaries(_mapping_name, _content, max_size=4),
    dir_name=st.text(alphabet="ab.\x00\ud800 \udcff", min_size=1, max_size=6),
)
def test_fuzz_hostile_auth_dirs_give_an_auth_dir_or_an_auth_dir_error(
    creds: bytes | None, files: dict[str, bytes], dir_name: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "auth"
        root.mkdir()
        if creds is not None:
            _write(root, "creds.json", creds)
        for name, data in files.items():
            _write(root, name, data)
        for path in (root, Path(tmp) / dir_name):
            outcome = _read_or_error(path)
            if isinstance(outcome, AuthDirError):
                assert outcome.problem
                assert str(outcome).encode("utf-8")  # printable
            else:
                assert all(pn.isdigit() and lid.isdigit() for pn, lid in outcome.mapping.pairs)


def _read_or_error(path: Path) -> AuthDir | AuthDirError:
    """The reader's outcome; any exception other than AuthDirError propagates (and fails)."""
    try:
        return read_auth_dir(path)
    except AuthDirError as error:
        return error
