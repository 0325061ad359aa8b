"""Shared helpers of the engine tests: a recording run, effect filters, a state fingerprint.

Nothing here judges the engine: the helpers feed events and collect what came
back; every expectation is written out by hand in the tests themselves.
"""

from __future__ import annotations

import io
import pickle
import random
import types
from collections.abc import Iterable
from typing import TypeVar

from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.engine import Engine, EngineConfig
from heirline.core.health import HealthConfig
from heirline.core.identity import LidMapping
from heirline.core.lifecycle import LifecycleConfig
from heirline.core.policy import StatusPolicy

PN = "4915123456789@s.whatsapp.net"
PN_DEVICE = "4915123456789:12@s.whatsapp.net"
LID = "123456789012345@lid"
OTHER_PN = "4917000000001@s.whatsapp.net"
GROUP = "120363025555555555@g.us"
ACCOUNT = "default"

T = TypeVar("T")

T0 = 43_239_242  # 12:00:39.242, the inbound message of the incident


class Run:
    """An engine plus the effects it produced, fed at explicit virtual times."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        mapping: LidMapping | None = None,
        seed: int = 1,
    ) -> None:
        self.engine = Engine(config, random=random.Random(seed).random, mapping=mapping)
        self.effects: list[fx.Effect] = []

    def at(self, now: int, *events: ev.Event) -> list[fx.Effect]:
        out: list[fx.Effect] = []
        for event in events:
            out += self.engine.handle(event, now)
        self.effects += out
        return out

    def transmits(self) -> list[fx.Transmit]:
        return of(fx.Transmit, self.effects)

    def outcomes(self) -> list[fx.ReplyDelivered | fx.ReplyFailed]:
        return [e for e in self.effects if isinstance(e, fx.ReplyDelivered | fx.ReplyFailed)]


def of(kind: type[T], effects: Iterable[fx.Effect]) -> list[T]:
    """The effects of one type, in order."""
    return [e for e in effects if isinstance(e, kind)]


def codes(effects: Iterable[fx.Effect]) -> list[str]:
    """The codes of the logs and rejections among ``effects``, in order."""
    return [e.code for e in effects if isinstance(e, fx.Log | fx.Rejected)]


def rejected(effects: list[fx.Effect]) -> str | None:
    """The code if ``effects`` is exactly one ``Rejected``; ``None`` if there is no rejection.

    Fails the test if a rejection comes with anything else (a rejection is all-or-nothing).
    """
    rejections = of(fx.Rejected, effects)
    if not rejections:
        return None
    assert effects == rejections[:1], f"a rejection must come alone: {effects!r}"
    return rejections[0].code


def incident_config(reply_deadline_ms: int = 300_000, max_transmissions: int = 5) -> EngineConfig:
    """openclaw's monitor: no retry grace, no start-up grace in the way of the story."""
    return EngineConfig(
        health=HealthConfig(retry_grace_ms=None, startup_grace_ms=0),
        reply_deadline_ms=reply_deadline_ms,
        max_transmissions=max_transmissions,
    )


# ------------------------------------------------------------ the state fingerprint

_SHARED = (EngineConfig, LifecycleConfig, HealthConfig, StatusPolicy)


class _Pickler(pickle.Pickler):
    """Pickles an engine whole; immutable configs, mappings and functions by a stable token.

    The random source is a bound method of a ``random.Random`` in every test
    that fingerprints, so its position in the stream is part of the bytes.
    """

    def persistent_id(self, obj: object) -> object:
        if isinstance(obj, _SHARED):
            return ("shared", type(obj).__name__, repr(obj))
        if isinstance(obj, LidMapping):  # its read-only views do not pickle; its pairs say all
            return ("mapping", obj.pairs)
        if isinstance(obj, types.FunctionType):
            return ("function", obj.__qualname__)
        return None


def fingerprint(engine: Engine) -> bytes:
    """Every bit of the engine's state (clocks, counters, random position) as bytes."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(engine)
    return buf.getvalue()


def queries(engine: Engine, accounts: Iterable[str], replies: Iterable[str]) -> tuple[object, ...]:
    """What the public queries say about ``accounts`` and ``replies``."""
    out: list[object] = [
        engine.open_replies(),
        engine.in_flight(),
        engine.watched(),
        engine.shut_down,
        engine.mapping.pairs,
    ]
    for account in accounts:
        gens = engine.generations(account)
        out.append((account, engine.current(account), gens))
        for g in gens:
            out.append(
                (
                    engine.controller_state(account, g),
                    engine.controller_socket(account, g),
                    engine.controller_identity(account, g),
                )
            )
    out.extend(engine.reply_state(r) for r in replies)
    return tuple(out)
