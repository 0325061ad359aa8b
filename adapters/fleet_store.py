"""What a fleet of gateway processes shares, in Redis: leases, fencing tokens, journals.

Per account, three keys with one hash tag (``{account}``), so that all of them
land in one slot and every script below stays single-slot on Redis Cluster:

* ``heirline:{acct}:lease`` -- the owner id of the process holding the account;
  ``SET NX PX ttl`` to acquire, renewed and released by scripts that compare
  the owner first (a process never extends or deletes another's lease);
* ``heirline:{acct}:token`` -- the fencing token: the newest generation ever
  granted for the account, fleet-wide. Only a script that finds the caller
  still holding the lease changes it, and only upwards;
* ``heirline:{acct}:journal`` -- a hash: ``meta`` (format, config
  fingerprint), ``now``, ``account`` (the counters), ``reply:<id>`` (open
  replies), ``ended:<id>`` (ended replies), ``pair:<pn>`` (PN<->LID pairs);
  ``heirline:{acct}:ended`` lists ended ids, newest first, to bound them.

A journal write is one script: it applies a step's changes only if the writer
still holds the lease **and** the token is still the one it was granted, so a
process that lost the account can never write it again. Records are the
core's own JSON forms (:func:`heirline.core.journal.to_json`), checked strictly
on the way back (:func:`~heirline.core.journal.from_json`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis

from heirline.adapters.journal import config_fingerprint
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

__all__ = ["Adopted", "FleetStore", "WriteRefused", "keys"]

_PREFIX: Final = "heirline"

# KEYS: lease. ARGV: owner, ttl_ms. 1 if the caller held it (now renewed), else 0.
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease. ARGV: owner. 1 if the caller held it (now deleted), else 0.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lease, token. ARGV: owner, generation. Grants only a generation newer than the token.
_GRANT: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'lease lost' end
local token = tonumber(redis.call('GET', KEYS[2]) or '0')
local g = tonumber(ARGV[2])
if g <= token then return 'generation ' .. ARGV[2] .. ' is not above token ' .. token end
redis.call('SET', KEYS[2], ARGV[2])
return 'ok'
"""

