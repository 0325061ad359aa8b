"""Read a Baileys multi-file auth dir into a self identity and a PN<->LID mapping.

Files read (everything else in the dir is ignored, nothing is ever written):

* ``creds.json``: ``me.id`` (the phone-number JID, e.g.
  ``4915123456789:12@s.whatsapp.net``) and ``me.lid`` (the LID). No ``me``
  (or ``"me": null``) means the dir was never paired: an unauthenticated identity.
* ``lid-mapping-<pnUser>.json``: a JSON string holding the LID user;
* ``lid-mapping-<lidUser>_reverse.json``: a JSON string holding the PN user.

Safety rules (see ``docs/identity.md``):

* symbolic links are never followed: the auth dir itself, ``creds.json`` or a
  ``lid-mapping-*`` file that is a link is *refused* with an error (a link
  there is either hostile or a broken deployment; guessing is worse than
  stopping). Links under unrelated names are never opened, so never matter.
  Files are opened relative to the dir's descriptor with ``O_NOFOLLOW``.
* only names listed in the dir are opened; the user part of a mapping file name
  and every user read from a mapping file must be ASCII digits, so no derived
  name can contain ``..`` or ``/``;
* files are read-only, must be regular files, at most :data:`MAX_FILE_BYTES`;
* the JSON must be strict: no duplicate keys, no ``NaN``/``Infinity``, no
  integer longer than :data:`MAX_JSON_INT_DIGITS` digits, nesting the parser can hold.

Every problem raises :class:`AuthDirError` naming the file and what is wrong --
whatever the path, the names in the dir and the bytes in the files hold, nothing
else escapes (a NUL byte in the path, a 5000-digit number, invalid UTF-8, a file
that cannot be read, JSON nested too deeply).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from typing import Final

from heirline.core.errors import HeirlineError, JidError
from heirline.core.identity import UNAUTHENTICATED, LidMapping, SelfIdentity, resolve

CREDS_FILE: Final = "creds.json"
#: Larger files are refused (a real creds.json is a few KiB, a mapping file a few bytes).
MAX_FILE_BYTES: Final = 4 * 1024 * 1024
#: Longer integers are refused: Baileys writes its JSON with JavaScript's ``JSON.stringify``,
#: which writes any number of 1e21 or more in exponent form, so never more digits than this.
MAX_JSON_INT_DIGITS: Final = 21

_MAPPING_NAME: Final = re.compile(r"lid-mapping-(?P<user>.*?)(?P<reverse>_reverse)?\.json", re.S)
_NUMERIC_USER: Final = re.compile(r"[0-9]+")
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class AuthDirError(HeirlineError):
    """An auth dir (or one file in it) is missing, corrupt, hostile or inconsistent.

    ``file`` is the path of the offending file (or of the dir), ``problem`` says what is wrong.
    The message is always printable: a lone surrogate (a name that is not UTF-8) is escaped.
    """

    def __init__(self, file: str, problem: str) -> None:
        text = f"{file}: {problem}"
        super().__init__(text.encode("utf-8", "backslashreplace").decode("utf-8"))
        self.file = file
        self.problem = problem


@dataclass(frozen=True, slots=True)
class AuthDir:
    """What an auth dir says: the self identity in ``creds.json`` and the PN<->LID mapping."""

    identity: SelfIdentity
    mapping: LidMapping
    path: str

    @property
    def resolved_identity(self) -> SelfIdentity:
        """The identity with its missing forms filled from the dir's own mapping."""
        return resolve(self.identity, self.mapping)


class _StrictJsonError(ValueError):
    """JSON that Python's decoder would take but a Baileys auth dir never holds."""


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _StrictJsonError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_JSON_INT_DIGITS:
        raise _StrictJsonError(
            f"an integer of {digits} digits (JSON from Baileys has at most {MAX_JSON_INT_DIGITS})"
        )
    return int(text)


def _no_constant(name: str) -> object:
    raise _StrictJsonError(f"{name} is not JSON")


def _type_name(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else "number"
    )


