"""Problem responses (RFC 9457 ``application/problem+json``) the limiter answers with.

A denial's body and headers depend on a few values only (the whole seconds to wait,
the violated limits, and for a custom template the numbers it shows), so each distinct
set is built once and remembered, bounded, with its policy set.
"""

from __future__ import annotations

import json
import string
from typing import Any, NamedTuple

from ratelimit_mw.core.decision import Decision
from ratelimit_mw.core.headers import retry_after_seconds

__all__ = ["QUOTA_EXCEEDED", "TEMPORARY_REDUCED_CAPACITY", "Rejection", "Rejections", "problem"]

QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
TEMPORARY_REDUCED_CAPACITY = "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
#: Most distinct 429 bodies remembered per policy set.
CACHE_SIZE = 1024

_Parts = tuple[bytes, list[tuple[str, str]], list[tuple[bytes, bytes]]]


class Rejection(NamedTuple):
    """A ready-to-send answer: status, header pairs (``str``, or latin-1 ``bytes``), body."""

    status: int
    headers: list[tuple[Any, Any]]
    body: bytes


def problem(body: bytes, content_type: str = "application/problem+json") -> _Parts:
    """A body with its own headers, in both encodings; never cached by clients."""
    own = [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    return body, own, [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in own]


class Rejections:
    """The denials of one policy set (its ``response:`` status, body and content type)."""

    __slots__ = ("cache", "content_type", "status", "template")

    def __init__(self, policies: Any) -> None:
        self.status: int = policies.response_status
        self.template: str | None = policies.response_body
        self.content_type: str = policies.response_content_type
        self.cache: dict[tuple[Any, ...], _Parts] = {}

    def __call__(self, decision: Decision, headers: list[tuple[Any, Any]], raw: bool) -> Rejection:
        """The answer to a denial; ``headers`` (the rate-limit headers) go after its own."""
        retry = retry_after_seconds(decision.retry_after)
        ident: tuple[Any, ...] = (retry, decision.violated)
        if self.template is not None:
            ident += (decision.limit, decision.remaining)
        parts = self.cache.get(ident)
        if parts is None:
            if len(self.cache) >= CACHE_SIZE:
                self.cache.clear()
            parts = self.cache[ident] = problem(self._body(decision, retry), self.content_type)
        return Rejection(self.status, [*(parts[2] if raw else parts[1]), *headers], parts[0])

    def _body(self, decision: Decision, retry: int) -> bytes:
        if self.template is None:
            return json.dumps(
                {"type": QUOTA_EXCEEDED, "title": "Too Many Requests", "status": self.status,
                 "detail": f"Rate limit exceeded; retry after {retry} seconds.",
                 "violated-policies": list(decision.violated), "retry_after": retry},
                separators=(",", ":"),
            ).encode()
        values = {"retry_after": retry, "limit": decision.limit, "remaining": decision.remaining,
                  "policy": ",".join(decision.violated), "status": self.status}
        return string.Template(self.template).safe_substitute(values).encode()
