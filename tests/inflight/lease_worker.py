"""A worker process holding in-flight slots on Redis, for the crash tests.

``python -m tests.inflight.lease_worker URL LIMIT HOLD``: takes ``HOLD`` slots of
``LIMIT`` on the key ``worker-test``, prints ``ready``, then waits for a line on stdin:
``release`` gives them back and prints ``released lost=<n> expired=<n>``.
"""

from __future__ import annotations

import sys

from ratelimit_mw import Limiter


def main() -> None:
    url, limit, hold = sys.argv[1], sys.argv[2], int(sys.argv[3])
    limiter = Limiter(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    leases = []
    for _ in range(hold):
        decision = limiter.check("worker-test", limit)
        assert decision.allowed, decision
        leases.append(decision.lease)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "release":
            for lease in leases:
                lease.release()
            limiter.flush_leases()
            stats = limiter.lease_stats
            print(f"released lost={stats.lost} expired={stats.expired}", flush=True)
            return


if __name__ == "__main__":
    main()
