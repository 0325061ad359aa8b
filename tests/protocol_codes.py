"""The stable codes of ``rejected`` effects, read from the core's source and its error classes.

Shared by the protocol doc's test (every code has a row) and the vectors' test (every code a
host can meet over the wire is shown by a vector).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from heirline.core import errors
from heirline.core.health import HealthInputError
from heirline.core.journal import JournalError

ROOT = Path(__file__).resolve().parent.parent

#: Error classes whose ``code`` the engine never answers with: ``WireError`` and
#: ``ValidationError`` are raised by decoding (the server answers ``bad_event`` or
#: ``bad_hello`` as an error line), ``JournalError`` by
#: ``Engine.restore()`` to its caller, and ``Rejection`` names its code per instance (found
#: in the source below).
NOT_ENGINE_CODES: frozenset[type[errors.HeirlineError]] = frozenset(
    {errors.WireError, errors.ValidationError, JournalError, errors.Rejection}
)

#: Literal ``Rejection`` codes that never reach a ``rejected`` effect, and why.
NOT_REJECTED: dict[str, str] = {
    "account_exists": "raised by Engine.restore(), which turns it into a JournalError",
}

#: Codes the engine has but no wire host can meet, and why.
UNREACHABLE_OVER_THE_WIRE: dict[str, str] = {
    "unknown_event": "the server answers an unknown event type with an error line first",
    "now_backwards": "the server answers a now that goes backwards with an error line first",
    "bad_config": "the config is checked at the hello (bad_hello); handle() never builds one",
    "bad_health_input": "the engine builds the health policy's inputs itself",
}


def _error_classes() -> list[type[errors.HeirlineError]]:
    for path in sorted((ROOT / "core").glob("*.py")):  # every error class the core defines
        if path.stem != "__init__":
            importlib.import_module(f"heirline.core.{path.stem}")
    found: list[type[errors.HeirlineError]] = []
    todo: list[type[errors.HeirlineError]] = [errors.HeirlineError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def engine_rejection_codes() -> set[str]:
    """Every ``code`` a ``rejected`` effect of the engine can carry.

    The literal codes in ``core/*.py`` (``Rejection("...")``, ``Rejected("...")`` or
    ``Rejected(code="...")``,
    ``_carried(..., "...")``, ``code = "..." if ... else "..."``) and the ``code`` of every
    error class of the core (``Engine.handle`` answers a ``HeirlineError`` with its code).
    """
    source = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "core").glob("*.py")))
    codes = set(re.findall(r'\b_?Rejection\(\s*"(\w+)"', source))
    codes |= set(re.findall(r'Rejected\(\s*(?:code=)?"(\w+)"', source))
    codes |= set(re.findall(r'_carried\([^)]*"(\w+)"\)', source))
    for either in re.findall(r'code = "(\w+)" if .* else "(\w+)"', source):
        codes |= set(either)
    assert HealthInputError in _error_classes()  # the walk reaches every module's errors
    codes -= set(NOT_REJECTED)
    for cls in _error_classes():
        if cls is errors.HeirlineError or cls in NOT_ENGINE_CODES:
            continue
        if cls.__module__.startswith("heirline.core."):
            codes.add(cls.code)
    return codes
