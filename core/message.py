"""The shape every event and effect shares: a small, immutable, slotted record.

:func:`message` is the one decorator both :mod:`heirline.core.events` and
:mod:`heirline.core.effects` declare their classes with, so how a message is
built (it is the hot path: one or more per ``Engine.handle`` call) is decided
in one place. ``type`` (a class variable) is the tag of the JSON form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

_C = TypeVar("_C")


@dataclass_transform(frozen_default=True, kw_only_default=True)
def message(cls: type[_C]) -> type[_C]:
    """Make ``cls`` an immutable, slotted, keyword-only dataclass."""
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)
