#!/usr/bin/env python3
"""A minimal Plexus relay client in pure Python (standard library only).

Implements docs/relay-protocol.md, version 2: the handshake, REQUEST, JOIN/serve, STATUS,
PUBLISH, SUBSCRIBE and FLUSH. `subscribe` returns once the subscription is live across the
network: a publish made after it by any node linked to the relay's node reaches it.

    python3 examples/python/plexus_relay.py request CLUSTER DATA [--relay host:port] [--timeout MS]
    python3 examples/python/plexus_relay.py serve CLUSTER --key KEY [--relay host:port]   # echo, upper-cased
    python3 examples/python/plexus_relay.py status [--relay host:port]
    python3 examples/python/plexus_relay.py publish TOPIC DATA [--relay host:port]
    python3 examples/python/plexus_relay.py subscribe PATTERN [--count N] [--relay host:port]  # one line per message

The relay address comes from --relay, else $PLEXUS_RELAY, else 127.0.0.1:55555.
Errors print one line "ErrorName: message" on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import struct
import sys
from typing import Callable

PROTOCOL_VERSION = 2
MAGIC = b"PLXR"

# Opcodes (docs/relay-protocol.md, "Opcodes").
HELLO, WELCOME, REFUSE, PING, PONG = 0x01, 0x02, 0x03, 0x04, 0x05
OK, ERROR = 0x08, 0x09
REQUEST, REPLY, CANCEL = 0x10, 0x11, 0x12
JOIN, LEAVE = 0x18, 0x19
INVOKE, INVOKE_REPLY, INVOKE_ERROR, INVOKE_CANCEL = 0x20, 0x21, 0x22, 0x23
STATUS, STATUS_REPLY = 0x28, 0x29
SUBSCRIBE, UNSUBSCRIBE, MESSAGE, PUBLISH, PUBLISH_ACK, FLUSH = 0x40, 0x41, 0x42, 0x43, 0x44, 0x45
JOIN_REQUESTS = 0x01  # JOIN flags (version 2): serve requests
# Longest timeout the node accepts (ms): 2^31 - 1 (docs/relay-protocol.md, "Limits").
MAX_TIMEOUT_MS = 2**31 - 1


class PlexusError(Exception):
    """An error sent by the relay; `name` is the Plexus error class (e.g. NoMembersError)."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


# ---- encoding: big-endian; str = u16 length + UTF-8; bytes = u32 length + raw -------------


def enc_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack(">H", len(b)) + b


