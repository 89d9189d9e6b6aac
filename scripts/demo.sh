#!/usr/bin/env bash
# Installs the demo's dependencies (into .venv) and serves examples/fastapi_app.py on
# 127.0.0.1:8000 with policies.example.yaml and the in-memory backend.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
log=$(mktemp)
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[demo]' >"$log" 2>&1; then
  cat "$log" >&2; exit 1
fi
rm -f "$log"
echo "demo: http://127.0.0.1:${PORT:-8000}/resource (send X-API-Key); Ctrl-C to stop"
exec .venv/bin/python -m uvicorn examples.fastapi_app:app --host 127.0.0.1 --port "${PORT:-8000}"
