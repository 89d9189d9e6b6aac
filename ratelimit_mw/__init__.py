"""ratelimit_mw (exports restored at integration)."""
