"""``uvicorn benchmarks.targets.starlette_env:app`` with ``BENCH_APP`` and ``BENCH_STORAGE`` set."""

from benchmarks.apps import from_env

app = from_env()
