#!/usr/bin/env bash
# Installs everything the test suite needs (into .venv) and runs the whole suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Quiet install: pip's output goes to a log that is shown only if the install fails.
pip_install() {
  local log
  log=$(mktemp)
  if ! .venv/bin/python -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "pip install $* failed" >&2
    exit 1
  fi
  rm -f "$log"
}
pip_install --upgrade pip
pip_install -e '.[test]'
echo "== ruff"; .venv/bin/ruff check ratelimit_mw tests examples benchmarks
echo "== mypy (strict, package)"; .venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
