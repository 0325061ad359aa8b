"""The engine configuration as a document: one builder for ``serve --stdio`` and scenarios.

The stdio hello's ``config`` object and a scenario's ``[engine]`` table are the
same document, read by :func:`build_config` and described by
:func:`config_schema`, both generated from the config dataclasses
(:mod:`heirline.core.codec`):

* every :class:`~heirline.core.config.EngineConfig` field, by its name, except
  ``lifecycle`` and ``health`` (built from the parts below) and ``journal``
  (nothing in a session or a scenario takes the changes it records);
* ``log_level`` by its lowercase name: ``"debug"``, ``"info"``, ``"warning"``,
  ``"error"`` or ``"off"``;
* ``watchdog_ms``, the one :class:`~heirline.core.lifecycle.LifecycleConfig`
  field offered (the transport watchdog);
* ``health`` (:class:`~heirline.core.health.HealthConfig`) and ``backoff``
  (:class:`~heirline.core.backoff.BackoffConfig`), objects (TOML tables) of
  their own fields.

A field that may be null (``retry_grace_ms``, ``watchdog_ms``: "off") also takes
``false``, in JSON as in TOML, which has no null. Absent fields keep their
defaults. Every problem is one :class:`~heirline.core.errors.ValidationError`
naming the field's path (``health.retry_grace_ms``); the callers put their own
root in front (``hello.config``, ``engine``).
"""

from __future__ import annotations

import dataclasses
from typing import Final

from heirline.core.backoff import BackoffConfig
from heirline.core.codec import Field, Record
from heirline.core.config import EngineConfig
from heirline.core.errors import ValidationError
from heirline.core.health import HealthConfig
from heirline.core.lifecycle import LifecycleConfig

__all__ = ["CONFIG", "LIFTED_FIELDS", "SECTIONS", "SKIPPED_FIELDS", "build_config", "config_schema"]

#: EngineConfig fields the document does not take directly.
SKIPPED_FIELDS: Final = frozenset({"lifecycle", "health", "journal"})
#: LifecycleConfig fields offered at the top level of the document.
LIFTED_FIELDS: Final = ("watchdog_ms",)
#: The nested objects of the document, each one config dataclass.
SECTIONS: Final[dict[str, type]] = {"health": HealthConfig, "backoff": BackoffConfig}


def _engine_config(**fields: object) -> EngineConfig:
    health = fields.pop("health", None)
    backoff = fields.pop("backoff", None)
    lifted = {name: fields.pop(name) for name in LIFTED_FIELDS if name in fields}
    lifecycle = LifecycleConfig(
        backoff=backoff if isinstance(backoff, BackoffConfig) else BackoffConfig(),
        **lifted,  # type: ignore[arg-type]
    )
    return EngineConfig(
        **fields,  # type: ignore[arg-type]
        health=health if isinstance(health, HealthConfig) else HealthConfig(),
        lifecycle=lifecycle,
    )


def _record() -> Record:
    engine = Record.of(EngineConfig, skip=SKIPPED_FIELDS, false_is_null=True)
    others = frozenset(f.name for f in dataclasses.fields(LifecycleConfig)) - set(LIFTED_FIELDS)
    lifecycle = Record.of(LifecycleConfig, skip=others, false_is_null=True)
    fields = [
        *engine.fields,
        *(lifecycle.by_name[name] for name in LIFTED_FIELDS),
        *(
            Field(name, Record.of(cls, false_is_null=True), required=False)
            for name, cls in SECTIONS.items()
        ),
    ]
    doc = (EngineConfig.__doc__ or "").strip().splitlines()[0]
    return Record(fields, _engine_config, title="EngineConfig", description=doc)


#: The shape of the configuration document.
CONFIG: Final = _record()


def build_config(data: object) -> EngineConfig:
    """The engine configuration a document asks for; :class:`ValidationError` if it is bad."""
    config = CONFIG.decode(data)
    if not isinstance(config, EngineConfig):  # pragma: no cover - CONFIG builds EngineConfig
        raise ValidationError("not an engine configuration")
    return config


def config_schema() -> dict[str, object]:
    """The JSON Schema of the configuration document."""
    return CONFIG.schema()
