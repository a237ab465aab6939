"""Stream consumers through the relay (CONSUME, CONSUME_MESSAGE, CONSUME_CREDIT,
CONSUME_CLOSE, CONSUME_ACK). A consumer's messages wait in a queue bounded by the window this
client granted the relay; their credit (each message costs its frame's length) goes back as
the application reads them, so a slow reader slows the relay's reading from the stream."""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import TYPE_CHECKING, Any, Dict, Generator, List, Optional, Tuple

from . import validate as check
from ._queue import BoundedQueue, CreditReturn
from .errors import AbortedError, InvalidArgumentError, RelayUnavailableError, error_from_wire
from .wire import (
    CLOSE_FAILED,
    CLOSE_HALF,
    CONSUME_ACK_WAIT,
    CONSUME_CAPABILITY,
    CONSUME_DURABLE,
    CONSUME_OPTIONS,
    CONSUME_PARTITION,
    FLAG_HEADERS,
    FLAG_KEY,
    FRAME_OVERHEAD,
    FROM_EARLIEST,
    FROM_LATEST,
    FROM_NEW,
    FROM_OFFSET,
    FROM_TIME,
    OPTIONS_ACK_NONE,
    OPTIONS_DEFERRED,
    Op,
    Reader,
    Writer,
    close_body,
    optional_key_headers,
)

if TYPE_CHECKING:
    from .client import Client

#: Credit (bytes) this client grants the relay per consumer: 2 MiB, or one largest frame.
DEFAULT_CONSUMER_WINDOW = 2 * 1024 * 1024
#: Most consumers one connection may hold open (the relay's bound).
MAX_CONSUMERS = 256


class StreamMessage:
    """One stored message. ``timestamp`` is the leader's clock when it appended it (ms since
    the epoch; ``time`` as a datetime); ``delivery_count`` is 1 on first delivery, more on
    redelivery. ``await ack()`` records a durable consumer's position (a no-op otherwise)."""

    __slots__ = ("stream", "topic", "partition", "offset", "timestamp", "delivery_count", "key", "headers", "data", "_consumer")

    def __init__(
        self,
        consumer: "Consumer",
        topic: str,
        partition: int,
        offset: int,
        timestamp: int,
        delivery_count: int,
        key: Optional[bytes],
        headers: Optional[Dict[str, str]],
        data: bytes,
    ) -> None:
        self.stream = consumer.stream
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.delivery_count = delivery_count
        self.key = key
        self.headers = headers
        self.data = data
        self._consumer = consumer

    @property
    def time(self) -> datetime.datetime:
        """``timestamp`` as an aware UTC datetime."""
        return datetime.datetime.fromtimestamp(self.timestamp / 1000, datetime.timezone.utc)

    def string(self) -> str:
        """The data as UTF-8 text."""
        return self.data.decode("utf-8")

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)

    async def ack(self) -> None:
        """Acknowledges the message (durable consumers): the consumer resumes after it, and it
        is not redelivered. At-least-once: a message acknowledged after ``ack_wait`` may have
        been delivered again meanwhile."""
        await self._consumer._ack(self.partition, self.offset)

    async def nak(self, delay: Optional[float] = None) -> None:
        """Asks for the message again after ``delay`` seconds (None or 0: at once), as
        JetStream's nak (durable consumers with explicit acks; a no-op otherwise)."""
        ms = 0 if delay is None else check.timeout_ms(delay, "delay")
        await self._consumer._settle(Op.CONSUME_NAK, self.partition, self.offset, ms)

    async def term(self) -> None:
        """Never deliver the message again; it counts as acknowledged (durable consumers)."""
        await self._consumer._settle(Op.CONSUME_TERM, self.partition, self.offset, None)

    async def working(self) -> None:
        """Still working on it: restarts the message's ack wait (durable consumers)."""
        await self._consumer._settle(Op.CONSUME_WORKING, self.partition, self.offset, None)

    def __repr__(self) -> str:
        return f"StreamMessage(stream={self.stream!r}, partition={self.partition}, offset={self.offset}, data={self.data[:64]!r})"


