"""heirline.core's public API: what ``__all__`` promises exists and is documented."""

from __future__ import annotations

import heirline.core as core


def test_every_public_name_exists_and_is_documented() -> None:
    for name in core.__all__:
        assert hasattr(core, name), name
        value = getattr(core, name)
        if isinstance(value, type) or callable(value):
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_the_public_api_names_every_event_and_effect() -> None:
    exported = {getattr(core, n) for n in core.__all__ if isinstance(getattr(core, n), type)}
    assert set(core.EVENT_TYPES) <= exported
    assert set(core.EFFECT_TYPES) <= exported


def test_all_is_sorted_and_has_no_repeats() -> None:
    assert core.__all__ == sorted(set(core.__all__), key=lambda n: (not n.isupper(), n))


def test_the_version_is_a_release_number() -> None:
    major, minor, patch = core.__version__.split(".")
    assert all(part.isdigit() for part in (major, minor, patch))
