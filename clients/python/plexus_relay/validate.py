"""Argument checks, as the library makes them (``src/util/validate.ts``, ``src/pubsub/subject.ts``):
each raises ``InvalidArgumentError`` naming the field, before anything is sent."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Dict, Optional, Union, cast

from .errors import InvalidArgumentError
from .wire import (
    MAX_HEADER_NAME_BYTES,
    MAX_HEADERS,
    MAX_HEADERS_BYTES,
    MAX_KEY_BYTES,
    MAX_MSG_ID_BYTES,
    MAX_TIMEOUT_MS,
    MAX_TOPIC_LENGTH,
)

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BAD_CHARS = re.compile(r"[\s\0]")

Payload = Union[bytes, bytearray, memoryview, str]


def describe(value: Any) -> str:
    """A short rendering of a bad value for an error message."""
    r = repr(value)
    return r if len(r) <= 80 else r[:77] + "..."


def name(value: Any, field: str) -> str:
    """Cluster and stream names: 1-64 characters of ``[A-Za-z0-9_-]``."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise InvalidArgumentError(f"{field} must be 1-64 characters of [A-Za-z0-9_-], got {describe(value)}")
    return value


def to_bytes(value: Any, field: str) -> bytes:
    """Bytes as they are, ``str`` as UTF-8; anything else is refused."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgumentError(f"{field} must be bytes or a str, got {describe(value)}")


def payload(value: Any, field: str, max_size: int) -> bytes:
    """Bytes as they are, ``str`` as UTF-8; at most ``max_size`` bytes."""
    b = to_bytes(value, field)
    if len(b) > max_size:
        raise InvalidArgumentError(f"{field} is {len(b)} bytes, over maxMessageSize ({max_size} bytes)")
    return b


def timeout_ms(value: Optional[float], field: str = "timeout") -> int:
    """A timeout in seconds (None: the node's default) as the wire's milliseconds (0 = default)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidArgumentError(f"{field} must be a positive number of seconds, got {describe(value)}")
    ms = max(1, round(value * 1000))
    if ms > MAX_TIMEOUT_MS:
        raise InvalidArgumentError(f"{field} must be at most {MAX_TIMEOUT_MS / 1000} seconds, got {describe(value)}")
    return ms


def u32(value: Any, field: str) -> int:
    """A limit: an int from 0 to 2^32 - 1 (0: the node's default)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise InvalidArgumentError(f"{field} must be an integer from 0 to 4294967295, got {describe(value)}")
    return value


def _tokens(value: Any, field: str, wildcards: bool) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TOPIC_LENGTH:
        raise InvalidArgumentError(
            f"{field} must be a non-empty string of at most {MAX_TOPIC_LENGTH} characters, got {describe(value)}"
        )
    if _BAD_CHARS.search(value):
        raise InvalidArgumentError(f"{field} must not contain whitespace: {describe(value)}")
    toks = value.split(".")
    for i, t in enumerate(toks):
        if t == "":
            raise InvalidArgumentError(f"{field} has an empty token: {describe(value)}")
        if t in ("*", ">"):
            if not wildcards:
                raise InvalidArgumentError(f"{field} must not contain wildcards (* or >) when publishing: {describe(value)}")
            if t == ">" and i != len(toks) - 1:
                raise InvalidArgumentError(f"{field}: '>' may only be the last token: {describe(value)}")
        elif "*" in t or ">" in t:
            raise InvalidArgumentError(f"{field}: wildcards must be whole tokens: {describe(value)}")


def topic(value: Any, field: str = "topic") -> str:
    """A topic to publish to: dot-separated tokens, no wildcards."""
    _tokens(value, field, False)
    return cast(str, value)


def pattern(value: Any, field: str = "pattern") -> str:
    """A subscription pattern: ``*`` one token, ``>`` (last) one or more."""
    _tokens(value, field, True)
    return cast(str, value)


def key(value: Any, field: str = "key") -> Optional[bytes]:
    """A message key (bytes or str), at most 32 KiB."""
    if value is None:
        return None
    b = to_bytes(value, field)
    if len(b) > MAX_KEY_BYTES:
        raise InvalidArgumentError(f"{field} is {len(b)} bytes, at most {MAX_KEY_BYTES} allowed")
    return b


def headers(value: Any, field: str = "headers") -> Optional[Dict[str, str]]:
    """At most 64 headers; names 1-256 bytes; names and values together at most 16 KiB."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"{field} must be a dict of str to str, got {describe(value)}")
    if len(value) > MAX_HEADERS:
        raise InvalidArgumentError(f"{field} may have at most {MAX_HEADERS} entries, got {len(value)}")
    total = 0
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgumentError(f"{field}: names and values must be str, got {describe(k)}: {describe(v)}")
        n = len(k.encode("utf-8"))
        if n == 0:
            raise InvalidArgumentError(f"{field}: a header name must not be empty")
        if n > MAX_HEADER_NAME_BYTES:
            raise InvalidArgumentError(
                f"{field}: header name {describe(k)} is {n} bytes, at most {MAX_HEADER_NAME_BYTES} allowed"
            )
        total += n + len(v.encode("utf-8"))
    if total > MAX_HEADERS_BYTES:
        raise InvalidArgumentError(f"{field} hold {total} bytes of names and values, at most {MAX_HEADERS_BYTES} allowed")
    return dict(value)


def msg_id(value: Any, field: str = "msg_id") -> Optional[str]:
    """A publish id: a non-empty str of at most 256 bytes of UTF-8."""
    if value is None:
        return None
    if not isinstance(value, str) or value == "":
        raise InvalidArgumentError(f"{field} must be a non-empty str, got {describe(value)}")
    n = len(value.encode("utf-8"))
    if n > MAX_MSG_ID_BYTES:
        raise InvalidArgumentError(f"{field} is {n} bytes, at most {MAX_MSG_ID_BYTES} allowed")
    return value


_HEX_KEY_RE = re.compile(r"^[0-9a-fA-F]{64}$")


def parse_key(value: Any, field: str) -> bytes:
    """A cluster key as its 32 bytes, by the library's rules (``src/util/parse-key.ts``): 64 hex
    characters; a passphrase of at least 16 characters (SHA-256 under a domain tag); or raw
    bytes, at least 16 (32 as they are, others hashed)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        b = bytes(value)
        if len(b) < 16:
            raise InvalidArgumentError(f"{field} must be at least 16 bytes, got {len(b)}")
        return b if len(b) == 32 else hashlib.sha256(b"plexus-key-bytes\0" + b).digest()
    if isinstance(value, str):
        s = value.strip()
        if _HEX_KEY_RE.match(s):
            return bytes.fromhex(s)
        if len(s) >= 16:
            return hashlib.sha256(b"plexus-key-passphrase\0" + s.encode("utf-8")).digest()
        raise InvalidArgumentError(
            f"{field} must be a key from `plexus keygen` (64 hex characters) or a passphrase of at least 16 characters"
        )
    raise InvalidArgumentError(f"{field} must be a str or bytes key, got {describe(value)}")
