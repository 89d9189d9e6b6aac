"""Keyed hashing of client identities.

Raw client keys (API keys, session cookies) are secrets, and IP addresses are
personal data; neither may reach Redis or a log line. Every key is replaced by a
keyed BLAKE2b digest before storage or logging. The key (``key_secret``) must be
the same on every process that shares a backend, and should be set from a secret
(``RATELIMIT_KEY_SECRET``) in production: with the public default, anyone who reads
the hashes could brute-force low-entropy keys such as IPv4 addresses.
"""

from __future__ import annotations

import hashlib
import os
from binascii import b2a_base64

__all__ = ["DEFAULT_KEY_SECRET", "KeyHasher"]

DEFAULT_KEY_SECRET = b"ratelimit_mw/v1"
_DIGEST_SIZE = 12  # 96 bits: collision odds ~1e-19 for 12k keys; 16 base64 chars in a key


class KeyHasher:
    """Turns a raw client key into a short, stable, URL-safe token.

    Args:
        secret: BLAKE2b key; ``None`` reads ``RATELIMIT_KEY_SECRET`` or uses the default.
    """

    __slots__ = ("_base", "_cache", "_cache_size")

    def __init__(self, secret: bytes | str | None = None, *, cache_size: int = 8192) -> None:
        if secret is None:
            secret = os.environ.get("RATELIMIT_KEY_SECRET") or DEFAULT_KEY_SECRET
        if isinstance(secret, str):
            secret = secret.encode()
        # BLAKE2b keys are at most 64 bytes; longer secrets are compressed first.
        if len(secret) > 64:
            secret = hashlib.blake2b(secret).digest()
        self._base = hashlib.blake2b(key=secret, digest_size=_DIGEST_SIZE)
        # BLAKE2b costs ~1 us in CPython; active clients repeat, so a bounded cache
        # of recent keys makes the common case a dict lookup. It lives only in this
        # process's memory, where the raw key already passed with the request.
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size

    def __call__(self, key: str) -> str:
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        h = self._base.copy()
        h.update(key.encode("utf-8", "surrogatepass"))
        token = b2a_base64(h.digest(), newline=False).decode("ascii").replace("+", "-").replace("/", "_")
        cache = self._cache
        if len(cache) >= self._cache_size:
            cache.clear()  # cheap, amortised; hot keys come straight back
        cache[key] = token
        return token
