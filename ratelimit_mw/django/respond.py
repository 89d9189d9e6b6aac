"""Responses: the 429 (the site's ``RATELIMIT_VIEW`` or the policy set's), the headers
added to every limited response, and ``request.ratelimit``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ratelimit_mw import log
from ratelimit_mw.core.headers import retry_after_seconds
from ratelimit_mw.declared import stricter
from ratelimit_mw.verdict import CarriesVerdict

if TYPE_CHECKING:
    from django.http import HttpResponseBase

    from ratelimit_mw.django.conf import DjangoLimits
    from ratelimit_mw.engine import Verdict

__all__ = ["DECISION_ATTR", "RateLimited", "add_headers", "denied", "record", "release_now", "release_when_sent"]

#: ``request.ratelimit``: the decision the view sees (``None``: nothing limited it).
DECISION_ATTR = "ratelimit"
#: The verdicts of this request so far (middleware, decorators, throttles): the
#: stricter one's headers go on the response.
VERDICT_ATTR = "_ratelimit_mw_verdict"
#: Set by the middleware: it adds the headers, so decorators and throttles need not.
MIDDLEWARE_ATTR = "_ratelimit_mw_middleware"
#: Overload slots (``overload:``) the request holds, given back when its response is sent.
SLOTS_ATTR = "_ratelimit_mw_slots"


class RateLimited(CarriesVerdict, Exception):
    """What ``RATELIMIT_VIEW`` receives as its ``exception`` argument (as with
    django-ratelimit's ``Ratelimited``): the denial, its decision and headers."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.retry_after = retry_after_seconds(verdict.decision.retry_after)
        super().__init__(f"Rate limit exceeded; retry after {self.retry_after} seconds.")


def _http_request(request: Any) -> Any:
    """The ``HttpRequest`` under a DRF ``Request`` (its attributes are its own)."""
    return request.__dict__.get("_request", request)


def record(request: Any, verdict: Verdict) -> None:
    """Keep the stricter verdict of the request and show its decision as ``request.ratelimit``."""
    target = _http_request(request)
    if verdict.slot is not None and not verdict.reject:
        target.__dict__.setdefault(SLOTS_ATTR, []).append(verdict.slot)
    best = stricter(target.__dict__.get(VERDICT_ATTR), verdict)
    target.__dict__[VERDICT_ATTR] = best
    setattr(target, DECISION_ATTR, best.decision)
    if target is not request:
        setattr(request, DECISION_ATTR, best.decision)


def recorded(request: Any) -> Verdict | None:
    verdict: Verdict | None = _http_request(request).__dict__.get(VERDICT_ATTR)
    return verdict


def release_when_sent(request: Any, response: Any) -> None:
    """Give the request's overload slots back when Django closes the response (after
    the last byte, streamed or not); a 503 or 504 counts as a failed sample."""
    slots: list[Any] | None = _http_request(request).__dict__.pop(SLOTS_ATTR, None)
    if not slots:
        return
    failed = getattr(response, "status_code", 0) in (503, 504)

    def release() -> None:
        for slot in slots:
            slot.release(failed)

    closers = getattr(response, "_resource_closers", None)  # what HttpResponseBase.close() runs
    if isinstance(closers, list):
        closers.append(release)
    else:
        release()


def release_now(request: Any) -> None:
    """Give the slots back at once (no response to wait for: a throttle without the middleware)."""
    for slot in _http_request(request).__dict__.pop(SLOTS_ATTR, None) or ():
        slot.release(False, False)


def add_headers(response: HttpResponseBase, headers: list[tuple[str, str]]) -> HttpResponseBase:
    """Add the rate-limit headers, except names the response already has (a view's own wins)."""
    present = response.headers
    for name, value in headers:
        if name not in present:
            present[name] = value
    return response


def denied(request: Any, verdict: Verdict, state: DjangoLimits) -> HttpResponseBase:
    """The 429: ``RATELIMIT_VIEW(request, exception)`` with the headers added, else the
    policy set's. A site view that fails is logged and the policy set's 429 is sent:
    a denial never becomes a 500."""
    from django.http import HttpResponse, HttpResponseBase

    record(request, verdict)
    if state.view is not None and verdict.slot is None:  # a shed request (overload) is the 503
        try:
            response = state.view(_http_request(request), RateLimited(verdict))
        except Exception as exc:
            log.logger.exception(log.INTERNAL_ERROR, error=type(exc).__name__, path=str(request.path))
        else:
            if isinstance(response, HttpResponseBase):
                return add_headers(response, verdict.headers)
            log.logger.error(log.INTERNAL_ERROR, error="TypeError", path=str(request.path),
                             detail=f"RATELIMIT_VIEW returned {type(response).__name__}, not an HttpResponse")
    rejection = state.engine.rejection(verdict)
    response = HttpResponse(rejection.body, status=rejection.status)
    for name, value in rejection.headers:
        response.headers[name] = value
    return response
