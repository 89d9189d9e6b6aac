"""Sans-I/O core: rates, algorithms, decisions, header rendering, key hashing.

Nothing in this package performs I/O, logs, records metrics or reads a clock:
time is always an argument, so every behaviour is testable exactly.
"""