def enc_bytes(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def frame(opcode: int, corr_id: int, body: bytes = b"") -> bytes:
    # length counts opcode (1) + correlation id (4) + body
    return struct.pack(">IBI", 5 + len(body), opcode, corr_id) + body


class Reader:
    """Bounds-checked reader over one frame body."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise PlexusError("DecodeError", "truncated frame from relay")
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return v

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def str(self) -> str:
        return self.take(self.u16()).decode("utf-8")

    def bytes(self) -> bytes:
        return self.take(self.u32())

    def u8(self) -> int:
        return self.take(1)[0]


class RelayClient:
    """One connection to a node's relay. Calls are sequential (one in flight at a time)."""

    def __init__(self, address: str | None = None, timeout: float = 5.0):
        address = address or os.environ.get("PLEXUS_RELAY") or "127.0.0.1:55555"
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise PlexusError("InvalidArgumentError", f"relay address must be host:port, got {address!r}")
        try:
            self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        except ConnectionRefusedError:
            raise PlexusError(
                "RelayUnavailableError", f"no Plexus node's relay is listening at {address} (connection refused)"
            ) from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_id = 1
        self.max_message_size = 1 << 20  # until WELCOME says otherwise
        # MESSAGEs that arrived while a call waited for its answer, for messages().
        self.early: collections.deque[tuple[int, str, str, bytes, int]] = collections.deque()
        self.send(HELLO, 0, MAGIC + struct.pack(">H", PROTOCOL_VERSION) + enc_str("plexus-python"))
        op, _, body = self.recv()
        r = Reader(body)
        if op == REFUSE:
            raise PlexusError("RelayUnavailableError", f"relay refused: {r.str()}")
        if op != WELCOME:
            raise PlexusError("DecodeError", f"expected WELCOME, got opcode {op:#04x}")
        self.version = r.u16()
        self.node_id = r.str()
        self.network = r.str()
        self.max_message_size = r.u32()
        self.sock.settimeout(None)

    # -- framing --
    def send(self, opcode: int, corr_id: int, body: bytes = b"") -> None:
        self.sock.sendall(frame(opcode, corr_id, body))

    def _read_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise PlexusError("RelayUnavailableError", "connection to the relay was lost")
            buf += chunk
        return bytes(buf)

    def recv(self) -> tuple[int, int, bytes]:
        (length,) = struct.unpack(">I", self._read_exact(4))
        if length < 5 or length > self.max_message_size + 65536:
            raise PlexusError("DecodeError", f"bad frame length {length}")
        opcode, corr_id = struct.unpack(">BI", self._read_exact(5))
        body = self._read_exact(length - 5)
        if opcode == ERROR and corr_id == 0:
            r = Reader(body)
            raise PlexusError(r.str(), r.str())
        return opcode, corr_id, body

    def _call(self, opcode: int, body: bytes, expect: int) -> Reader:
        corr_id = self.next_id
        self.next_id += 1
        self.send(opcode, corr_id, body)
        while True:
            op, rid, payload = self.recv()
            if op == PING:
                self.send(PONG, rid)
                continue
            if op == MESSAGE:
                self.early.append(self._message(rid, payload))
                continue
            if rid != corr_id:
                continue  # not ours (e.g. a late answer)
            r = Reader(payload)
            if op == ERROR:
                raise PlexusError(r.str(), r.str())
            if op != expect:
                raise PlexusError("DecodeError", f"unexpected opcode {op:#04x}")
            return r

    # -- API (same names as the library) --
    def request(self, cluster: str, data: bytes, timeout_ms: int = 0) -> bytes:
        """One request to one member of `cluster`; returns its reply or raises PlexusError."""
        if not 0 <= timeout_ms <= MAX_TIMEOUT_MS:
            raise PlexusError("InvalidArgumentError", f"timeout must be 0-{MAX_TIMEOUT_MS} ms, got {timeout_ms}")
        body = enc_str(cluster) + struct.pack(">I", timeout_ms) + enc_bytes(data)
        return self._call(REQUEST, body, REPLY).bytes()

    def status(self) -> dict:
        return json.loads(self._call(STATUS, b"", STATUS_REPLY).bytes().decode("utf-8"))

    def join(self, cluster: str, key: str) -> None:
        """Joins `cluster` with its key (text form). Limits 0 = node defaults."""
        limits = struct.pack(">IIII", 0, 0, 0, 0)
        body = enc_str(cluster) + b"\x00" + enc_bytes(key.encode("utf-8")) + limits + bytes([JOIN_REQUESTS])
        self._call(JOIN, body, OK)

    def publish(self, topic: str, data: bytes) -> None:
        """Publishes `data` on `topic` (no key, no headers, no ack); returns once the node queued it."""
        body = enc_str(topic) + b"\x00" + b"\x00" + struct.pack(">I", 0) + enc_bytes(data)
        self._call(PUBLISH, body, OK)

    def subscribe(self, pattern: str, sub_id: int = 1) -> None:
        """Starts subscription `sub_id` on `pattern` (`*` one token, `>` the rest).

        Returns once the relay answered, which it does once every node linked to its node
        acknowledged the subscription: a publish made after this by any of them reaches it."""
        self._call(SUBSCRIBE, struct.pack(">I", sub_id) + enc_str(pattern) + struct.pack(">I", 0), OK)

    def unsubscribe(self, sub_id: int) -> None:
        """Ends subscription `sub_id`."""
        self._call(UNSUBSCRIBE, struct.pack(">I", sub_id), OK)

    def flush(self, timeout_ms: int = 0) -> None:
        """Returns once every subscribe/unsubscribe made so far is known to every node linked
        to the relay's node (0 = the node's default deadline, 10 s; TimeoutError after it)."""
        if not 0 <= timeout_ms <= MAX_TIMEOUT_MS:
            raise PlexusError("InvalidArgumentError", f"timeout must be 0-{MAX_TIMEOUT_MS} ms, got {timeout_ms}")
        self._call(FLUSH, struct.pack(">I", timeout_ms), OK)

    @staticmethod
    def _message(rid: int, payload: bytes) -> tuple[int, str, str, bytes, int]:
        r = Reader(payload)
        topic, sender, flags = r.str(), r.str(), r.u8()
        if flags & 1:
            r.bytes()  # key
        if flags & 2:
            for _ in range(r.u16()):
                r.str(), r.str()  # header name, value
        dropped = r.u32()
        return rid, topic, sender, r.bytes(), dropped

    def messages(self):
        """Yields (subscription id, topic, sender, data, dropped) for each MESSAGE, forever."""
        while True:
            while self.early:
                yield self.early.popleft()
            op, rid, payload = self.recv()
            if op == PING:
                self.send(PONG, rid)
            elif op == MESSAGE:
                yield self._message(rid, payload)

    def serve(self, handler: Callable[[bytes, str, str], bytes]) -> None:
        """Answers INVOKE frames forever with handler(data, cluster, from)."""
        while True:
            op, rid, payload = self.recv()
            if op == PING:
                self.send(PONG, rid)
            elif op == INVOKE:
                r = Reader(payload)
                cluster, _remaining_ms, sender, data = r.str(), r.u32(), r.str(), r.bytes()
                try:
                    self.send(INVOKE_REPLY, rid, enc_bytes(handler(data, cluster, sender)))
                except Exception as exc:  # the caller gets RemoteError with this message
                    self.send(INVOKE_ERROR, rid, enc_str(str(exc)[:4096]))
            # INVOKE_CANCEL and anything else: nothing to do in this sequential client

    def close(self) -> None:
        self.sock.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Plexus relay client (Python, stdlib only)")
    p.add_argument("--relay", help="relay host:port (default $PLEXUS_RELAY or 127.0.0.1:55555)")
    sub = p.add_subparsers(dest="cmd", required=True)
    rq = sub.add_parser("request", help="send one request and print the reply")
    rq.add_argument("cluster")
    rq.add_argument("data", help="request data, or - for stdin")
    rq.add_argument("--timeout", type=int, default=0, help="deadline in ms (default: the node's)")
    rq.add_argument("--relay", dest="relay_sub")
    sv = sub.add_parser("serve", help="join CLUSTER and answer requests with the data upper-cased")
    sv.add_argument("cluster")
    sv.add_argument("--key", required=True, help="cluster key (64 hex chars or a passphrase)")
    sv.add_argument("--relay", dest="relay_sub")
    st = sub.add_parser("status", help="print the node's status as JSON")
    st.add_argument("--relay", dest="relay_sub")
    pb = sub.add_parser("publish", help="publish DATA on TOPIC")
    pb.add_argument("topic")
    pb.add_argument("data", help="message data, or - for stdin")
    pb.add_argument("--relay", dest="relay_sub")
    sb = sub.add_parser("subscribe", help="print each message on PATTERN as one line")
    sb.add_argument("pattern")
    sb.add_argument("--count", type=int, default=0, help="exit after N messages (default: run until killed)")
    sb.add_argument("--relay", dest="relay_sub")
    args = p.parse_args(argv)
    try:
        client = RelayClient(getattr(args, "relay_sub", None) or args.relay)
        if args.cmd == "request":
            data = sys.stdin.buffer.read() if args.data == "-" else args.data.encode("utf-8")
            sys.stdout.buffer.write(client.request(args.cluster, data, args.timeout))
            sys.stdout.flush()
        elif args.cmd == "status":
            print(json.dumps(client.status(), indent=2))
        elif args.cmd == "publish":
            data = sys.stdin.buffer.read() if args.data == "-" else args.data.encode("utf-8")
            client.publish(args.topic, data)
        elif args.cmd == "subscribe":
            client.subscribe(args.pattern)
            print(f"subscribed to {args.pattern}", file=sys.stderr, flush=True)
            seen = 0
            for _sid, _topic, _sender, data, _dropped in client.messages():
                sys.stdout.write(data.decode("utf-8", "replace") + "\n")
                sys.stdout.flush()
                seen += 1
                if args.count and seen >= args.count:
                    break
        else:
            client.join(args.cluster, args.key)
            print(f"serving {args.cluster} through node {client.node_id}", file=sys.stderr, flush=True)
            client.serve(lambda data, _cluster, _sender: data.upper())
        client.close()
        return 0
    except PlexusError as e:
        print(f"{e.name}: {e.message}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"RelayUnavailableError: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
