"""Benchmark suite: ratelimit_mw side by side with its peers, in one run.

Run everything (about 6-8 minutes on a 2-core machine)::

    .venv/bin/python -m benchmarks.run --json bench.json

See ``benchmarks/README.md`` for the sections, the targets and the options.
"""
