"""The 429 a Flask view sees (a ``TooManyRequests`` carrying the decision), and the
503 of a request shed by overload protection (a ``ServiceUnavailable``).

Raised by the extension's ``before_request`` hook, so ``@app.errorhandler(429)``
(or ``errorhandler(TooManyRequests)``) renders a denial like any HTTP error, and
``errorhandler(503)`` a shed one: each has its own class, so a 429 page never
answers a shed. With no handler, the response is the policy set's problem+json 429,
or the 503 problem. The rate-limit headers are added by the ``after_request`` hook
either way, so a custom page keeps them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import ServiceUnavailable, TooManyRequests
from werkzeug.wrappers import Response

from ratelimit_mw.core.headers import retry_after_seconds
from ratelimit_mw.verdict import CarriesVerdict

if TYPE_CHECKING:
    from ratelimit_mw.engine import Engine, Verdict

__all__ = ["Overloaded", "RateLimitExceeded"]


class _Answered(CarriesVerdict):
    """The engine's answer to the verdict (the 429, or a shed request's 503), as the
    response werkzeug sends when no error handler renders the exception."""

    engine: Engine

    def get_response(self, environ: Any = None, scope: Any = None) -> Response:
        rejection = self.engine.rejection(self.verdict)
        return Response(rejection.body, status=rejection.status, headers=rejection.headers)


class RateLimitExceeded(_Answered, TooManyRequests):
    """A request denied by a limit (YAML route, ``@limiter.limit`` or a blueprint limit).

    Attributes:
        verdict: the denying check's verdict (route, decision, headers).
        decision: its :class:`~ratelimit_mw.Decision` (``retry_after``, ``limit``, ...).
        headers: the rate-limit headers, ``Retry-After`` included.
    """

    def __init__(self, verdict: Verdict, engine: Engine) -> None:
        self.verdict = verdict
        self.engine = engine
        retry = retry_after_seconds(verdict.decision.retry_after)
        super().__init__(f"Rate limit exceeded; retry after {retry} seconds.")


class Overloaded(_Answered, ServiceUnavailable):
    """A request shed by overload protection (``overload:``): 503, not 429.

    Attributes:
        verdict: the shed verdict (its ``slot`` is the pre-built 503 answer).
        decision: its :class:`~ratelimit_mw.Decision`.
        headers: the rate-limit headers (none for a shed: the app's limits were not checked).
    """

    def __init__(self, verdict: Verdict, engine: Engine) -> None:
        self.verdict = verdict
        self.engine = engine
        super().__init__("The service is overloaded; retry later.")
