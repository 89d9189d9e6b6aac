"""Suite-wide fixtures: real Redis/Valkey servers (started on free loopback ports)."""

pytest_plugins = ["tests.support.redis_fixtures"]
