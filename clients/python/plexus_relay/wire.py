"""The relay wire protocol (docs/relay-protocol.md, version 2): opcodes, limits and the
binary codec. Big-endian; ``str`` is a u16 byte length then UTF-8, ``bytes`` a u32 length
then raw bytes; every frame is ``u32 length | u8 opcode | u32 correlation id | body`` where
``length`` counts the bytes after itself (so it is at least 5).
"""

from __future__ import annotations

import struct
from typing import Dict, List, Optional, Tuple

from .errors import RelayUnavailableError

#: Protocol version this package speaks (HELLO / WELCOME).
PROTOCOL_VERSION = 2
#: The four bytes every HELLO starts with.
MAGIC = b"PLXR"
#: Correlation id of connection-level frames (handshake, fatal errors).
CONNECTION_ID = 0
#: Bytes a frame may carry beyond its payload (names, key, headers): max frame = max message size + this.
FRAME_OVERHEAD = 64 * 1024
#: Max message size assumed until WELCOME says otherwise.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
#: Longest timeout the node accepts, in milliseconds (2^31 - 1); longer ones are refused, never shortened.
MAX_TIMEOUT_MS = 2**31 - 1
#: Message limits shared by the library, the relay and its clients ("Message limits").
MAX_KEY_BYTES = 32 * 1024
MAX_HEADERS = 64
MAX_HEADER_NAME_BYTES = 256
MAX_HEADERS_BYTES = 16 * 1024
MAX_MSG_ID_BYTES = 256
MAX_TOPIC_LENGTH = 1024


class Op:
    """Opcodes ("Opcodes" table). Dispatch on these first, then on the correlation id."""

    HELLO = 0x01
    WELCOME = 0x02
    REFUSE = 0x03
    PING = 0x04
    PONG = 0x05
    OK = 0x08
    ERROR = 0x09
    REQUEST = 0x10
    REPLY = 0x11
    CANCEL = 0x12
    REQUEST_HEADERS = 0x13
    REPLY_HEADERS = 0x14
    REQUEST_MANY = 0x15
    MANY_REPLY = 0x16
    JOIN = 0x18
    LEAVE = 0x19
    INVOKE = 0x20
    INVOKE_REPLY = 0x21
    INVOKE_ERROR = 0x22
    INVOKE_CANCEL = 0x23
    INVOKE_HEADERS = 0x24
    INVOKE_REPLY_HEADERS = 0x25
    STATUS = 0x28
    STATUS_REPLY = 0x29
    BROADCAST = 0x30
    BROADCAST_DELIVER = 0x31
    BROADCAST_ACK = 0x32
    SUBSCRIBE = 0x40
    UNSUBSCRIBE = 0x41
    MESSAGE = 0x42
    PUBLISH = 0x43
    PUBLISH_ACK = 0x44
    FLUSH = 0x45
    TUNNEL_OPEN = 0x50
    TUNNEL_OPENED = 0x51
    TUNNEL_INCOMING = 0x52
    TUNNEL_DATA = 0x53
    TUNNEL_CREDIT = 0x54
    TUNNEL_CLOSE = 0x55
    STREAM_CREATE = 0x60
    STREAM_INFO = 0x61
    STREAM_INFO_REPLY = 0x62
    STREAM_DELETE = 0x63
    STREAM_LIST = 0x64
    STREAM_LIST_REPLY = 0x65
    STREAM_ADMIN = 0x66
    STREAM_ADMIN_REPLY = 0x67
    CONSUME = 0x68
    CONSUME_MESSAGE = 0x69
    CONSUME_CREDIT = 0x6A
    CONSUME_CLOSE = 0x6B
    CONSUME_ACK = 0x6C
    CONSUME_NAK = 0x6D
    CONSUME_TERM = 0x6E
    CONSUME_WORKING = 0x6F
    CONSUME_START = 0x70
    CONSUME_FETCH = 0x71
    KV_CALL = 0x78
    KV_REPLY = 0x79
    KV_WATCH = 0x7A
    KV_CHANGE = 0x7B
    KV_WATCH_CLOSE = 0x7C
    STREAM_READ = 0x7D
    STREAM_READ_REPLY = 0x7E


def opcode_name(op: int) -> str:
    """Human name of an opcode for error messages, e.g. ``REQUEST (0x10)``."""
    for name, value in vars(Op).items():
        if value == op and name.isupper():
            return f"{name} (0x{op:02x})"
    return f"0x{op:02x}"