class Consumer:
    """A stream consumer (from ``client.consume``). ``await consumer`` waits until it is open;
    ``async for m in consumer`` reads (one reader at a time); ``close()`` or leaving ``async
    with`` ends it, discarding what is queued. A failure on the node ends the iteration with
    the error class the relay named (e.g. ``StreamNotFoundError``)."""

    def __init__(self, owner: "Consumers", consumer_id: int, stream: str, durable: Optional[str], window: int) -> None:
        self.id = consumer_id
        self.stream = stream
        self.durable = durable
        self.window = window
        self.received = 0
        self._owner = owner
        self._closed = False
        self._user_closed = False
        client = owner.client
        self._returns = CreditReturn(window, lambda n: client._send(Op.CONSUME_CREDIT, consumer_id, Writer().u32(n).body()))
        self._queue: BoundedQueue[Tuple[StreamMessage, int]] = BoundedQueue(1 << 62, window, lambda e: e[1], self._taken)
        self._ready: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()
        #: How it is read, picked by the first ``async for`` (push) or ``fetch`` (pull).
        self._mode: Optional[str] = None

    async def ready(self) -> None:
        """Returns once the relay opened the consumer; raises its error otherwise."""
        await asyncio.shield(self._ready)

    def __await__(self) -> Generator[Any, None, "Consumer"]:
        yield from self.ready().__await__()
        return self

    def __aiter__(self) -> "Consumer":
        return self

    async def __anext__(self) -> StreamMessage:
        if self._user_closed:
            raise StopAsyncIteration
        if not self._ready.done():
            await self.ready()
        if self._mode is None:
            self._mode = "push"
            self._owner.client._send(Op.CONSUME_START, self.id)
        elif self._mode == "pull":
            raise InvalidArgumentError("this consumer is read with fetch(); iterate another one")
        msg, _cost = await self._queue.get()
        if self._user_closed:
            raise StopAsyncIteration
        return msg

    async def __aenter__(self) -> "Consumer":
        await self.ready()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Ends the consumer: iteration stops at once, queued messages are discarded. Idempotent."""
        self._user_closed = True
        if self._closed:
            return
        self._closed = True
        self._owner.client._send(Op.CONSUME_CLOSE, self.id, Writer().u8(CLOSE_HALF).text("").text("").body())
        self._queue.end()
        self._queue.clear()
        self._owner._forget(self)

    async def fetch(self, max: int = 1, expires: float = 30.0) -> List[StreamMessage]:
        """Pull: up to ``max`` messages (1-4096), returned once that many are there or after
        ``expires`` seconds (at most 600) with what came (maybe none). Fetches run in order;
        a consumer read with ``fetch`` cannot also be iterated."""
        if isinstance(max, bool) or not isinstance(max, int) or not 1 <= max <= 4096:
            raise InvalidArgumentError(f"max must be an integer 1-4096, got {check.describe(max)}")
        if isinstance(expires, bool) or not isinstance(expires, (int, float)) or not 0 < expires <= 600:
            raise InvalidArgumentError(f"expires must be 0-600 seconds, got {check.describe(expires)}")
        if self._mode == "push":
            raise InvalidArgumentError("this consumer is iterated (push); fetch from another one")
        await self.ready()
        self._mode = "pull"
        body = Writer().u32(self.id).u32(max).u32(max_ms(expires)).body()
        call = asyncio.ensure_future(self._owner.client._call(Op.CONSUME_FETCH, body, Op.OK, cancel=True))
        out: List[StreamMessage] = []
        try:
            # Messages are read as they come (a batch may exceed the window: their credit goes
            # back meanwhile); the OK after them says how many there were.
            while not call.done():
                get = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait({get, call}, return_when=asyncio.FIRST_COMPLETED)
                if get in done:
                    out.append(get.result()[0])
                else:
                    get.cancel()  # nothing is lost: an item leaves the queue only in a get that returns
            _op, r = call.result()
            count = r.u32("count")
            r.end()
            while len(out) < count:
                out.append((await self._queue.get())[0])
            return out
        finally:
            if not call.done():
                call.cancel()

    async def _settle(self, op: int, partition: int, offset: int, delay_ms: Optional[int]) -> None:
        if self.durable is None:
            return
        w = Writer().u32(self.id).u32(partition).u64(offset)
        if delay_ms is not None:
            w.u32(delay_ms)
        await self._owner.client._call(op, w.body(), Op.OK)

    async def _ack(self, partition: int, offset: int) -> None:
        if self.durable is None:
            return
        body = Writer().u32(self.id).u32(partition).u64(offset).body()
        await self._owner.client._call(Op.CONSUME_ACK, body, Op.OK)

    def _confirmed(self, err: Optional[BaseException]) -> None:
        if self._ready.done():
            return
        if err is None:
            self._ready.set_result(None)
            return
        self._ready.set_exception(err)
        self._ready.exception()
        self._fail(err)

    def _deliver(self, msg: StreamMessage, cost: int) -> None:
        if self._closed:
            return
        if not self._queue.push((msg, cost)):
            self._owner.client._send(
                Op.CONSUME_CLOSE, self.id, Writer().u8(CLOSE_FAILED).text("InvalidArgumentError").text("flow control violated").body()
            )
            self._fail(InvalidArgumentError("flow control violated by the relay: more data than the window granted"))

    def _on_close(self, kind: int, name: str, message: str) -> None:
        if self._closed:
            return
        if kind == CLOSE_FAILED:
            self._fail(error_from_wire(name, message))
            return
        self._closed = True
        self._queue.end()
        self._owner._forget(self)

    def _fail(self, err: BaseException) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.fail(err)
        self._owner._forget(self)

    def _taken(self, entry: Tuple[StreamMessage, int], idle: bool) -> None:
        self.received += 1
        if not self._closed:
            self._returns.consumed(entry[1], idle)


def _from_body(w: Writer, from_: Any) -> None:
    if from_ == "earliest" or from_ is None:
        w.u8(FROM_EARLIEST)
    elif from_ == "latest":
        w.u8(FROM_LATEST)
    elif from_ == "new":
        w.u8(FROM_NEW)
    elif isinstance(from_, datetime.datetime):
        ms = round(from_.timestamp() * 1000)
        if ms < 0:
            raise InvalidArgumentError(f"from_ must be a datetime after 1970, got {from_!r}")
        w.u8(FROM_TIME).u64(ms)
    else:
        offset = from_.get("offset") if isinstance(from_, dict) else from_
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**53:
            raise InvalidArgumentError(
                f"from_ must be 'earliest', 'latest', 'new', an offset, {{'offset': n}} or a datetime, got {check.describe(from_)}"
            )
        w.u8(FROM_OFFSET).u64(offset)


def max_ms(seconds: float) -> int:
    """Seconds as whole milliseconds (at least 1)."""
    return max(1, round(seconds * 1000))


def _options_block(w: Writer, options: Tuple[Any, ...]) -> None:
    """The CONSUME options block (always deferred: the first read picks push or pull)."""
    filter_, max_deliver, backoff, max_ack_pending, ack_policy = options
    if ack_policy not in (None, "explicit", "none"):
        raise InvalidArgumentError(f"ack_policy must be 'explicit' or 'none', got {check.describe(ack_policy)}")
    if filter_ is not None:
        check.pattern(filter_, "filter")
    for name, v in (("max_deliver", max_deliver), ("max_ack_pending", max_ack_pending)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 0xFFFFFFFF):
            raise InvalidArgumentError(f"{name} must be a positive integer, got {check.describe(v)}")
    delays: List[int] = []
    if backoff is not None:
        if not isinstance(backoff, (list, tuple)) or not 1 <= len(backoff) <= 64:
            raise InvalidArgumentError(f"backoff must be a list of 1-64 delays in seconds, got {check.describe(backoff)}")
        for i, d in enumerate(backoff):
            if isinstance(d, bool) or not isinstance(d, (int, float)) or d <= 0:
                raise InvalidArgumentError(f"backoff[{i}] must be a positive number of seconds, got {check.describe(d)}")
            delays.append(check.timeout_ms(d, f"backoff[{i}]"))
    w.u8((OPTIONS_ACK_NONE if ack_policy == "none" else 0) | OPTIONS_DEFERRED)
    w.u32(max_ack_pending or 0).u32(max_deliver or 0).u16(len(delays))
    for d in delays:
        w.u32(d)
    w.text(filter_ or "")


class Consumers:
    """The consumers of one client (internal): ids, CONSUME_MESSAGE / CONSUME_CLOSE routing."""

    def __init__(self, client: "Client") -> None:
        self.client = client
        self._open: Dict[int, Consumer] = {}
        self._next_id = 1
        client._handlers[Op.CONSUME_MESSAGE] = self._on_message
        client._handlers[Op.CONSUME_CLOSE] = self._on_close

    def consume(
        self,
        stream: str,
        durable: Optional[str],
        from_: Any,
        partition: Optional[int],
        ack_wait: Optional[float],
        capability: Optional[str],
        options: Tuple[Any, ...] = (None, None, None, None, None),
    ) -> Consumer:
        """See ``Client.consume``."""
        client = self.client
        check.name(stream, "stream")
        if durable is not None:
            check.name(durable, "durable")
        if partition is not None and (isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition <= 0xFFFFFFFF):
            raise InvalidArgumentError(f"partition must be a non-negative integer, got {check.describe(partition)}")
        w = Writer()
        _from_body(w, from_)
        ack_ms = check.timeout_ms(ack_wait, "ack_wait") if ack_wait is not None else None
        if capability is not None and (not isinstance(capability, str) or not capability.strip()):
            raise InvalidArgumentError(f"capability must be a pxc1.… capability, got {check.describe(capability)}")
        if client._closed_error is not None:
            raise client._closed_error
        if len(self._open) >= MAX_CONSUMERS:
            raise InvalidArgumentError(f"at most {MAX_CONSUMERS} consumers per connection")
        cid = self._next_id
        while cid == 0 or cid in self._open:
            cid = (cid + 1) & 0xFFFFFFFF
        self._next_id = (cid + 1) & 0xFFFFFFFF
        window = max(DEFAULT_CONSUMER_WINDOW, client.max_message_size + FRAME_OVERHEAD)
        flags = (
            (CONSUME_PARTITION if partition is not None else 0)
            | (CONSUME_DURABLE if durable is not None else 0)
            | (CONSUME_ACK_WAIT if ack_ms is not None else 0)
            | (CONSUME_CAPABILITY if capability is not None else 0)
            | CONSUME_OPTIONS
        )
        opts = Writer()
        _options_block(opts, options)
        body = Writer().u32(cid).text(stream).raw(w.body()).u8(flags)
        if partition is not None:
            body.u32(partition)
        if durable is not None:
            body.text(durable)
        if ack_ms is not None:
            body.u32(ack_ms)
        if capability is not None:
            body.text(capability.strip())
        body.raw(opts.body()).u32(window)
        consumer = Consumer(self, cid, stream, durable, window)
        self._open[cid] = consumer

        async def open_() -> None:
            try:
                await client._call(Op.CONSUME, body.body(), Op.OK)
            except asyncio.CancelledError:
                consumer._confirmed(client._closed_error or AbortedError("consume cancelled"))
                raise
            except Exception as e:
                consumer._confirmed(e)
                return
            consumer._confirmed(None)

        client._spawn(open_())
        return consumer

    def _forget(self, c: Consumer) -> None:
        if self._open.get(c.id) is c:
            del self._open[c.id]

    def fail_all(self, err: BaseException) -> None:
        for c in list(self._open.values()):
            c._confirmed(err)
            c._fail(err)

    def _on_message(self, cid: int, body: bytes, length: int) -> None:
        r = Reader(body, "CONSUME_MESSAGE")
        topic, partition, offset = r.text("topic"), r.u32("partition"), r.u64("offset")
        timestamp, count, flags = r.u64("timestamp"), r.u16("delivery count"), r.u8("flags")
        if flags & ~(FLAG_KEY | FLAG_HEADERS):
            raise RelayUnavailableError(f"malformed CONSUME_MESSAGE from the relay: unknown flags {flags}")
        key, headers = optional_key_headers(r, flags)
        data = r.blob("data")
        r.end()
        c = self._open.get(cid)
        if c is not None:
            c._deliver(StreamMessage(c, topic, partition, offset, timestamp, count, key, headers, data), length)

    def _on_close(self, cid: int, body: bytes, _length: int) -> None:
        kind, name, message = close_body(body, "CONSUME_CLOSE")
        c = self._open.get(cid)
        if c is not None:
            c._on_close(kind, name, message)