def _read_json(dir_fd: int, dir_path: str, name: str) -> object:
    """Open ``name`` inside the dir without following links, and decode its JSON."""
    where = os.path.join(dir_path, name)
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise AuthDirError(where, "file is missing") from None
    except OSError as exc:
        problem = (
            "is a symbolic link; heirline never follows links (one could point out of the dir)"
            if exc.errno == errno.ELOOP
            else f"cannot be opened ({exc.strerror})"
        )
        raise AuthDirError(where, problem) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AuthDirError(where, "is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise AuthDirError(where, f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise AuthDirError(where, f"is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AuthDirError(where, f"is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise AuthDirError(where, "is empty")
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_int=_bounded_int,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise AuthDirError(
            where, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise AuthDirError(where, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # _StrictJsonError, or anything else the decoder refuses
        raise AuthDirError(where, f"invalid JSON: {exc}") from None


def _read_identity(dir_fd: int, dir_path: str) -> SelfIdentity:
    where = os.path.join(dir_path, CREDS_FILE)
    creds = _read_json(dir_fd, dir_path, CREDS_FILE)
    if not isinstance(creds, dict):
        raise AuthDirError(where, f"wrong type: expected a JSON object, got {_type_name(creds)}")
    me = creds.get("me")
    if me is None:
        return UNAUTHENTICATED
    if not isinstance(me, dict):
        raise AuthDirError(where, f"wrong type: 'me' must be an object, got {_type_name(me)}")
    pn, lid = me.get("id"), me.get("lid")
    if not isinstance(pn, str):
        raise AuthDirError(where, f"wrong type: 'me.id' must be a string, got {_type_name(pn)}")
    if lid is not None and not isinstance(lid, str):
        raise AuthDirError(where, f"wrong type: 'me.lid' must be a string, got {_type_name(lid)}")
    try:
        return SelfIdentity.parse(pn=pn, lid=lid)
    except JidError as exc:
        raise AuthDirError(where, f"'me' is not a valid self identity: {exc}") from None


def _read_mapping(dir_fd: int, dir_path: str, names: list[str]) -> LidMapping:
    by_pn: dict[str, tuple[str, str]] = {}  # pn user -> (lid user, file name)
    by_lid: dict[str, tuple[str, str]] = {}  # lid user -> (pn user, file name)
    for name in sorted(names):
        match = _MAPPING_NAME.fullmatch(name)
        if match is None:
            continue
        where = os.path.join(dir_path, name)
        user, reverse = match["user"], match["reverse"] is not None
        held = "PN user" if reverse else "LID user"
        if not _NUMERIC_USER.fullmatch(user):
            raise AuthDirError(where, f"user {user!r} in the file name is not numeric; refused")
        value = _read_json(dir_fd, dir_path, name)
        if not isinstance(value, str):
            raise AuthDirError(
                where, f"wrong type: expected a JSON string (the {held}), got {_type_name(value)}"
            )
        if not _NUMERIC_USER.fullmatch(value):
            raise AuthDirError(where, f"holds {value!r}, which is not a numeric {held}; refused")
        pn, lid = (value, user) if reverse else (user, value)
        for key, other, table, kind in ((pn, lid, by_pn, "phone number"), (lid, pn, by_lid, "LID")):
            known = table.get(key)
            if known is not None and known[0] != other:
                raise AuthDirError(
                    where,
                    f"mapping files disagree: this file pairs pn={pn} with lid={lid}, but "
                    f"{known[1]} pairs {kind} {key} with {known[0]}",
                )
            table[key] = (other, name)
    return LidMapping.from_pairs((pn, lid) for pn, (lid, _) in by_pn.items())


def read_auth_dir(path: str | os.PathLike[str]) -> AuthDir:
    """Read the self identity and PN<->LID mapping of a Baileys multi-file auth dir.

    Read-only and link-safe (see the module docstring); raises :class:`AuthDirError`.
    """
    dir_path = os.fspath(path)
    try:
        info = os.lstat(dir_path)
    except FileNotFoundError:
        raise AuthDirError(dir_path, "auth dir does not exist") from None
    except OSError as exc:
        raise AuthDirError(dir_path, f"auth dir cannot be read ({exc.strerror})") from None
    except ValueError as exc:  # a NUL byte or a lone surrogate: no file has such a name
        # Our own words for NUL: Python's differ by version ("null byte", "null character").
        why = "it holds a NUL character" if "\x00" in dir_path else str(exc)
        raise AuthDirError(dir_path, f"auth dir path cannot name a file ({why})") from None
    if stat.S_ISLNK(info.st_mode):
        raise AuthDirError(
            dir_path, "auth dir is a symbolic link; heirline never follows links (pass its target)"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise AuthDirError(dir_path, "auth dir is not a directory")
    try:
        dir_fd = os.open(dir_path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:  # pragma: no cover - only when the dir is swapped after lstat
        raise AuthDirError(dir_path, f"auth dir cannot be opened ({exc.strerror})") from None
    try:
        try:
            names = os.listdir(dir_fd)
        except OSError as exc:  # pragma: no cover - an I/O error on a dir just opened
            raise AuthDirError(dir_path, f"auth dir cannot be listed ({exc.strerror})") from None
        identity = _read_identity(dir_fd, dir_path)
        mapping = _read_mapping(dir_fd, dir_path, names)
    finally:
        os.close(dir_fd)
    return AuthDir(identity=identity, mapping=mapping, path=dir_path)
