"""Subscriptions through the relay (SUBSCRIBE, MESSAGE, UNSUBSCRIBE): each is an async
iterator over a bounded queue; when the application reads too slowly new messages are
dropped (here or at the relay) and counted, and publishers are never blocked."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Generator, Optional

from . import validate as check
from ._queue import BoundedQueue
from .errors import AbortedError, InvalidArgumentError, PlexusError, RelayUnavailableError
from .wire import (
    ACK_MODES,
    FLAG_CAPABILITY,
    FLAG_HEADERS,
    FLAG_KEY,
    FLAG_MSG_ID,
    Op,
    Reader,
    Writer,
    opcode_name,
    optional_key_headers,
)

if TYPE_CHECKING:
    from .client import Client

#: Messages a subscription queues when ``max_pending`` is 0 (the relay's default too).
DEFAULT_MAX_PENDING = 8192
#: Most messages a subscription may queue (the relay's bound).
MAX_PENDING = 65536
#: Bytes one subscription queues at most in this client (the relay's per-connection bound).
MAX_PENDING_BYTES = 32 * 1024 * 1024
#: Most subscriptions one connection may hold (the relay's bound).
MAX_SUBSCRIPTIONS = 4096


class Message:
    """One pub/sub message. ``from_`` is the publisher's node id."""

    __slots__ = ("topic", "data", "from_", "key", "headers")

    def __init__(
        self, topic: str, data: bytes, from_: str, key: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None
    ) -> None:
        self.topic = topic
        self.data = data
        self.from_ = from_
        self.key = key
        self.headers = headers

    def string(self) -> str:
        """The data as UTF-8 text."""
        return self.data.decode("utf-8")

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)

    def __repr__(self) -> str:
        return f"Message(topic={self.topic!r}, data={self.data[:64]!r}, from_={self.from_!r})"


