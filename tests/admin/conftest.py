"""The admin API's ``engine`` and ``call`` fixtures, shared with the hardening tests."""

from tests.admin.test_admin_api import call, engine

__all__ = ["call", "engine"]
