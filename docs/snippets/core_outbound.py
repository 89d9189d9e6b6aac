from ratelimit_mw import Limiter
from ratelimit_mw.testing import FakeClock

clock = FakeClock()   # a real app passes nothing and really waits
limiter = Limiter("memory://", clock=clock)   # acquire() then waits on the fake clock

# Stay under a third-party quota: acquire() waits until the call is allowed.
for _ in range(12):
    limiter.acquire("geocoder", "10/second")
assert clock.now > 1_000_000.0  # the 11th and 12th calls waited