class Subscription:
    """A subscription (from ``client.subscribe``). ``await sub`` waits until it is live;
    ``async for m in sub`` reads its messages (one reader at a time); ``await
    sub.unsubscribe()`` or leaving ``async with sub`` ends it. ``dropped`` counts messages
    lost because the reader was slow (by the relay or by this queue)."""

    def __init__(self, owner: "Subscriptions", sub_id: int, pattern: str, max_pending: int) -> None:
        self.id = sub_id
        self.pattern = pattern
        self.dropped = 0
        self.received = 0
        self._owner = owner
        self._closed = False
        self._queue: BoundedQueue[Message] = BoundedQueue(max_pending, MAX_PENDING_BYTES, lambda m: len(m.data) + 64)
        self._ready: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()

    async def ready(self) -> None:
        """Returns once the relay confirmed the subscription: every node linked to its node
        acknowledged the interest (or went away). Raises the relay's error."""
        await asyncio.shield(self._ready)

    def __await__(self) -> Generator[Any, None, "Subscription"]:
        yield from self.ready().__await__()
        return self

    def _confirmed(self, err: Optional[BaseException]) -> None:
        if self._ready.done():
            return
        if err is None:
            self._ready.set_result(None)
        else:
            self._ready.set_exception(err)
            self._ready.exception()  # also raised to the reader; never "never retrieved"
            self._fail(err)

    def _deliver(self, m: Message, relay_dropped: int) -> None:
        if self._closed:
            return
        self.dropped += relay_dropped
        if self._queue.push(m):
            self.received += 1
        else:
            self.dropped += 1

    def _fail(self, err: BaseException) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.fail(err)
        self._owner._forget(self)

    async def unsubscribe(self) -> None:
        """Ends the subscription: iteration stops, queued messages are discarded. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.end()
        self._queue.clear()
        self._owner._forget(self)
        client = self._owner.client
        if not client.closed:
            try:
                await client._call(Op.UNSUBSCRIBE, Writer().u32(self.id).body(), Op.OK)
            except PlexusError:
                pass  # gone with the connection: nothing left to end

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Message:
        if not self._ready.done():
            await self.ready()
        return await self._queue.get()

    async def __aenter__(self) -> "Subscription":
        await self.ready()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.unsubscribe()


class Subscriptions:
    """The subscriptions of one client (internal): ids, MESSAGE routing."""

    def __init__(self, client: "Client") -> None:
        self.client = client
        self._subs: Dict[int, Subscription] = {}
        self._next_id = 1
        client._handlers[Op.MESSAGE] = self._on_message

    def subscribe(self, pattern: str, max_pending: int, queue: Optional[str] = None) -> Subscription:
        check.pattern(pattern)
        if queue is not None:
            check.name(queue, "queue")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or not 0 <= max_pending <= MAX_PENDING:
            raise InvalidArgumentError(f"max_pending must be an integer from 0 to {MAX_PENDING}, got {max_pending!r}")
        client = self.client
        if client._closed_error is not None:
            raise client._closed_error
        if len(self._subs) >= MAX_SUBSCRIPTIONS:
            raise InvalidArgumentError(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
        sub_id = self._next_id
        while sub_id == 0 or sub_id in self._subs:
            sub_id = (sub_id + 1) & 0xFFFFFFFF
        self._next_id = (sub_id + 1) & 0xFFFFFFFF
        sub = Subscription(self, sub_id, pattern, max_pending or DEFAULT_MAX_PENDING)
        self._subs[sub_id] = sub

        async def confirm() -> None:
            w = Writer().u32(sub_id).text(pattern).u32(max_pending)
            if queue is not None:
                w.text(queue)  # optional trailing field: a relay without queue groups never sees it
            body = w.body()
            try:
                await client._call(Op.SUBSCRIBE, body, Op.OK)
            except asyncio.CancelledError:
                sub._confirmed(client._closed_error or AbortedError("subscribe cancelled"))
                raise
            except Exception as e:  # handed to the subscription's reader
                sub._confirmed(e)
                return
            sub._confirmed(None)

        client._spawn(confirm())
        return sub

    def _forget(self, sub: Subscription) -> None:
        if self._subs.get(sub.id) is sub:
            del self._subs[sub.id]

    def fail_all(self, err: BaseException) -> None:
        for s in list(self._subs.values()):
            s._confirmed(err)
            s._fail(err)

    def _on_message(self, sub_id: int, body: bytes, _length: int) -> None:
        r = Reader(body, "MESSAGE")
        topic, sender, flags = r.text("topic"), r.text("from"), r.u8("flags")
        if flags & ~(FLAG_KEY | FLAG_HEADERS):
            raise RelayUnavailableError(f"malformed MESSAGE from the relay: unknown flags {flags}")
        key, headers = optional_key_headers(r, flags)
        dropped = r.u32("dropped")
        data = r.blob("data")
        r.end()
        sub = self._subs.get(sub_id)
        if sub is not None:
            sub._deliver(Message(topic, data, sender, key, headers), dropped)


@dataclass(frozen=True)
class PublishAck:
    """Where a message published with ``ack`` was stored. ``duplicate``: its ``msg_id`` was
    already stored at ``offset`` and nothing was added."""

    stream: str
    partition: int
    offset: int
    duplicate: bool = False


def publish_body(
    topic: str,
    data: check.Payload,
    max_message_size: int,
    key: Optional[check.Payload],
    headers: Optional[Dict[str, str]],
    ack: Optional[str],
    msg_id: Optional[str],
    timeout: Optional[float],
    capability: Optional[str],
) -> bytes:
    """The body of a PUBLISH frame, every argument checked as ``Client.publish`` documents."""
    check.topic(topic)
    payload = check.payload(data, "data", max_message_size)
    k = check.key(key)
    h = check.headers(headers)
    mid = check.msg_id(msg_id)
    mode = ACK_MODES.get(ack or "none")
    if mode is None:
        raise InvalidArgumentError(f"ack must be 'none', 'leader' or 'all', got {check.describe(ack)}")
    ms = check.timeout_ms(timeout)
    if capability is not None and (not isinstance(capability, str) or not capability.strip()):
        raise InvalidArgumentError(f"capability must be a pxc1.… capability, got {check.describe(capability)}")
    flags = (
        (FLAG_KEY if k is not None else 0)
        | (FLAG_HEADERS if h is not None else 0)
        | (FLAG_MSG_ID if mid is not None else 0)
        | (FLAG_CAPABILITY if capability is not None else 0)
    )
    w = Writer().text(topic).u8(flags)
    if k is not None:
        w.blob(k)
    if h is not None:
        w.headers(h)
    if mid is not None:
        w.text(mid)
    if capability is not None:
        w.text(capability.strip())
    w.u8(mode).u32(ms).blob(payload)
    return w.body()


def read_publish_answer(op: int, r: Reader) -> Optional[PublishAck]:
    """What PUBLISH answered: a ``PublishAck`` (PUBLISH_ACK) or None (OK)."""
    if op == Op.PUBLISH_ACK:
        a = PublishAck(r.text("stream"), r.u32("partition"), r.u64("offset"), r.u8("duplicate") == 1)
        r.end()
        return a
    if op != Op.OK:
        raise RelayUnavailableError(f"relay sent {opcode_name(op)} where OK or PUBLISH_ACK was expected")
    return None
