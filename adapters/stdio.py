"""``heirline serve --stdio``: the engine over JSON lines, for hosts in any language.

One JSON object per line in, exactly one JSON object per line out, in order
(see ``docs/protocol.md``; the schemas are in ``docs/protocol/``):

* the host's first line is the handshake
  ``{"hello": {"protocol": 2, "seed": 7, "clock": "host", "config": {...}, "mapping": [...]}}``
  and the answer is ``{"hello": {"protocol": 2, "heirline": "<version>", "clock": "host"}}``;
* every later line is ``{"id": <int|string, optional>, "now": <ms>, "event": {...}}`` and the
  answer is ``{"id": ..., "effects": [...]}`` -- or, for a line that cannot be used,
  ``{"id": ..., "error": {"line": N, "code": "...", "message": "..."}}``;
* at EOF, unless the host shut the engine down itself (a ``shutdown`` event), the server
  shuts it down (``Shutdown(reason="end of input")``) and writes one last line,
  ``{"id": null, "shutdown": true, "effects": [...]}``: every open reply's outcome.

Bad input never ends the session and never touches the engine's state: any
JSON value in any position gets an error line, never an exception. Only if the
engine itself raises (a bug) does the session stop serving: it answers that line
``internal_error`` and every later one ``engine_broken``, since the engine may be
half-updated. EOF ends it: the last line above, a one-line summary on stderr, exit
status 0 (1 if the engine broke).

With ``--journal FILE`` (``docs/durability.md``) the session is durable: the hello
opens the journal and restores it (the answer says what came back), every
accepted event's changes are written before its answer goes out, and EOF ends
nothing -- open replies wait in the journal for the next session.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Protocol, runtime_checkable

from heirline.adapters.config import CONFIG, SECTIONS
from heirline.adapters.config import build_config as shared_build_config
from heirline.adapters.durable import DURABILITY, Durable, Restored, journaled
from heirline.adapters.jsonio import JsonError, dumps_line, loads
from heirline.core import __version__
from heirline.core.codec import Describe, Record, SchemaNote, shape_of
from heirline.core.effects import Effect, Rejected
from heirline.core.engine import Engine, EngineConfig
from heirline.core.errors import HeirlineError, ValidationError, WireError
from heirline.core.events import EVENT_TYPES, Event, Shutdown
from heirline.core.identity import LidMapping
from heirline.core.journal import JournalError
from heirline.core.wire import MAX_WIRE_INT, JsonValue, decode_event, encode

if __name__ == "__main__":  # pragma: no cover - tests/test_stdio.py runs it in a subprocess
    # Run as a program, serve from the imported module: the codec reads the hello dataclass's
    # annotations in the module that defines it, and a runner that executes this file as
    # __main__ without registering it there (runpy.run_module, profilers) would leave the
    # codec looking in the wrong module.
    from heirline.adapters.stdio import main as _main

    sys.exit(_main())

PROTOCOL: Final = 2
"""The protocol version this server speaks."""

SUPPORTED_PROTOCOLS: Final = frozenset({2})
"""Every protocol version a host may ask for in its hello."""

END_OF_INPUT: Final = "end of input"
"""The reason of the shutdown the server feeds at EOF (replies fail with "end of input before
the reply was sent", or end ``unknown`` if I/O may have started)."""
INTERRUPTED: Final = "interrupted"
"""The reason of the shutdown the server feeds on Ctrl-C (SIGINT); it exits 130."""

MAX_LINE_BYTES: Final = 1 << 20
"""The longest input line accepted (1 MiB, newline excluded); longer ones get ``line_too_long``."""

CLOCKS: Final = ("host", "monotonic")
"""Clock modes: the host passes ``now`` on every line, or the server stamps ms since the hello."""

ENVELOPE_KEYS: Final = frozenset({"id", "now", "event"})

_EVENT_TAGS: Final = frozenset(cls.type for cls in EVENT_TYPES)
_CHUNK: Final = 1 << 16

#: Error codes of error lines (stable; documented in docs/protocol.md).
ERROR_CODES: Final = (
    "not_json",
    "not_object",
    "empty_line",
    "line_too_long",
    "hello_required",
    "bad_hello",
    "unsupported_protocol",
    "duplicate_hello",
    "bad_envelope",
    "bad_now",
    "now_backwards",
    "unknown_event_type",
    "bad_event",
    "internal_error",
    "engine_broken",
    "journal_error",
)


def version() -> str:
    """heirline's version, as the hello's answer names it: ``heirline.core.__version__``."""
    return __version__


class ProtocolError(HeirlineError, ValueError):
    """One input line cannot be used; ``code`` is the stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------ config


#: The sections of the hello's ``config`` object (see :mod:`heirline.adapters.config`).
CONFIG_SECTIONS: Final = SECTIONS


@dataclass(frozen=True, slots=True)
class Hello:
    """The session's parameters."""

    protocol: Annotated[int, SchemaNote({"enum": sorted(SUPPORTED_PROTOCOLS)})]
    seed: Annotated[int, Describe("seeds the engine's jitter")]
    clock: Annotated[Literal["host", "monotonic"], Describe("default host")] = "host"
    config: EngineConfig | None = None
    mapping: Annotated[
        tuple[tuple[str, str], ...] | None,
        Describe("initial PN<->LID pairs [pn, lid] (users or JIDs)"),
    ] = None


#: The shape of the hello (the engine configuration is :data:`heirline.adapters.config.CONFIG`).
HELLO: Final = Record.of(Hello, hooks={EngineConfig: CONFIG})
HELLO_KEYS: Final = frozenset(HELLO.by_name)
_PAIRS: Final = shape_of(tuple[tuple[str, str], ...])


def config_schema() -> dict[str, JsonValue]:
    """The JSON Schema of the hello's ``config``, generated from the config dataclasses."""
    return CONFIG.schema()


def _bad_hello(exc: ValidationError, *root: str) -> ProtocolError:
    exc.path[:0] = root
    return ProtocolError("bad_hello", str(exc))


def build_config(data: object) -> EngineConfig:
    """The engine configuration a hello's ``config`` object asks for (absent fields: defaults)."""
    if data is None:
        return EngineConfig()
    try:
        return shared_build_config(data)
    except ValidationError as exc:
        raise _bad_hello(exc, "hello", "config") from None


def build_mapping(data: object) -> LidMapping:
    """The initial PN<->LID mapping of a hello: a list of ``[pn, lid]`` pairs (users or JIDs)."""
    if data is None:
        return LidMapping.empty()
    try:
        pairs = _PAIRS.decode(data)
        assert isinstance(pairs, tuple)
        return LidMapping.from_pairs(pairs)
    except ValidationError as exc:
        raise _bad_hello(exc, "hello", "mapping") from None
    except HeirlineError as err:
        raise ProtocolError("bad_hello", f"hello.mapping: {err}") from err


# ------------------------------------------------------------------ session


class Session:
    """One protocol session: feed it input lines, get answer lines. No I/O of its own.

    ``monotonic_ms`` is the server clock for ``"clock": "monotonic"`` (ms from
    an arbitrary origin; the session subtracts its value at the hello).
    """

    def __init__(
        self,
        *,
        monotonic_ms: Callable[[], int] | None = None,
        journal: str | None = None,
        durability: str = "process",
    ) -> None:
        self._monotonic_ms = monotonic_ms or (lambda: time.monotonic_ns() // 1_000_000)
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {DURABILITY}, got {durability!r}")
        self.journal_path = journal
        """The journal file (``--journal``), opened at the hello; None: nothing is durable."""
        self.durability = durability
        self.durable: Durable | None = None
        self.engine: Engine | None = None
        self.clock = "host"
        self._origin = 0
        self._last_now: int | None = None
        self._journal_now = False  # _last_now is the journal's clock, not this session's
        self.broken: str | None = None
        """Why the session stopped serving (the engine raised), or None while it serves."""
        self.lines = 0
        self.events = 0
        self.errors = 0
        self.rejected = 0

    # ---------------------------------------------------------------- answers

    def _error(self, rid: object, code: str, message: str) -> bytes:
        self.errors += 1
        if self.broken is not None and code not in ("internal_error", "journal_error"):
            code, message = "engine_broken", self.broken
        # An error line must always go out: a message that is not valid UTF-8 is escaped.
        text = message.encode("utf-8", "backslashreplace").decode("utf-8")
        body = {"id": rid, "error": {"line": self.lines, "code": code, "message": text}}
        return dumps_line(body)

    def too_long(self, length: int) -> bytes:
        """Count one oversized line (``length`` bytes at least) and answer it."""
        self.lines += 1
        return self._error(
            None,
            "line_too_long",
            f"line is longer than {MAX_LINE_BYTES} bytes ({length}+ bytes); it was skipped",
        )

    def summary(self) -> str:
        """The one-line summary written to stderr at EOF."""
        text = (
            f"heirline serve: {self.lines} lines, {self.events} events, "
            f"{self.errors} errors, {self.rejected} rejected"
        )
        return text if self.broken is None else f"{text}; {self.broken}"

    # ---------------------------------------------------------------- input

    def feed(self, line: bytes) -> bytes:
        """Handle one input line (without its newline); return its one answer line.

        Never raises: whatever the line holds, the answer is one line. An exception
        out of the engine (a bug) breaks the session for good (see :attr:`broken`).
        """
        self.lines += 1
        if self.broken is not None:
            return self._error(_peek_id(line), "engine_broken", self.broken)
        try:
            return self._feed(line)
        except Exception as err:  # a bug outside the engine: the line is dropped, state intact
            return self._error(None, "internal_error", _describe(err))

    def _feed(self, line: bytes) -> bytes:
        try:
            msg = loads(line)
        except JsonError as err:
            if not line.strip():
                return self._error(None, "empty_line", "empty line")
            return self._error(None, "not_json", f"not JSON: {err}")
        if type(msg) is not dict:
            return self._error(None, "not_object", f"expected a JSON object, got {_kind(msg)}")
        try:
            if "hello" in msg:
                return self._hello(msg)
            if self.engine is None:
                raise ProtocolError(
                    "hello_required",
                    f'the first line must be {{"hello": {{"protocol": {PROTOCOL}, "seed": ...}}}}',
                )
            return self._event(msg, self.engine)
        except ProtocolError as err:
            rid = msg.get("id")
            return self._error(rid if _valid_id(rid) else None, err.code, str(err))

    def _hello(self, msg: dict[str, object]) -> bytes:
        if self.engine is not None:
            raise ProtocolError("duplicate_hello", "the session already had its hello")
        if set(msg) != {"hello"}:
            extra = ", ".join(sorted(set(msg) - {"hello"}))
            raise ProtocolError("bad_hello", f"unknown field(s) next to hello: {extra}")
        raw = msg["hello"]
        proto = raw.get("protocol") if isinstance(raw, dict) else None
        if _is_int(proto) and proto not in SUPPORTED_PROTOCOLS:  # before anything else in it
            raise ProtocolError(
                "unsupported_protocol",
                f"protocol {proto} is not supported (supported: {sorted(SUPPORTED_PROTOCOLS)})",
            )
        try:
            hello = HELLO.decode(raw)
        except ValidationError as exc:
            raise _bad_hello(exc, "hello") from None
        assert isinstance(hello, Hello)
        if hello.protocol not in SUPPORTED_PROTOCOLS:
            raise ProtocolError(
                "unsupported_protocol",
                f"protocol {hello.protocol} is not supported "
                f"(supported: {sorted(SUPPORTED_PROTOCOLS)})",
            )
        config = hello.config or EngineConfig()
        try:
            mapping = LidMapping.from_pairs(hello.mapping or ())
        except HeirlineError as err:
            raise ProtocolError("bad_hello", f"hello.mapping: {err}") from err
        seed, clock = hello.seed, hello.clock
        if self.journal_path is not None:
            config = journaled(config)
        engine = Engine(config, random=random.Random(seed).random, mapping=mapping)
        answer: dict[str, object] = {"protocol": PROTOCOL, "heirline": version(), "clock": clock}
        resumed = 0
        if self.journal_path is not None:
            restored, effects = self._open_journal(engine, config)
            answer["restored"] = restored.to_json()
            answer["effects"] = [encode(e) for e in effects]
            resumed = restored.now or 0
            if restored.now is not None and clock == "host":
                self._last_now = restored.now
                self._journal_now = True
        self.engine = engine
        self.clock = clock
        # monotonic: engine time resumes where the journal stopped (downtime does not count)
        self._origin = self._monotonic_ms() - resumed
        return dumps_line({"hello": answer})

    def _open_journal(self, engine: Engine, config: EngineConfig) -> tuple[Restored, list[Effect]]:
        """Open the ``--journal`` file and restore ``engine`` from it (``journal_error``)."""
        assert self.journal_path is not None
        try:
            durable = Durable.open(self.journal_path, config, self.durability)
        except JournalError as err:
            raise ProtocolError("journal_error", f"hello: {err}") from err
        try:
            restored, effects = durable.restore(engine)
        except JournalError as err:
            durable.close()
            raise ProtocolError("journal_error", f"hello: {err}") from err
        self.durable = durable
        return restored, effects

    def _event(self, msg: dict[str, object], engine: Engine) -> bytes:
        if len(msg) > 3 or not ENVELOPE_KEYS.issuperset(msg):
            unknown = ", ".join(sorted(set(msg) - ENVELOPE_KEYS))
            raise ProtocolError(
                "bad_envelope", f"unknown field(s) {unknown} (known: id, now, event)"
            )
        rid = msg.get("id")
        if not _valid_id(rid):
            raise ProtocolError(
                "bad_envelope",
                f"id: expected an integer within +-{MAX_WIRE_INT}, a string or null, got {rid!r}",
            )
        monotonic = self.clock == "monotonic"
        if monotonic:
            if "now" in msg:
                raise ProtocolError("bad_now", 'now: not allowed with "clock": "monotonic"')
            now = self._monotonic_ms() - self._origin
        else:
            raw = msg.get("now")
            if raw is None:
                raise ProtocolError("bad_now", "now: missing")
            if not _is_int(raw) or not isinstance(raw, int) or raw < 0:
                what = _expected_int(raw, "a non-negative") if not _is_int(raw) else None
                raise ProtocolError(
                    "bad_now", f"now: {what or f'expected a non-negative integer, got {raw}'}"
                )
            now = raw
        last = self._last_now
        if last is not None and now < last:
            if self._journal_now:
                raise ProtocolError(
                    "now_backwards",
                    f"now: {now} is before the journal's last now {last}: time must go on "
                    "across restarts (pass a clock that does, e.g. wall-clock ms)",
                )
            raise ProtocolError("now_backwards", f"now: {now} is before the previous now {last}")
        data = msg.get("event")
        if type(data) is not dict:
            what = "missing" if data is None else f"expected an object, got {_kind(data)}"
            raise ProtocolError("bad_event", f"event: {what}")
        tag = data.get("type")
        if not isinstance(tag, str) or tag not in _EVENT_TAGS:
            known = ", ".join(sorted(_EVENT_TAGS))
            raise ProtocolError(
                "unknown_event_type", f"event.type: unknown {tag!r} (known: {known})"
            )
        try:
            event = decode_event(data)
        except WireError as err:
            raise ProtocolError("bad_event", f"event: {err}") from err
        try:
            return self._apply(engine, event, now, rid)
        except Exception as err:  # the engine may be half-updated: stop serving it
            self.broken = (
                f"the engine failed on line {self.lines} ({_describe(err)}); its state may be "
                "half-updated, so this session answers nothing more: restart the server"
            )
            return self._error(rid, "internal_error", _describe(err))

    def _apply(self, engine: Engine, event: Event, now: int, rid: object) -> bytes:
        """Hand one decoded event to the engine and encode its answer."""
        effects = engine.handle(event, now)
        self.events += 1
        if self.durable is not None:  # on disk before the host may act on it
            try:
                self.durable.commit(engine)
            except JournalError as err:
                self.broken = (
                    f"the journal failed on line {self.lines} ({err}); this session answers "
                    "nothing more: restart the server on the journal"
                )
                return self._error(rid, "journal_error", str(err))
        rejected = sum(type(effect) is Rejected for effect in effects)
        self.rejected += rejected
        if not rejected:  # a rejected event changed nothing, so it does not move the clock either
            self._last_now = now
            self._journal_now = False
        body: dict[str, object] = {"id": rid, "effects": [encode(e) for e in effects]}
        if self.clock == "monotonic":
            body["now"] = now
        return dumps_line(body)

    # ---------------------------------------------------------------- end

    def end(self, reason: str = END_OF_INPUT) -> bytes:
        """End of input: shut the engine down and return the last line, or ``b""``.

        Unless there is no engine (no valid hello), the host already shut it down (a
        ``shutdown`` event), or it broke, the engine gets ``Shutdown(reason)`` ("end of
        input", or "interrupted" on Ctrl-C)
        at the last accepted ``now`` (with ``clock: monotonic``, the server's time) and
        the line ``{"id": null, "shutdown": true, "effects": [...]}`` tells the host how
        every open reply ended. Never raises; an engine that raises here breaks the
        session and the line carries an ``internal_error`` instead of effects.

        With a journal, EOF ends nothing and writes no line: every open reply stays
        in the journal for the next session (a host that wants them ended sends
        ``shutdown`` first).
        """
        engine = self.engine
        if self.durable is not None:
            self.durable.close()
            return b""
        if engine is None or self.broken is not None or engine.shut_down:
            return b""
        last = self._last_now if self._last_now is not None else 0
        now = last
        if self.clock == "monotonic":
            now = max(last, self._monotonic_ms() - self._origin)
        try:
            effects = engine.handle(Shutdown(reason=reason), now)
            body: dict[str, object] = {
                "id": None,
                "shutdown": True,
                "effects": [encode(e) for e in effects],
            }
            if self.clock == "monotonic":
                body["now"] = now
            return dumps_line(body)
        except Exception as err:  # a bug: say so on the last line, and exit 1
            self.broken = f"the engine failed at the end of input ({_describe(err)})"
            self.errors += 1
            error = {"line": self.lines + 1, "code": "internal_error", "message": self.broken}
            return dumps_line({"id": None, "shutdown": True, "error": error})


def _is_int(value: object) -> bool:
    """An integer every binding holds exactly (not a boolean; within +-MAX_WIRE_INT)."""
    return type(value) is int and abs(value) <= MAX_WIRE_INT


def _expected_int(value: object, which: str = "an") -> str:
    if (type(value) is int or type(value) is float) and abs(value) > MAX_WIRE_INT:
        return f"number {value!r} is outside +-{MAX_WIRE_INT} (2**53-1)"
    return f"expected {which} integer, got {value!r}"


def _valid_id(value: object) -> bool:
    return value is None or _is_int(value) or type(value) is str


def _peek_id(line: bytes) -> object:
    """The line's ``id`` if it is a JSON object with a usable one, else None (never raises)."""
    try:
        msg = loads(line)
    except JsonError:
        return None
    rid = msg.get("id") if type(msg) is dict else None
    return rid if _valid_id(rid) else None


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer"}.get(
        type(value), "null" if value is None else "number"
    )


def effects_of(answer: dict[str, object]) -> list[Effect]:  # pragma: no cover - helper for hosts
    """Decode the effects of one answer object (Python hosts and tests)."""
    from heirline.core.wire import decode_effect

    raw = answer["effects"]
    assert isinstance(raw, list)
    return [decode_effect(e) for e in raw]


# ------------------------------------------------------------------ I/O loop


@runtime_checkable
class ByteReader(Protocol):
    """What ``serve`` reads from (``sys.stdin.buffer``, a pipe, ``io.BytesIO``)."""

    def read(self, size: int = -1, /) -> bytes: ...


@runtime_checkable
class ByteWriter(Protocol):
    """What ``serve`` writes answers to."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


@runtime_checkable
class TextWriter(Protocol):
    """Where ``serve`` writes its summary."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


def serve(
    stdin: ByteReader,
    stdout: ByteWriter,
    stderr: TextWriter,
    *,
    session: Session | None = None,
    max_line: int = MAX_LINE_BYTES,
) -> int:
    """Run one session until EOF on ``stdin``; return the exit status.

    At EOF the engine is shut down and its effects written as one last line
    (:meth:`Session.end`). 0 on a clean EOF; 1 if the host closed the output pipe
    or the engine broke (:attr:`Session.broken`: every line after the failure was
    answered ``engine_broken``).

    Input is read in chunks of whatever is available, every complete line of a
    chunk is answered, then the answers are written and flushed together: a
    pipelining host gets batched writes, an interactive one an answer per line.
    """
    session = session if session is not None else Session()
    read1 = getattr(stdin, "read1", None)
    read: Callable[[int], bytes] = read1 if read1 is not None else stdin.read
    buf = b""
    skipping = 0  # > 0 while discarding the rest of an oversized line
    try:
        while True:
            chunk = read(_CHUNK)
            if not chunk:
                break
            out: list[bytes] = []
            data = buf + chunk if buf else chunk
            pos = 0
            while True:
                nl = data.find(b"\n", pos)
                if nl < 0:
                    break
                if skipping:
                    out.append(session.too_long(skipping + nl - pos))
                    skipping = 0
                elif nl - pos > max_line:
                    out.append(session.too_long(nl - pos))
                else:
                    out.append(session.feed(data[pos:nl]))
                pos = nl + 1
            buf = data[pos:]
            if skipping:
                skipping += len(buf)
                buf = b""
            elif len(buf) > max_line:
                skipping = len(buf)
                buf = b""
            if out:
                stdout.write(b"".join(out))
                stdout.flush()
        tail = b""
        if skipping:
            tail = session.too_long(skipping)
        elif buf:
            tail = session.feed(buf)
        tail += session.end()  # every open reply ends, and the host learns how
        if tail:
            stdout.write(tail)
            stdout.flush()
    except BrokenPipeError:
        print(f"{session.summary()} (host closed the output pipe)", file=stderr, flush=True)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: end as at EOF, so the host learns how replies ended
        try:
            stdout.write(session.end(INTERRUPTED))
            stdout.flush()
        except BrokenPipeError:
            pass
        print(f"{session.summary()} (interrupted)", file=stderr, flush=True)
        return 130
    print(session.summary(), file=stderr, flush=True)
    return 0 if session.broken is None else 1


# ------------------------------------------------------------------ CLI


def add_serve_parser(subparsers: Any) -> None:
    """Add ``serve --stdio`` to the ``heirline`` command's subparsers.

    ``subparsers`` is what ``ArgumentParser.add_subparsers()`` returned (typed
    loosely: argparse's ``_SubParsersAction`` is private and not subscriptable at run time).
    """
    parser = subparsers.add_parser(
        "serve",
        help="run the engine over JSON lines on stdin/stdout (docs/protocol.md)",
        description="Run the engine over JSON lines on stdin/stdout (see docs/protocol.md).",
    )
    _serve_arguments(parser)


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stdio",
        action="store_true",
        help="speak the JSON-lines protocol on stdin/stdout (the only transport so far)",
    )
    parser.add_argument(
        "--journal",
        metavar="FILE",
        help="keep the engine's durable state in this SQLite file (created if missing): "
        "replies survive a crash and the next session carries on (docs/durability.md)",
    )
    parser.add_argument(
        "--durability",
        choices=DURABILITY,
        default=None,
        help="with --journal: 'process' (default) survives the process being killed, "
        "'power' also a power loss (an fsync per event)",
    )