# KEYS: lease, token, journal, ended. ARGV: owner, fence, remember, meta, now, account,
# then n, n x (reply id, body), then n, n x (ended id, body), then n, n x (pn, lid).
_WRITE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'lease lost' end
local token = redis.call('GET', KEYS[2]) or '0'
if token ~= ARGV[2] then return 'token is ' .. token .. ', not ' .. ARGV[2] end
redis.call('HSET', KEYS[3], 'meta', ARGV[4], 'now', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[3], 'account', ARGV[6]) end
local i = 7
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[3], 'reply:' .. ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HDEL', KEYS[3], 'reply:' .. ARGV[i])
  if redis.call('HSET', KEYS[3], 'ended:' .. ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('LPUSH', KEYS[4], ARGV[i])
  end
  i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSETNX', KEYS[3], 'pair:' .. ARGV[i], ARGV[i + 1]); i = i + 2
end
local extra = redis.call('LLEN', KEYS[4]) - tonumber(ARGV[3])
for _ = 1, extra do
  redis.call('HDEL', KEYS[3], 'ended:' .. redis.call('RPOP', KEYS[4]))
end
return 'ok'
"""


def keys(account: str) -> tuple[str, str, str, str]:
    """``(lease, token, journal, ended)`` keys of ``account``: one hash tag, one slot."""
    tag = f"{_PREFIX}:{{{account}}}"
    return f"{tag}:lease", f"{tag}:token", f"{tag}:journal", f"{tag}:ended"


class WriteRefused(Exception):
    """A grant or journal write refused: the caller no longer holds the account (the reason)."""


@dataclass(frozen=True, slots=True)
class Adopted:
    """What a new owner reads after acquiring an account: its journal and its token."""

    snapshot: Snapshot
    token: int

    @property
    def floor(self) -> int:
        """The highest generation ever issued or granted: the next one must be above it."""
        issued = max((a.generation for a in self.snapshot.accounts), default=0)
        return max(issued, self.token)


class FleetStore:
    """The Redis side of a fleet member (``redis.asyncio``); one per process."""

    def __init__(self, client: aioredis.Redis, config: EngineConfig) -> None:
        self.client = client
        self.remember_ended = config.remember_ended
        self._meta = json.dumps({"format": FORMAT, "config": config_fingerprint(config)})
        self._fingerprint = config_fingerprint(config)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._grant = client.register_script(_GRANT)
        self._write = client.register_script(_WRITE)

    # ------------------------------------------------------------------ leases

    async def acquire(self, account: str, owner: str, ttl_ms: int) -> bool:
        """Take the lease if nobody holds it (``SET NX PX``)."""
        return bool(await self.client.set(keys(account)[0], owner, nx=True, px=ttl_ms))

    async def renew(self, account: str, owner: str, ttl_ms: int) -> bool:
        """Extend the lease by ``ttl_ms`` if ``owner`` still holds it."""
        return bool(await self._renew(keys=[keys(account)[0]], args=[owner, ttl_ms]))

    async def renew_many(self, accounts: list[str], owner: str, ttl_ms: int) -> list[bool]:
        """:meth:`renew` for many accounts in one round trip (a pipeline, not a transaction:
        each renewal is its own single-slot script)."""
        if not accounts:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for account in accounts:
                await self._renew(keys=[keys(account)[0]], args=[owner, ttl_ms], client=pipe)
            return [bool(held) for held in await pipe.execute()]

    async def unleased(self, accounts: list[str]) -> list[str]:
        """Those of ``accounts`` nobody holds a lease on right now (one round trip)."""
        if not accounts:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for account in accounts:
                pipe.exists(keys(account)[0])
            found = await pipe.execute()
        return [account for account, held in zip(accounts, found, strict=True) if not held]

    async def release(self, account: str, owner: str) -> bool:
        """Give the lease up if ``owner`` holds it."""
        return bool(await self._release(keys=[keys(account)[0]], args=[owner]))

    async def owner(self, account: str) -> str | None:
        """Who holds the lease now (``None``: nobody)."""
        value = await self.client.get(keys(account)[0])
        return None if value is None else _text(value)

    async def token(self, account: str) -> int:
        """The account's fencing token (0 if none was ever granted)."""
        value = await self.client.get(keys(account)[1])
        return 0 if value is None else int(_text(value))

    async def grant(self, account: str, owner: str, generation: int) -> None:
        """Make ``generation`` the account's token; :class:`WriteRefused` unless newer and owned."""
        lease, token, _, _ = keys(account)
        answer = _text(await self._grant(keys=[lease, token], args=[owner, generation]))
        if answer != "ok":
            raise WriteRefused(answer)

    # ------------------------------------------------------------------ journal

    async def write(self, account: str, owner: str, fence: int, changes: Changes) -> None:
        """Write one step's changes of ``account``: only while ``owner`` holds the lease
        and the token is still ``fence`` (else :class:`WriteRefused`, nothing written)."""
        args: list[str | int] = [owner, fence, self.remember_ended, self._meta]
        args.append(json.dumps(changes.now))
        counters = [a for a in changes.accounts if a.account == account]
        args.append(json.dumps(to_json(counters[-1])) if counters else "")
        replies = [r for r in changes.replies if r.account == account]
        args.append(len(replies))
        for reply in replies:
            args += [reply.reply_id, json.dumps(to_json(reply))]
        ended = [e for e in changes.ended if e.account == account]
        args.append(len(ended))
        for end in ended:
            args += [end.reply_id, json.dumps(to_json(end))]
        args.append(len(changes.mapping))
        for pn, lid in changes.mapping:
            args += [pn, lid]
        answer = _text(await self._write(keys=list(keys(account)), args=args))
        if answer != "ok":
            raise WriteRefused(answer)

    async def load(self, account: str) -> Adopted:
        """The account's journal and token, as a :class:`Snapshot` of that one account."""
        _, token_key, journal, ended_key = keys(account)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.get(token_key)
            pipe.hgetall(journal)
            pipe.lrange(ended_key, 0, -1)
            raw_token, fields, order = await pipe.execute()
        token = 0 if raw_token is None else int(_text(raw_token))
        return Adopted(self._snapshot(account, fields, order), token)

    def _snapshot(self, account: str, raw: dict[bytes, bytes], order: list[bytes]) -> Snapshot:
        where = f"journal of {account!r} in Redis"
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if not fields:
            return Snapshot(None, (), (), (), ())
        meta = _loads(where, fields.get("meta", "null"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise JournalError(f"{where}: format {meta!r}; this heirline reads format {FORMAT}")
        if meta.get("config") != self._fingerprint:
            raise JournalError(
                f"{where}: written by an engine with another configuration "
                f"(fingerprint {meta.get('config')}, this engine's {self._fingerprint})"
            )
        now = _loads(where, fields.get("now", "null"))
        if now is not None and (isinstance(now, bool) or not isinstance(now, int) or now < 0):
            raise JournalError(f"{where}: corrupt clock {now!r}")
        accounts = [_record(where, fields["account"], AccountRecord)] if "account" in fields else []
        replies = [_record(where, v, ReplyRecord) for k, v in fields.items() if k[:6] == "reply:"]
        ended_ids = [_text(i) for i in reversed(order)]
        missing = [i for i in ended_ids if f"ended:{i}" not in fields]
        if missing:
            raise JournalError(f"{where}: ended ids {missing[:3]} listed but not recorded")
        ended = [_record(where, fields[f"ended:{i}"], EndedRecord) for i in ended_ids]
        pairs = [(k[5:], v) for k, v in fields.items() if k[:5] == "pair:"]
        for record in (*accounts, *replies, *ended):
            if record.account != account:
                raise JournalError(f"{where}: holds a record of account {record.account!r}")
        return Snapshot(
            now,
            tuple(a for a in accounts if isinstance(a, AccountRecord)),
            tuple(r for r in replies if isinstance(r, ReplyRecord)),
            tuple(e for e in ended if isinstance(e, EndedRecord)),
            tuple(pairs),
        )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str | int):
        return str(value)
    raise JournalError(f"unexpected reply from Redis: {value!r}")


def _loads(where: str, text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise JournalError(f"{where}: corrupt record: {err}") from err


def _record(
    where: str, text: str, kind: type[AccountRecord | ReplyRecord | EndedRecord]
) -> AccountRecord | ReplyRecord | EndedRecord:
    record = from_json(_loads(where, text))
    if not isinstance(record, kind):
        raise JournalError(f"{where}: a {type(record).__name__} where a {kind.__name__} belongs")
    return record
