"""Coverage-guided fuzzing of the policy loader with atheris (optional, outside the suite).

Run: ``.venv/bin/pip install atheris && .venv/bin/python scripts/fuzz_policies_atheris.py -max_total_time=60``.
Any exception other than a handled ``PolicyError`` is a finding: atheris stops and
writes the input that caused it.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from ratelimit_mw.errors import PolicyError
    from ratelimit_mw.policy.loader import load_policies


def one_input(data: bytes) -> None:
    """Load the bytes as a document: only a located PolicyError may come out."""
    text = data.decode("utf-8", "replace") + "\n"  # the newline: never read as a file path
    try:
        load_policies(text, env={})
    except PolicyError as exc:
        if exc.reason.startswith("unexpected error"):
            raise


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
