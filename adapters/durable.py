"""A journaled engine: open the journal, restore from it, write every step before acting.

The one place the stdio server (``heirline serve --stdio --journal FILE``) and
the asyncio runtime (``AsyncGateway(..., journal=FILE)``) share their journal
logic, so both keep the same promise (``docs/durability.md``):

* :meth:`Durable.open` opens (or creates) the SQLite journal for an engine
  configuration; anything it cannot use is a :class:`JournalError` naming the
  file and what is wrong, and the file is left as it was.
* :meth:`Durable.restore` hands the journal's snapshot to a fresh engine and
  writes what the restore itself changed (replies that end at once, in-flight
  transmissions that are in flight no more), so a second crash right after a
  restart ends nothing twice. It returns what to tell the host
  (:class:`Restored`) and the effects to carry out.
* :meth:`Durable.commit` writes one step's changes; the caller calls it after
  ``Engine.handle`` and **before** carrying out (or answering) the step's
  effects, so whatever the world may act on is on disk first. A failed write is
  a :class:`JournalWriteError`: the step's effects must then be withheld and the
  engine abandoned (it is ahead of its journal).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from heirline.adapters.journal import SqliteJournal
from heirline.core.effects import Effect
from heirline.core.engine import Engine, EngineConfig
from heirline.core.journal import JournalError

__all__ = ["DURABILITY", "Durable", "JournalWriteError", "Restored", "journaled"]

#: The durability levels a journal may be opened with (``SqliteJournal``'s ``durability``).
DURABILITY = ("process", "power")


class JournalWriteError(JournalError):
    """A step's changes could not be written: its effects must not be carried out."""

    code = "journal_error"


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restart brought back from the journal."""

    #: Accounts the journal knows (their counters: generations only grow).
    accounts: int
    #: Replies still open after the restore (each waits for a same-identity successor).
    replies: int
    #: Replies that ended at the restore (an in-flight transmission of a kind never resent).
    ended: int
    #: The journal's clock: the last accepted ``now`` of the process that wrote it.
    now: int | None

    @property
    def empty(self) -> bool:
        """Nothing to carry on with: a new journal, or one that never held an account."""
        return self.accounts == 0 and self.replies == 0 and self.ended == 0

    def to_json(self) -> dict[str, int | None]:
        """The hello answer's ``restored`` object."""
        return dataclasses.asdict(self)


def journaled(config: EngineConfig | None) -> EngineConfig:
    """``config`` with ``journal=True``: a journaled engine must record its changes."""
    config = config if config is not None else EngineConfig()
    return config if config.journal else dataclasses.replace(config, journal=True)


class Durable:
    """One engine's journal session: restore once, then commit after every step."""

    def __init__(self, journal: SqliteJournal) -> None:
        self.journal = journal
        self.restored: Restored | None = None

    @classmethod
    def open(cls, path: str | Path, config: EngineConfig, durability: str = "process") -> Durable:
        """Open (or create) the journal at ``path`` for an engine with ``config``.

        :class:`JournalError` when the file cannot be used (a directory that does
        not exist, not a journal, corrupt, newer, another configuration).
        """
        return cls(SqliteJournal(path, journaled(config), durability=durability))

    @property
    def path(self) -> Path:
        return self.journal.path

    def restore(self, engine: Engine) -> tuple[Restored, list[Effect]]:
        """Carry ``engine`` (fresh, ``journal=True``) on from the journal; commit the restore.

        Returns what came back and the effects to carry out (each open reply's
        deadline timer, the outcomes of replies that end now). A journal the
        engine cannot take is a :class:`JournalError` and nothing is written.
        """
        if self.restored is not None:
            raise RuntimeError(f"{self.path}: already restored")
        snapshot = self.journal.load()
        effects = engine.restore(snapshot)
        before = len(snapshot.replies)
        still_open = len(engine.open_replies())
        self.commit(engine)
        self.restored = Restored(
            len(snapshot.accounts), still_open, before - still_open, snapshot.now
        )
        return self.restored, effects

    def commit(self, engine: Engine) -> None:
        """Write what the engine's last step changed, before its effects are carried out."""
        changes = engine.take_changes()
        try:
            self.journal.write(changes)
        except JournalError as err:
            raise JournalWriteError(
                f"{err}; the step's effects were withheld (not on disk), and the engine is "
                "ahead of its journal: restart on the journal"
            ) from err

    def close(self) -> None:
        """Close the file; every committed step is already durable."""
        self.journal.close()