#: JOIN flags (version 2): what the client serves for the cluster.
JOIN_REQUESTS, JOIN_BROADCASTS, JOIN_TUNNELS = 0x01, 0x02, 0x04
#: JOIN flag: requests come as INVOKE_HEADERS (the caller's headers); replies may carry headers.
JOIN_HEADERS = 0x08
#: PUBLISH / MESSAGE / CONSUME_MESSAGE flags: which optional fields follow.
FLAG_KEY, FLAG_HEADERS, FLAG_MSG_ID, FLAG_CAPABILITY = 0x01, 0x02, 0x04, 0x08
#: PUBLISH ack modes.
ACK_MODES = {"none": 0, "leader": 1, "all": 2}
#: TUNNEL_CLOSE / CONSUME_CLOSE kinds.
CLOSE_HALF, CLOSE_FAILED = 0, 1
#: CONSUME start kinds and option flags.
FROM_EARLIEST, FROM_LATEST, FROM_NEW, FROM_OFFSET, FROM_TIME = 0, 1, 2, 3, 4
CONSUME_PARTITION, CONSUME_DURABLE, CONSUME_ACK_WAIT, CONSUME_CAPABILITY = 0x01, 0x02, 0x04, 0x08
#: CONSUME flag: the options block follows (filter, max deliver, backoff, max ack pending, ack policy).
CONSUME_OPTIONS = 0x10
#: Options block flags: ack policy none; deferred (CONSUME_START or CONSUME_FETCH picks push or pull).
OPTIONS_ACK_NONE, OPTIONS_DEFERRED = 0x01, 0x02

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEADER = struct.Struct(">IBI")


class Writer:
    """Builds one frame body: ``frame(op, id, Writer().text(...).u32(...).body())``."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: List[bytes] = []

    def u8(self, v: int) -> "Writer":
        self._parts.append(bytes((v,)))
        return self

    def u16(self, v: int) -> "Writer":
        self._parts.append(_U16.pack(v))
        return self

    def u32(self, v: int) -> "Writer":
        self._parts.append(_U32.pack(v))
        return self

    def u64(self, v: int) -> "Writer":
        self._parts.append(_U64.pack(v))
        return self

    def raw(self, b: bytes) -> "Writer":
        self._parts.append(b)
        return self

    def text(self, s: str) -> "Writer":
        b = s.encode("utf-8")
        self._parts.append(_U16.pack(len(b)))
        self._parts.append(b)
        return self

    def blob(self, b: bytes) -> "Writer":
        self._parts.append(_U32.pack(len(b)))
        self._parts.append(b)
        return self

    def headers(self, h: Dict[str, str]) -> "Writer":
        self.u16(len(h))
        for k, v in h.items():
            self.text(k).text(v)
        return self

    def body(self) -> bytes:
        return b"".join(self._parts)


def frame(opcode: int, corr_id: int, body: bytes = b"") -> bytes:
    """One frame on the wire: ``u32 length | u8 opcode | u32 id | body``."""
    return _HEADER.pack(5 + len(body), opcode, corr_id) + body


class Reader:
    """Bounds-checked reader over one frame body; anything malformed raises ``RelayUnavailableError``
    (the relay sent a frame this client cannot read: the connection is unusable)."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str = "frame") -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def _take(self, n: int, field: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise RelayUnavailableError(f"malformed {self.what} from the relay: truncated at {field}")
        v = self.data[self.pos : end]
        self.pos = end
        return v

    def u8(self, field: str = "u8") -> int:
        return self._take(1, field)[0]

    def u16(self, field: str = "u16") -> int:
        v: int = _U16.unpack(self._take(2, field))[0]
        return v

    def u32(self, field: str = "u32") -> int:
        v: int = _U32.unpack(self._take(4, field))[0]
        return v

    def u64(self, field: str = "u64") -> int:
        v: int = _U64.unpack(self._take(8, field))[0]
        return v

    def text(self, field: str = "str") -> str:
        raw = self._take(self.u16(field), field)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RelayUnavailableError(f"malformed {self.what} from the relay: {field} is not UTF-8") from None

    def blob(self, field: str = "bytes") -> bytes:
        return self._take(self.u32(field), field)

    def headers(self) -> Dict[str, str]:
        h: Dict[str, str] = {}
        for _ in range(self.u16("header count")):
            k = self.text("header name")
            h[k] = self.text("header value")
        return h

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def end(self) -> None:
        """Checks the body was consumed exactly."""
        if self.pos != len(self.data):
            raise RelayUnavailableError(f"malformed {self.what} from the relay: {len(self.data) - self.pos} bytes left over")


def optional_key_headers(r: Reader, flags: int) -> Tuple[Optional[bytes], Optional[Dict[str, str]]]:
    """Reads the optional key and headers of a MESSAGE or CONSUME_MESSAGE."""
    key = r.blob("key") if flags & FLAG_KEY else None
    headers = r.headers() if flags & FLAG_HEADERS else None
    return key, headers


def bytes_body(body: bytes, what: str) -> bytes:
    """A body of one ``bytes`` field (TUNNEL_DATA)."""
    r = Reader(body, what)
    b = r.blob("data")
    r.end()
    return b


def u32_body(body: bytes, what: str) -> int:
    """A body of one ``u32`` field (TUNNEL_CREDIT)."""
    r = Reader(body, what)
    n = r.u32("bytes")
    r.end()
    return n


def close_body(body: bytes, what: str) -> Tuple[int, str, str]:
    """A TUNNEL_CLOSE / CONSUME_CLOSE body: kind (0 or 1), error name, message."""
    r = Reader(body, what)
    kind, name, message = r.u8("kind"), r.text("error name"), r.text("message")
    r.end()
    if kind > 1:
        raise RelayUnavailableError(f"malformed {what} from the relay: unknown kind {kind}")
    return kind, name, message
