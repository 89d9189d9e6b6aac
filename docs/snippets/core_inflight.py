from ratelimit_mw import Limiter

limiter = Limiter("memory://")  # on Redis, each slot is a lease (renewed while held)


def run_report(user: str) -> str:
    decision = limiter.check(user, "2 concurrent; lease=15s")  # at most 2 at once per user
    if not decision.allowed:
        return f"busy, retry in {decision.retry_after:.0f}s"
    try:
        return "report"  # the work
    finally:
        decision.lease.release()  # the slot goes back (again and again: once)


assert run_report("user-42") == "report"
held = [limiter.check("user-42", "2 concurrent; lease=15s") for _ in range(2)]
assert run_report("user-42").startswith("busy")
for decision in held:
    decision.lease.release()
assert run_report("user-42") == "report"
