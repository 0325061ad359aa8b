"""The shape every event and effect shares: a small, immutable, slotted record.

:func:`message` is the one decorator both :mod:`heirline.core.events` and
:mod:`heirline.core.effects` declare their classes with, so how a message is
built (it is the hot path: one or more per ``Engine.handle`` call) is decided
in one place. ``type`` (a class variable) is the tag of the JSON form.

Immutability is enforced where it costs nothing: the type checker treats every
message as frozen (``dataclass_transform(frozen_default=True)``), so assigning
a field is a type error. At run time the classes are plain slotted dataclasses:
a frozen dataclass sets every field through ``object.__setattr__`` and costs
about twice as much to build, and building messages is most of what a
lifecycle event costs. Equality compares fields; messages are not hashable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

_C = TypeVar("_C")


@dataclass_transform(frozen_default=True)
def message(cls: type[_C]) -> type[_C]:
    """Make ``cls`` a slotted dataclass the type checker treats as frozen."""
    return dataclass(slots=True)(cls)
