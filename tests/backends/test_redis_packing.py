"""Coalesced batches are packed by hiredis when it encodes exactly as redis-py would."""

from __future__ import annotations

from typing import Any

import redis.asyncio
from hypothesis import given
from hypothesis import strategies as st

from ratelimit_mw.backends.redis_channel import _pack

ARG = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _connection(**options: Any) -> Any:
    return redis.asyncio.Redis(**options).connection_pool.make_connection()


@given(st.lists(ARG, min_size=1, max_size=20))
def test_hiredis_packing_is_redis_pys(args: list[Any]) -> None:
    conn = _connection()
    command = ("EVALSHA", *args)
    packed = _pack(conn, command)
    assert isinstance(packed, bytes)  # the C packer was used
    assert packed == b"".join(conn.pack_command(*command))


def test_other_encodings_keep_redis_pys_packer() -> None:
    conn = _connection(encoding="latin-1")
    packed = _pack(conn, ("EVAL", "é"))
    assert packed == b"".join(conn.pack_command("EVAL", "é"))  # redis-py's packer: hiredis would write UTF-8
    assert packed.endswith(b"$1\r\n\xe9\r\n")
