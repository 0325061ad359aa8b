"""heirline.core: the pure decision engine (no I/O, no clocks, no global state).

Time comes in as integer milliseconds, randomness as numbers the caller draws,
and everything observable leaves as an effect.
"""

__version__ = "0.2.0"
"""heirline's version: the one place it is written (pyproject.toml reads it from here)."""
