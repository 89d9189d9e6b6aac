"""The 429 a Flask view sees: a ``TooManyRequests`` carrying the decision.

Raised by the extension's ``before_request`` hook, so ``@app.errorhandler(429)``
(or ``errorhandler(TooManyRequests)``) renders it like any HTTP error; with no
handler, its response is the policy set's problem+json 429. The rate-limit headers
are added by the ``after_request`` hook either way, so a custom page keeps them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import TooManyRequests
from werkzeug.wrappers import Response

from ratelimit_mw.core.headers import retry_after_seconds

if TYPE_CHECKING:
    from ratelimit_mw.core.decision import Decision
    from ratelimit_mw.engine import Engine, Verdict

__all__ = ["RateLimitExceeded"]


class RateLimitExceeded(TooManyRequests):
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

    @property
    def decision(self) -> Decision:
        return self.verdict.decision

    @property
    def headers(self) -> list[tuple[str, str]]:
        return list(self.verdict.headers)

    def get_response(self, environ: Any = None, scope: Any = None) -> Response:
        """The policy set's 429: status, problem+json body (or its template), headers."""
        rejection = self.engine.rejection(self.verdict)
        return Response(rejection.body, status=rejection.status, headers=rejection.headers)
