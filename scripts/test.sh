#!/usr/bin/env bash
# Installs everything the test suite needs (into .venv) and runs the whole suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "== ruff"; .venv/bin/ruff check ratelimit_mw tests examples benchmarks
echo "== mypy (strict, package)"; .venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
