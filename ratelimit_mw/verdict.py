"""What a route's plan answers for one limited request: the adapters act on it."""

from __future__ import annotations

from typing import Any, NamedTuple

from ratelimit_mw.core.decision import Decision
from ratelimit_mw.policy.model import Route

__all__ = ["CarriesVerdict", "Verdict"]


class Verdict(NamedTuple):
    """The answer of a plan for one limited request.

    Attributes:
        route: the matched route.
        decision: the limiter's decision.
        headers: header pairs to add (to the app's response, or to the 429): ``str``
            pairs, or lower-case latin-1 ``bytes`` pairs for a raw (ASGI) router.
        reject: answer 429 now instead of calling the app.
        delay: seconds to hold the request first (leaky bucket shaping).
        slot: with overload protection, the admitted request's
            :class:`~ratelimit_mw.overload.admission.Slot` (the adapter releases it when
            the response ends), or for a shed request its
            :class:`~ratelimit_mw.overload.admission.Shed` answer; else ``None``.
    """

    route: Route
    decision: Decision
    headers: list[tuple[Any, Any]]
    reject: bool
    delay: float
    slot: Any = None


class CarriesVerdict:
    """What the integrations' denial exceptions (Flask's 429 and 503, Django's
    ``RateLimited``) share: the decision and headers of the verdict they carry."""

    verdict: Verdict

    @property
    def decision(self) -> Decision:
        return self.verdict.decision

    @property
    def headers(self) -> list[tuple[str, str]]:
        return list(self.verdict.headers)