def run_serve(args: argparse.Namespace) -> int:
    """Run ``serve`` for parsed arguments; the exit status."""
    if not args.stdio:
        print("heirline serve: pass --stdio (the only transport so far)", file=sys.stderr)
        return 2
    problem = journal_problem(args.journal, args.durability)
    if problem is not None:
        print(f"heirline serve: {problem}", file=sys.stderr)
        return 2
    session = Session(journal=args.journal, durability=args.durability or "process")
    return _serve_stdio(session)


def journal_problem(journal: str | None, durability: str | None) -> str | None:
    """What is wrong with ``--journal`` / ``--durability`` before any line is read; None if fine.

    The file itself is checked at the hello (it must fit the hello's config).
    """
    if journal is None:
        return None if durability is None else "--durability needs --journal FILE"
    path = Path(journal)
    if path.is_dir():
        return f"--journal {journal}: is a directory, not a file"
    if not path.parent.is_dir():
        return f"--journal {journal}: directory {path.parent} does not exist"
    return None


class _SigintWhileReading:
    """Ctrl-C for ``serve``: raised while it waits for input, held while it answers lines.

    An interrupt never cuts the engine mid-event: one that arrives while a chunk is
    answered is raised at the next read, after the answers are written.
    """

    def __init__(self) -> None:
        self.reading = False
        self.pending = False
        self._previous: object = None

    def __enter__(self) -> _SigintWhileReading:
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc_info: object) -> None:
        signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.pending = True
        if self.reading:
            raise KeyboardInterrupt

    def read(self, stream: ByteReader, size: int) -> bytes:
        """``stream.read1(size)`` (else ``read``), interruptible while it waits."""
        if self.pending:
            raise KeyboardInterrupt
        self.reading = True
        try:
            read1 = getattr(stream, "read1", None)
            data: bytes = read1(size) if read1 is not None else stream.read(size)
            return data
        finally:
            self.reading = False


class _GuardedReader:
    def __init__(self, stream: ByteReader, sigint: _SigintWhileReading) -> None:
        self._stream = stream
        self._sigint = sigint

    def read(self, size: int = -1, /) -> bytes:
        return self._sigint.read(self._stream, size)


def _serve_stdio(session: Session) -> int:
    """``serve`` on this process's stdin/stdout; Ctrl-C ends it as EOF does, exit 130."""
    with _SigintWhileReading() as sigint:
        stdin = _GuardedReader(sys.stdin.buffer, sigint)
        return serve(stdin, sys.stdout.buffer, sys.stderr, session=session)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m heirline.adapters.stdio``: the same as ``heirline serve --stdio``."""
    parser = argparse.ArgumentParser(prog="python -m heirline.adapters.stdio", description=__doc__)
    _serve_arguments(parser)
    args = parser.parse_args(argv)
    args.stdio = True
    return run_serve(args)
