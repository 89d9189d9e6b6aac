"""Load-test the demo app (or yours) with Locust, using the seed's traffic model.

For users who load-test with Locust (``pip install locust``; it is not a
dependency of ratelimit_mw). Start the demo app, then::

    locust -f examples/locustfile.py --host http://127.0.0.1:8000 --headless --run-time 60s

The model (the same as ``python -m benchmarks.run --only seed``): 12,000 API keys
drawn from a Zipf distribution (a few heavy clients, many light ones), 500 req/s
steady with a 4-second burst at 1,200 req/s every 20 seconds. Each simulated
user sends about one request per second (``constant_throughput(1)``), so the
shape below sets the rate through the number of users; Locust needs enough CPU
to keep up (``--processes`` helps at 1,200 req/s).

429 answers are expected and are not failures: they are reported under the
name ``GET /resource [429]``, so Locust's table shows allowed and limited
requests side by side. A 200 without ``X-RateLimit-Remaining`` (the limiter
failed open because its backend did not answer) is reported as a failure.

Environment: ``SEED_KEYS`` (12000), ``SEED_STEADY`` (500), ``SEED_BURST`` (1200),
``SEED_PERIOD`` (20 s between burst starts), ``SEED_BURST_SECONDS`` (4),
``SEED_PATH`` (/resource).
"""

from __future__ import annotations

import bisect
import itertools
import os
import random

from locust import FastHttpUser, LoadTestShape, constant_throughput, task

KEYS = int(os.environ.get("SEED_KEYS", "12000"))
STEADY = int(os.environ.get("SEED_STEADY", "500"))
BURST = int(os.environ.get("SEED_BURST", "1200"))
PERIOD = float(os.environ.get("SEED_PERIOD", "20"))
BURST_SECONDS = float(os.environ.get("SEED_BURST_SECONDS", "4"))
PATH = os.environ.get("SEED_PATH", "/resource")

#: Zipf(1) over the keys: key rank r is drawn with probability proportional to 1/r.
_CUMULATIVE = list(itertools.accumulate(1 / rank for rank in range(1, KEYS + 1)))


def zipf_key(rng: random.Random) -> str:
    """An API key drawn from the Zipf distribution over ``KEYS`` keys."""
    rank = bisect.bisect_left(_CUMULATIVE, rng.random() * _CUMULATIVE[-1])
    return f"key-{min(rank, KEYS - 1)}"


class ApiClient(FastHttpUser):
    """One simulated client connection, ~1 request per second, a Zipf-drawn key each time."""

    wait_time = constant_throughput(1)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task
    def resource(self) -> None:
        key = zipf_key(self.rng)
        with self.client.get(PATH, headers={"X-API-Key": key}, name=f"GET {PATH}", catch_response=True) as response:
            if response.status_code == 429:
                response.request_meta["name"] = f"GET {PATH} [429]"
                response.success()
            elif response.status_code == 200 and "X-RateLimit-Remaining" not in response.headers:
                response.failure("200 without X-RateLimit-Remaining: the limiter failed open")
            elif response.status_code != 200:
                response.failure(f"unexpected status {response.status_code}")


class SeedShape(LoadTestShape):
    """Steady users; the last ``BURST_SECONDS`` of every ``PERIOD`` seconds are a burst."""

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        in_burst = (elapsed % PERIOD) >= PERIOD - BURST_SECONDS
        users = BURST if in_burst else STEADY
        return users, float(users)  # spawn a whole step within a second
