# mysite/tests.py: limits off for the suite, on (with a fake clock) where a test checks them
from django.test import TestCase, override_settings

from ratelimit_mw.testing import FakeClock


@override_settings(RATELIMIT_ENABLED=False)
class CheckoutTests(TestCase):
    def test_many_orders(self) -> None:
        for _ in range(50):
            self.assertEqual(self.client.get("/search").status_code, 200)


class LimitTests(TestCase):
    def test_the_sixth_search_is_refused(self) -> None:
        clock = FakeClock()
        with override_settings(RATELIMIT_BACKEND="memory://", RATELIMIT_LIMITER_OPTIONS={"clock": clock}):
            codes = [self.client.get("/search").status_code for _ in range(6)]
            self.assertEqual(codes[-1], 429)
            clock.advance(60)
            self.assertEqual(self.client.get("/search").status_code, 200)
