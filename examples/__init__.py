"""The example scenarios (``*.toml``), shipped in the package as ``heirline.examples``.

``heirline demo`` plays ``incident.toml`` and ``relink.toml``; ``heirline run``
plays any of them (``docs/scenarios.md``).
"""
