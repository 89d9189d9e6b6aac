"""Coverage-guided fuzzing of the policy loader with atheris (outside pytest).

``scripts/test.sh`` (and so ``.ci/run``) runs it for 30 s when atheris installs, seeded
with ``policies.example.yaml`` and with a 5 s per-input timeout, so a hang (a route
regex that backtracks) is a finding too. By hand:
``.venv/bin/pip install atheris && .venv/bin/python scripts/fuzz_policies_atheris.py -max_total_time=60``.
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
