"""heirline.core: the pure decision engine (no I/O, no clocks, no global state).

Time comes in as integer milliseconds, randomness as numbers the caller draws,
and everything observable leaves as an effect.
"""
