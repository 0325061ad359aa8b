"""The durable journal on one machine: the engine's durable state in a SQLite file.

The engine (``EngineConfig(journal=True)``) says after every step what changed
in its durable state (:class:`~heirline.core.journal.Changes`); a
:class:`SqliteJournal` writes that in one transaction, before the step's
effects are carried out, so whatever the world may have seen is on disk first.
A restarted process opens the same file and hands :meth:`SqliteJournal.load`'s
snapshot to :meth:`Engine.restore <heirline.core.engine.Engine.restore>`.

SQLite from the standard library, WAL mode. Durability (``durability=``):

* ``"process"`` (default, ``synchronous=NORMAL``): a committed step survives
  the process being killed (SIGKILL, OOM, a crash) -- the write is in the
  operating system's cache when ``write`` returns; a power loss may lose the
  last steps before a checkpoint.
* ``"power"`` (``synchronous=FULL``): every commit waits for the disk (an
  fsync per step; ``docs/durability.md`` has the cost).

A file that is not a heirline journal, is corrupt, was written by a newer
format, or by an engine with another configuration is a
:class:`~heirline.core.journal.JournalError` with a clear message; it is never
truncated or rewritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Final, Literal

from heirline.core import __version__
from heirline.core.config import EngineConfig
from heirline.core.journal import (
    FORMAT,
    AccountRecord,
    Changes,
    EndedRecord,
    JournalError,
    ReplyRecord,
    Snapshot,
    from_json,
    to_json,
)

__all__ = ["Durability", "SqliteJournal", "config_fingerprint"]

Durability = Literal["process", "power"]

_SYNCHRONOUS: Final[dict[str, str]] = {"process": "NORMAL", "power": "FULL"}

_SCHEMA: Final = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE accounts (account TEXT PRIMARY KEY, body TEXT NOT NULL)",
    "CREATE TABLE replies (reply_id TEXT PRIMARY KEY, account TEXT NOT NULL, body TEXT NOT NULL)",
    "CREATE TABLE ended (seq INTEGER PRIMARY KEY AUTOINCREMENT, reply_id TEXT UNIQUE NOT NULL,"
    " account TEXT NOT NULL, body TEXT NOT NULL)",
    "CREATE TABLE mapping (pn TEXT PRIMARY KEY, lid TEXT NOT NULL)",
    "CREATE INDEX replies_by_account ON replies (account)",
)


def config_fingerprint(config: EngineConfig) -> str:
    """A short digest of every setting a journal's replies depend on.

    A journal written under one configuration and read under another would
    end replies by other rules (another deadline default, other resendable
    kinds): refuse it rather than guess.
    """
    fields = {
        "max_transmissions": config.max_transmissions,
        "resendable_kinds": sorted(config.resendable_kinds),
        "remember_ended": config.remember_ended,
    }
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SqliteJournal:
    """One engine's durable state in one SQLite file; use as a context manager."""

    def __init__(
        self, path: str | Path, config: EngineConfig, *, durability: str = "process"
    ) -> None:
        if durability not in _SYNCHRONOUS:
            raise ValueError(f"durability must be 'process' or 'power', got {durability!r}")
        self.path = Path(path)
        self.remember_ended = config.remember_ended
        self._fingerprint = config_fingerprint(config)
        self.writes = 0
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:
            raise JournalError(f"{self.path}: cannot open the journal: {err}") from err
        try:
            self._prepare(durability)
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise JournalError(f"{self.path}: not a heirline journal, or corrupt: {err}") from err
        except JournalError:
            self._db.close()
            raise

    def __enter__(self) -> SqliteJournal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (a committed step is already durable)."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    # ------------------------------------------------------------------ opening

    def _prepare(self, durability: str) -> None:
        db = self._db
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                db.execute(statement)
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("format", str(FORMAT)),
                    ("written_by", f"heirline {__version__}"),
                    ("config", self._fingerprint),
                    ("now", "null"),
                ],
            )
            db.execute("COMMIT")
        else:
            self._check(tables)
            db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[durability]}")

    def _check(self, tables: set[str]) -> None:
        expected = {"meta", "accounts", "replies", "ended", "mapping"}
        if not expected <= tables:
            raise JournalError(
                f"{self.path}: not a heirline journal (tables {sorted(tables)}, "
                f"expected {sorted(expected)})"
            )
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        fmt = meta.get("format", "")
        if not fmt.isdigit():
            raise JournalError(f"{self.path}: corrupt journal: format {fmt!r}")
        if int(fmt) > FORMAT:
            raise JournalError(
                f"{self.path}: written by journal format {fmt} ({meta.get('written_by')}); "
                f"this heirline ({__version__}) reads format {FORMAT}: upgrade heirline"
            )
        if int(fmt) != FORMAT:
            raise JournalError(f"{self.path}: journal format {fmt} is not format {FORMAT}")
        if meta.get("config") != self._fingerprint:
            raise JournalError(
                f"{self.path}: written by an engine with another configuration "
                f"(fingerprint {meta.get('config')}, this engine's {self._fingerprint}): "
                "start with that configuration, or with another journal file"
            )

    # ------------------------------------------------------------------ writing

    def write(self, changes: Changes) -> None:
        """Make one step's changes durable (one transaction); nothing to write, no transaction."""
        if changes.empty:
            return
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            if changes.accounts:
                db.executemany(
                    "INSERT INTO accounts (account, body) VALUES (?, ?) "
                    "ON CONFLICT(account) DO UPDATE SET body = excluded.body",
                    [(a.account, json.dumps(to_json(a))) for a in changes.accounts],
                )
            if changes.replies:
                db.executemany(
                    "INSERT INTO replies (reply_id, account, body) VALUES (?, ?, ?) "
                    "ON CONFLICT(reply_id) DO UPDATE SET body = excluded.body",
                    [(r.reply_id, r.account, json.dumps(to_json(r))) for r in changes.replies],
                )
            if changes.ended:
                db.executemany(
                    "DELETE FROM replies WHERE reply_id = ?",
                    [(e.reply_id,) for e in changes.ended],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO ended (reply_id, account, body) VALUES (?, ?, ?)",
                    [(e.reply_id, e.account, json.dumps(to_json(e))) for e in changes.ended],
                )
                db.execute(
                    "DELETE FROM ended WHERE seq <= (SELECT MAX(seq) FROM ended) - ?",
                    (self.remember_ended,),
                )
            if changes.mapping:
                db.executemany(
                    "INSERT OR IGNORE INTO mapping (pn, lid) VALUES (?, ?)", changes.mapping
                )
            db.execute("UPDATE meta SET value = ? WHERE key = 'now'", (json.dumps(changes.now),))
            db.execute("COMMIT")
        except sqlite3.Error as err:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise JournalError(f"{self.path}: cannot write the journal: {err}") from err
        self.writes += 1

    # ------------------------------------------------------------------ reading

    def load(self) -> Snapshot:
        """Everything the journal holds, checked record by record."""
        db = self._db
        try:
            now = json.loads(db.execute("SELECT value FROM meta WHERE key = 'now'").fetchone()[0])
            accounts = [self._record(b, AccountRecord) for (b,) in db.execute(
                "SELECT body FROM accounts ORDER BY account")]  # fmt: skip
            replies = [self._record(b, ReplyRecord) for (b,) in db.execute(
                "SELECT body FROM replies ORDER BY rowid")]  # fmt: skip
            ended = [self._record(b, EndedRecord) for (b,) in db.execute(
                "SELECT body FROM ended ORDER BY seq")]  # fmt: skip
            mapping = [(str(pn), str(lid)) for pn, lid in db.execute(
                "SELECT pn, lid FROM mapping ORDER BY rowid")]  # fmt: skip
        except (sqlite3.Error, json.JSONDecodeError, TypeError) as err:
            raise JournalError(f"{self.path}: corrupt journal: {err}") from err
        if now is not None and (isinstance(now, bool) or not isinstance(now, int) or now < 0):
            raise JournalError(f"{self.path}: corrupt journal: clock {now!r}")
        return Snapshot(
            now,
            tuple(a for a in accounts if isinstance(a, AccountRecord)),
            tuple(r for r in replies if isinstance(r, ReplyRecord)),
            tuple(e for e in ended if isinstance(e, EndedRecord)),
            tuple(mapping),
        )

    def _record(
        self, body: object, kind: type[AccountRecord | ReplyRecord | EndedRecord]
    ) -> AccountRecord | ReplyRecord | EndedRecord:
        if not isinstance(body, str):
            raise JournalError(f"{self.path}: corrupt journal: a record is {type(body).__name__}")
        try:
            record = from_json(json.loads(body))
        except json.JSONDecodeError as err:
            raise JournalError(f"{self.path}: corrupt journal record: {err}") from err
        if not isinstance(record, kind):
            raise JournalError(
                f"{self.path}: corrupt journal: a {type(record).__name__} where a "
                f"{kind.__name__} belongs"
            )
        return record

    def stats(self) -> dict[str, int]:
        """How many accounts, open replies, remembered ended replies and pairs the file holds."""
        db = self._db
        return {
            table: int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in ("accounts", "replies", "ended", "mapping")
        }
