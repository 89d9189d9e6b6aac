"""One module per section; each has NAME, TITLE and run(ctx) -> SectionResult (see benchmarks/run.py)."""
