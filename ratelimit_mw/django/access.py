"""How keys read a Django request: headers and peer from ``request.META``, the user
from ``request.user``.

``META`` holds the WSGI environ under WSGI and the same CGI-style names under ASGI,
so one Access serves both, and a DRF ``Request`` (which forwards ``META`` and gives
the token-authenticated ``user``) as well. Key functions receive the WSGI request
view over ``META`` with ``native`` set to the request itself, so one key function
serves the plain WSGI middleware and the Django integration.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from ratelimit_mw.core.keys import Access, UserUnavailable
from ratelimit_mw.requestview import WSGIRequest, environ_key

__all__ = ["DJANGO_REQUEST", "USER_ATTR", "django_user_id"]

#: Where the async middleware leaves the user it awaited (``request.auser()``): the
#: lazy ``request.user`` may not touch the database from the event loop.
USER_ATTR = "_ratelimit_mw_user"
_MISSING = object()


def django_user_id(request: Any) -> object | None:
    """The authenticated user's primary key, or ``None`` when anonymous.

    A request without ``user`` (no ``AuthenticationMiddleware`` before ours, no DRF
    authentication) raises :class:`UserUnavailable`: reported once per route, and
    the next entry of the key chain limits the request.
    """
    user = request.__dict__.get(USER_ATTR, _MISSING)
    if user is _MISSING:
        try:
            user = request.user
        except AttributeError:
            raise UserUnavailable(
                "the request has no 'user': list django.contrib.auth.middleware.AuthenticationMiddleware "
                "before ratelimit_mw.django.RateLimitMiddleware in MIDDLEWARE"
            ) from None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk  # type: ignore[no-any-return]


def _peer(request: Any) -> Any:
    return request.META.get("REMOTE_ADDR")


def _meta_value(key: str, request: Any) -> str | None:
    value = request.META.get(key)
    return value if type(value) is str else None


def _header(name: str) -> Callable[[Any], str | None]:
    return partial(_meta_value, environ_key(name))


def _view(request: Any) -> WSGIRequest:
    return WSGIRequest(request.META)


def _key_request(request: Any) -> WSGIRequest:
    return WSGIRequest(request.META, native=request)


#: Access over Django's ``HttpRequest`` (and DRF's ``Request``).
DJANGO_REQUEST = Access(_peer, _header, _view, _key_request, django_user_id)
