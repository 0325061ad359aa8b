"""What must outlive the process: the engine's durable state, as plain records.

A killed gateway process must not lose a captured reply. What a restarted
engine needs is small and explicit: each account's counters (the newest
generation and socket attempt numbers ever issued: the fencing tokens must only
grow), every open reply (captured identity, deadline, message id, payload, what
was transmitted through which socket), the memory of ended replies (a late ack,
a reused message id), the PN<->LID pairs learned, and the clock. Controllers
and sockets are not in it: after a crash every socket is gone.

With ``EngineConfig(journal=True)`` the engine records which of these changed
in each step; :meth:`Engine.take_changes <heirline.core.engine.Engine.take_changes>`
hands them over as :class:`Changes`, and an adapter writes them durably
before it carries out the step's effects (SQLite, Redis). A restarted engine
takes a :class:`Snapshot` back through :meth:`Engine.restore
<heirline.core.engine.Engine.restore>`. Every record has a plain JSON form
(:func:`to_json` / :func:`from_json`), checked strictly on the way in: a
journal written by something else is a :class:`JournalError`, never a guess.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

from heirline.core.errors import HeirlineError

#: The journal format version: a reader refuses a journal of another version.
FORMAT: Final = 1

_INT_LIMIT: Final = 2**53 - 1


class JournalError(HeirlineError, ValueError):
    """A journal record is malformed, of another format, or contradicts the engine it feeds."""

    code = "bad_journal"


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account's counters: the newest generation and socket attempt ever issued."""

    account: str
    generation: int
    attempt: int


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    """An open reply, as much as a restarted engine needs to carry on with it.

    ``pn`` / ``lid`` / ``e164`` are the identity captured with it (resolved);
    ``payload`` is ``None`` while the content is not ready; ``sent`` lists
    ``(attempt, generation)`` of every socket that carried a transmission;
    ``in_flight``: the last transmission had no outcome yet.
    """

    reply_id: str
    account: str
    origin: int
    chat: str
    kind: str
    message_id: str
    deadline_ms: int
    pn: str | None
    lid: str | None
    e164: str | None
    payload: str | None
    transmissions: int
    io_started: bool
    sent: tuple[tuple[int, int], ...]
    in_flight: bool


@dataclass(frozen=True, slots=True)
class EndedRecord:
    """What is remembered of an ended reply (its outcome state, its sockets, its message id)."""

    reply_id: str
    account: str
    state: str
    message_id: str
    sent: tuple[tuple[int, int], ...]
    acked_attempt: int | None


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed in the durable state since the last :meth:`take_changes`."""

    now: int | None
    accounts: tuple[AccountRecord, ...]
    replies: tuple[ReplyRecord, ...]
    ended: tuple[EndedRecord, ...]
    mapping: tuple[tuple[str, str], ...]

    @property
    def empty(self) -> bool:
        """Nothing to write."""
        return not (self.accounts or self.replies or self.ended or self.mapping)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole durable state, for :meth:`Engine.restore <heirline.core.engine.Engine.restore>`."""

    now: int | None
    accounts: tuple[AccountRecord, ...]
    replies: tuple[ReplyRecord, ...]
    ended: tuple[EndedRecord, ...]
    mapping: tuple[tuple[str, str], ...]


Record = AccountRecord | ReplyRecord | EndedRecord
_RECORDS: Final[dict[str, type[Record]]] = {
    "account": AccountRecord,
    "reply": ReplyRecord,
    "ended": EndedRecord,
}
_KIND: Final[dict[type[Record], str]] = {cls: kind for kind, cls in _RECORDS.items()}


def to_json(record: Record) -> dict[str, object]:
    """The plain JSON form of a record: ``{"record": <kind>, <fields>}``."""
    out: dict[str, object] = {"record": _KIND[type(record)]}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        out[f.name] = [list(pair) for pair in value] if f.name == "sent" else value
    return out


def _int(where: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _INT_LIMIT:
        raise JournalError(f"{where}: expected an integer in {low}..{_INT_LIMIT}, got {value!r}")
    return value


def _str(where: str, value: object, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise JournalError(f"{where}: expected a string, got {value!r}")
    return value


def _sent(where: str, value: object) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list):
        raise JournalError(f"{where}: expected a list of [attempt, generation], got {value!r}")
    out = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise JournalError(f"{where}[{i}]: expected [attempt, generation], got {pair!r}")
        out.append((_int(f"{where}[{i}]", pair[0], 1), _int(f"{where}[{i}]", pair[1], 1)))
    return tuple(out)


def from_json(data: object) -> Record:
    """The record a JSON object describes; :class:`JournalError` naming the field if none."""
    if not isinstance(data, dict):
        raise JournalError(f"journal record: expected an object, got {type(data).__name__}")
    kind = data.get("record")
    cls = _RECORDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise JournalError(f"journal record: unknown kind {kind!r} (known: {sorted(_RECORDS)})")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names) - {"record"})
    missing = [n for n in names if n not in data]
    if unknown or missing:
        raise JournalError(f"{kind} record: unknown fields {unknown}, missing fields {missing}")
    where = f"{kind} record"
    if cls is AccountRecord:
        return AccountRecord(
            account=str(_str(f"{where}.account", data["account"])),
            generation=_int(f"{where}.generation", data["generation"], 0),
            attempt=_int(f"{where}.attempt", data["attempt"], 0),
        )
    if cls is EndedRecord:
        acked = data["acked_attempt"]
        return EndedRecord(
            reply_id=str(_str(f"{where}.reply_id", data["reply_id"])),
            account=str(_str(f"{where}.account", data["account"])),
            state=str(_str(f"{where}.state", data["state"])),
            message_id=str(_str(f"{where}.message_id", data["message_id"])),
            sent=_sent(f"{where}.sent", data["sent"]),
            acked_attempt=None if acked is None else _int(f"{where}.acked_attempt", acked, 1),
        )
    io_started, in_flight = data["io_started"], data["in_flight"]
    if not isinstance(io_started, bool) or not isinstance(in_flight, bool):
        raise JournalError(f"{where}: io_started and in_flight must be booleans")
    return ReplyRecord(
        reply_id=str(_str(f"{where}.reply_id", data["reply_id"])),
        account=str(_str(f"{where}.account", data["account"])),
        origin=_int(f"{where}.origin", data["origin"], 1),
        chat=str(_str(f"{where}.chat", data["chat"])),
        kind=str(_str(f"{where}.kind", data["kind"])),
        message_id=str(_str(f"{where}.message_id", data["message_id"])),
        deadline_ms=_int(f"{where}.deadline_ms", data["deadline_ms"], 0),
        pn=_str(f"{where}.pn", data["pn"], optional=True),
        lid=_str(f"{where}.lid", data["lid"], optional=True),
        e164=_str(f"{where}.e164", data["e164"], optional=True),
        payload=_str(f"{where}.payload", data["payload"], optional=True),
        transmissions=_int(f"{where}.transmissions", data["transmissions"], 0),
        io_started=io_started,
        sent=_sent(f"{where}.sent", data["sent"]),
        in_flight=in_flight,
    )
