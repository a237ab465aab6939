"""The connection to a node's relay: handshake, the frame reader, calls matched by
correlation id, and the calls that are one frame and one answer (request, broadcast,
publish, flush, status, ping). Subscriptions, memberships, tunnels and streams live in
their own modules and plug into the reader through ``Client._handlers``."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Coroutine, Dict, List, Optional, Set, Tuple

from . import validate as check
from .errors import (
    AbortedError,
    PlexusError,
    PlexusTimeoutError,
    RelayUnavailableError,
    TunnelClosedError,
    error_from_wire,
)
from .members import Limits, Memberships, Membership, RequestHandler, BroadcastHandler, TunnelHandler
from .address import parse_address
from .pubsub import PublishAck, Subscriptions, Subscription, publish_body, read_publish_answer
from .consumer import Consumer, Consumers
from .streams import Streams
from .kv import Kv, Watches
from .requests import ManyReplies, Reply, request_many, request_reply
from .tunnel import Tunnel, open_tunnel
from .wire import (
    CONNECTION_ID,
    DEFAULT_MAX_MESSAGE_SIZE,
    FRAME_OVERHEAD,
    MAGIC,
    PROTOCOL_VERSION,
    Op,
    Reader,
    Writer,
    bytes_body,
    close_body,
    frame,
    opcode_name,
    u32_body,
)

#: Seconds between PINGs while connected, so the relay's idle timeout (5 min) never closes
#: a connection its program still holds.
KEEPALIVE_SECONDS = 60.0

if TYPE_CHECKING:
    _Answer = asyncio.Future[Tuple[int, bytes]]
else:
    _Answer = asyncio.Future

#: Handles one server-initiated frame: (correlation id, body, frame length field).
FrameHandler = Callable[[int, bytes, int], None]


async def connect(address: Optional[str] = None, *, timeout: float = 5.0, name: str = "plexus-python") -> "Client":
    """Connects to a node's relay and completes the handshake. ``address`` is ``host:port``
    (default: ``$PLEXUS_RELAY``, else 127.0.0.1:55555). Raises ``RelayUnavailableError`` when
    nothing listens there or the relay refuses, ``PlexusTimeoutError`` after ``timeout`` seconds."""
    host, port = parse_address(address)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except asyncio.TimeoutError:
        raise PlexusTimeoutError(f"no answer from the relay at {where} within {timeout} s") from None
    except ConnectionRefusedError:
        raise RelayUnavailableError(f"no Plexus node's relay is listening at {where} (connection refused)") from None
    except OSError as e:
        raise RelayUnavailableError(f"cannot reach the relay at {where}: {e}") from None
    client = Client(reader, writer, where)
    try:
        await asyncio.wait_for(client._handshake(name), timeout)
    except asyncio.TimeoutError:
        client._fail(PlexusTimeoutError(f"no answer from the relay at {where} within {timeout} s"))
        raise client._closed_error from None  # type: ignore[misc]
    except BaseException:
        client._fail(RelayUnavailableError("handshake failed"))
        raise
    return client


class Client:
    """One connection to a node's relay (make it with ``connect``). Every method may be
    called concurrently; answers are matched by correlation id. Closing it (``close()``, or
    leaving ``async with``) ends everything opened through it: memberships are left,
    subscriptions end, tunnels fail, consumers close."""

    node_id: str
    """The relay's node id (WELCOME)."""
    network: str
    """The relay node's network name."""
    max_message_size: int
    """Largest payload the relay accepts, in bytes (WELCOME; default 1 MiB)."""
    streams: Streams
    """Durable streams: ``create``, ``info``, ``delete``, ``list`` (see ``Streams``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str) -> None:
        self._reader = reader
        self._writer = writer
        self.where = where
        self.node_id = ""
        self.network = ""
        self.version = PROTOCOL_VERSION
        self.max_message_size = DEFAULT_MAX_MESSAGE_SIZE
        self._pending: Dict[int, Tuple[_Answer, Optional[Callable[[int, bytes], None]]]] = {}
        self._next_id = 1
        self._closed_error: Optional[BaseException] = None
        self._drain_lock = asyncio.Lock()
        self._tasks: "Set[asyncio.Task[Any]]" = set()
        self._read_task: "Optional[asyncio.Task[None]]" = None
        self._keepalive_task: "Optional[asyncio.Task[None]]" = None
        self.tunnels: Dict[int, Tunnel] = {}
        # Server-initiated frames by opcode. A new frame family registers its handler here
        # (and its answers come back through `_call`), without touching the reader.
        self._handlers: Dict[int, FrameHandler] = {
            Op.TUNNEL_DATA: lambda i, b, _n: self._tunnel(i, lambda t: t._on_data(bytes_body(b, "TUNNEL_DATA"))),
            Op.TUNNEL_CREDIT: lambda i, b, _n: self._tunnel(i, lambda t: t._on_credit(u32_body(b, "TUNNEL_CREDIT"))),
            Op.TUNNEL_CLOSE: lambda i, b, _n: self._tunnel(i, lambda t: t._on_close(*close_body(b, "TUNNEL_CLOSE"))),
        }
        self._subs = Subscriptions(self)
        self._members = Memberships(self)
        self.streams = Streams(self)
        self._consumers = Consumers(self)
        self._many = ManyReplies(self)
        self._watches = Watches(self)

    # ---- lifecycle ------------------------------------------------------------------------

    async def _handshake(self, name: str) -> None:
        hello = Writer().raw(MAGIC).u16(PROTOCOL_VERSION).text(name[:200]).body()
        self._writer.write(frame(Op.HELLO, CONNECTION_ID, hello))
        op, _id, body = await self._read_frame(4096 + 4)
        r = Reader(body, opcode_name(op))
        if op == Op.REFUSE:
            raise RelayUnavailableError(f"relay at {self.where} refused the connection: {r.text('reason')}")
        if op == Op.ERROR:
            raise error_from_wire(r.text("error name"), r.text("message"))
        if op != Op.WELCOME:
            raise RelayUnavailableError(f"relay at {self.where} sent {opcode_name(op)} where WELCOME was expected")
        self.version = r.u16("version")
        self.node_id = r.text("node id")
        self.network = r.text("network")
        self.max_message_size = r.u32("max message size")
        r.end()
        self._read_task = asyncio.ensure_future(self._read_loop())
        self._keepalive_task = asyncio.ensure_future(self._keepalive())

    async def close(self) -> None:
        """Closes the connection; everything opened through it ends. Idempotent."""
        if self._closed_error is not None:
            return
        self._fail(AbortedError("relay client closed"))
        try:
            await self._writer.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass

    @property
    def closed(self) -> bool:
        """True once the connection is closed or lost."""
        return self._closed_error is not None

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _fail(self, err: BaseException) -> None:
        """Ends the connection and fails everything pending with ``err`` (first error wins)."""
        if self._closed_error is not None:
            return
        self._closed_error = err
        self._writer.close()
        for task in (self._read_task, self._keepalive_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        pending = list(self._pending.values())
        self._pending.clear()
        for fut, _hook in pending:
            if not fut.done():
                fut.set_exception(err)
        self._subs.fail_all(err)
        self._members.abort_all()
        lost = TunnelClosedError(f"tunnel lost: {err}")
        for t in list(self.tunnels.values()):
            t._terminate(lost)
        self.tunnels.clear()
        self._consumers.fail_all(err)
        self._watches.fail_all(err)
        for task in list(self._tasks):
            task.cancel()

    # ---- frames ---------------------------------------------------------------------------

    async def _read_frame(self, max_length: int) -> Tuple[int, int, bytes]:
        head = await self._reader.readexactly(4)
        length = int.from_bytes(head, "big")
        if length < 5 or length > max_length:
            raise RelayUnavailableError(f"relay at {self.where} sent a frame of {length} bytes (limit {max_length})")
        rest = await self._reader.readexactly(length)
        return rest[0], int.from_bytes(rest[1:5], "big"), rest[5:]

    async def _read_loop(self) -> None:
        try:
            while True:
                op, corr_id, body = await self._read_frame(self.max_message_size + FRAME_OVERHEAD)
                self._dispatch(op, corr_id, body, len(body) + 5)
        except asyncio.CancelledError:
            raise
        except PlexusError as e:  # before OSError: RelayUnavailableError is a ConnectionError
            self._fail(e)
        except (asyncio.IncompleteReadError, OSError):
            self._fail(RelayUnavailableError(f"connection to the relay at {self.where} was lost"))
        except Exception as e:  # a bug here must not leave callers waiting forever
            self._fail(RelayUnavailableError(f"relay client failed reading from {self.where}: {e!r}"))

    def _dispatch(self, op: int, corr_id: int, body: bytes, length: int) -> None:
        if op == Op.PING:
            self._send(Op.PONG, corr_id)
            return
        if op == Op.ERROR and corr_id == CONNECTION_ID:
            r = Reader(body, "ERROR")
            name, message = r.text("error name"), r.text("message")
            self._fail(error_from_wire(name, f"relay at {self.where} closed the connection: {message}"))
            return
        handler = self._handlers.get(op)
        if handler is not None:
            handler(corr_id, body, length)
            return
        entry = self._pending.pop(corr_id, None)
        if entry is None:
            if op == Op.TUNNEL_OPENED:  # opened after its caller gave up: end it
                tid = Reader(body, "TUNNEL_OPENED").u32("tunnel id")
                self._send(Op.TUNNEL_CLOSE, tid, Writer().u8(1).text("TunnelClosedError").text("abandoned").body())
            return  # the answer to a call given up on
        fut, hook = entry
        if hook is not None:
            hook(op, body)
        if not fut.done():
            fut.set_result((op, body))

    def _send(self, opcode: int, corr_id: int, body: bytes = b"") -> None:
        """Writes one frame (no wait; see ``_drain``). Nothing is written once closed."""
        if self._closed_error is None:
            self._writer.write(frame(opcode, corr_id, body))

    async def _drain(self) -> None:
        """Waits while the socket's send buffer is over its high-water mark."""
        async with self._drain_lock:
            try:
                await self._writer.drain()
            except (ConnectionError, OSError):
                self._fail(RelayUnavailableError(f"connection to the relay at {self.where} was lost"))
        if self._closed_error is not None:
            raise self._closed_error

    def _spawn(self, coro: "Coroutine[Any, Any, Any]") -> "asyncio.Task[Any]":
        """Runs a handler task owned by the connection (cancelled when it closes)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _alloc_id(self) -> int:
        i = self._next_id
        while i == CONNECTION_ID or i in self._pending:
            i = (i + 1) & 0xFFFFFFFF
        self._next_id = (i + 1) & 0xFFFFFFFF
        return i

    async def _call(
        self,
        opcode: int,
        body: bytes = b"",
        expect: Optional[int] = None,
        *,
        cancel: bool = False,
        hook: Optional[Callable[[int, bytes], None]] = None,
        on_id: Optional[Callable[[int], None]] = None,
    ) -> Tuple[int, Reader]:
        """Sends one call frame and waits for its answer. An ERROR answer raises its class;
        with ``expect``, another opcode raises ``RelayUnavailableError``. If the waiting task
        is cancelled and ``cancel`` is set, CANCEL tells the relay to give the call up.
        ``hook(opcode, body)`` runs in the reader as the answer arrives (before any frame after it)."""
        if self._closed_error is not None:
            raise self._closed_error
        corr_id = self._alloc_id()
        if on_id is not None:
            on_id(corr_id)
        fut: _Answer = asyncio.get_running_loop().create_future()
        self._pending[corr_id] = (fut, hook)
        self._send(opcode, corr_id, body)
        try:
            await self._drain()
            op, answer = await fut
        except BaseException as e:
            if self._pending.pop(corr_id, None) is not None and cancel and isinstance(e, asyncio.CancelledError):
                self._send(Op.CANCEL, corr_id)
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved: the caller gets `e`
            raise
        r = Reader(answer, opcode_name(op))
        if op == Op.ERROR:
            raise error_from_wire(r.text("error name"), r.text("message"))
        if expect is not None and op != expect:
            raise RelayUnavailableError(f"relay sent {opcode_name(op)} where {opcode_name(expect)} was expected")
        return op, r

    def _tunnel(self, tunnel_id: int, fn: Callable[[Tunnel], None]) -> None:
        t = self.tunnels.get(tunnel_id)
        if t is not None:
            fn(t)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            try:
                await self.ping()
            except PlexusError:
                return

    # ---- calls ----------------------------------------------------------------------------

    async def request(self, cluster: str, data: check.Payload, timeout: Optional[float] = None) -> bytes:
        """Sends ``data`` to one member of ``cluster`` (chosen by the node by load) and returns
        its reply. ``timeout`` in seconds (None: the node's default, 10 s) travels with the
        request. At-most-once. Raises ``NoMembersError``, ``PlexusTimeoutError``,
        ``RemoteError`` (the handler raised), ``OverloadedError``, ``MemberLostError``.
        Cancelling the awaiting task sends CANCEL."""
        check.name(cluster, "cluster")
        payload = check.payload(data, "data", self.max_message_size)
        ms = check.timeout_ms(timeout)
        body = Writer().text(cluster).u32(ms).blob(payload).body()
        _op, r = await self._call(Op.REQUEST, body, Op.REPLY, cancel=True)
        reply = r.blob("data")
        r.end()
        return reply

    async def request_reply(
        self,
        cluster: str,
        data: check.Payload,
        *,
        headers: Optional[Dict[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> Reply:
        """``request`` with headers both ways: sends ``headers`` with the request and returns a
        ``Reply`` with the data and the headers the member's handler returned (``{}`` none).
        Same delivery, errors and cancelling as ``request``."""
        return await request_reply(self, cluster, data, headers, timeout)

    def request_many(
        self,
        cluster: str,
        data: check.Payload,
        *,
        max_replies: int = 0,
        timeout: Optional[float] = None,
        headers: Optional[Dict[str, str]] = None,
    ) -> AsyncIterator[Reply]:
        """Asks every member of ``cluster`` that serves requests (each at most once) and yields
        their ``Reply``s (``from_`` names the member) as they come, until ``max_replies`` replies
        (0: every member), the ``timeout`` (seconds; what came by then) or every member
        answered. Members that fail are skipped. ``NoMembersError`` when none serves requests.
        Leaving the loop early sends CANCEL."""
        return request_many(self, cluster, data, max_replies, timeout, headers)

    async def kv(
        self, bucket: str, *, cluster: Optional[str] = None, replicas: Optional[int] = None, timeout: Optional[float] = None
    ) -> Kv:
        """Opens key-value bucket ``bucket`` (creating its compacted stream in ``cluster`` with
        ``replicas`` when absent; an existing bucket needs no cluster). See ``Kv``."""
        kv = Kv(self, bucket, cluster, replicas)
        await kv._open(timeout)
        return kv

    async def broadcast(self, cluster: str, data: check.Payload) -> int:
        """Sends ``data`` to every reachable member of ``cluster``, at most once each, no
        replies; returns how many members the node handed it to."""
        check.name(cluster, "cluster")
        payload = check.payload(data, "data", self.max_message_size)
        _op, r = await self._call(Op.BROADCAST, Writer().text(cluster).blob(payload).body(), Op.OK)
        n = r.u32("count")
        r.end()
        return n

    async def publish(
        self,
        topic: str,
        data: check.Payload,
        *,
        key: Optional[check.Payload] = None,
        headers: Optional[Dict[str, str]] = None,
        ack: Optional[str] = None,
        msg_id: Optional[str] = None,
        timeout: Optional[float] = None,
        capability: Optional[str] = None,
    ) -> Optional[PublishAck]:
        """Publishes ``data`` on ``topic`` to every matching subscriber (at most once, in
        order per publisher). With ``ack='leader'`` or ``'all'`` a durable stream must capture
        the topic: returns ``PublishAck(stream, partition, offset)`` once the partition leader
        stored it (leader) or a majority of its replicas did (all); else None once the node
        queued it on every link. ``msg_id`` lets the stream drop a duplicate."""
        body = publish_body(topic, data, self.max_message_size, key, headers, ack, msg_id, timeout, capability)
        op, r = await self._call(Op.PUBLISH, body)
        return read_publish_answer(op, r)

    def subscribe(self, pattern: str, *, max_pending: int = 0, queue: Optional[str] = None) -> Subscription:
        """Subscribes to ``pattern`` (``*`` one token, ``>`` the rest). ``await`` the result to
        wait until the subscription is live (a publish made after that by any node linked to
        the relay's node reaches it), then iterate it with ``async for``; or iterate at once.
        Messages wait in a queue of ``max_pending`` messages (0: 8192; also the relay's
        bound); beyond it new ones are dropped and counted in ``sub.dropped``. With ``queue``
        (1-64 characters of ``[A-Za-z0-9_-]``) the subscription joins that queue group: each
        message goes to one subscriber of the group network-wide (at most once), while plain
        subscribers all get it."""
        return self._subs.subscribe(pattern, max_pending, queue)

    async def flush(self, timeout: Optional[float] = None) -> None:
        """Returns once every subscribe and unsubscribe the node has handled so far is known
        to every node linked to it (``PlexusTimeoutError`` after ``timeout`` seconds, default 10)."""
        await self._call(Op.FLUSH, Writer().u32(check.timeout_ms(timeout)).body(), Op.OK, cancel=True)

    async def join(
        self,
        cluster: str,
        key: check.Payload,
        *,
        on_request: Optional[RequestHandler] = None,
        on_broadcast: Optional[BroadcastHandler] = None,
        on_tunnel: Optional[TunnelHandler] = None,
        limits: Optional[Limits] = None,
    ) -> Membership:
        """Makes the relay's node a member of ``cluster`` (``key``: 64 hex characters, a
        passphrase of 16+ characters, or bytes) on behalf of this connection, serving what has
        a handler. Handlers may be plain functions or coroutines. Leave with
        ``await membership.leave()``; closing the connection leaves too."""
        return await self._members.join(cluster, key, on_request, on_broadcast, on_tunnel, limits)

    async def serve(
        self, cluster: str, key: check.Payload, handler: RequestHandler, *, limits: Optional[Limits] = None
    ) -> Membership:
        """``join(cluster, key, on_request=handler)``: answers requests to ``cluster`` with
        ``handler(data, ctx)`` (bytes or str; raising sends the caller ``RemoteError``)."""
        return await self.join(cluster, key, on_request=handler, limits=limits)

    async def tunnel(self, cluster: str, timeout: Optional[float] = None) -> Tunnel:
        """Opens a tunnel to one member of ``cluster`` (one that joined with ``on_tunnel``):
        an ordered, flow-controlled, bidirectional message channel. Raises ``NoMembersError``,
        ``OverloadedError``, ``PlexusTimeoutError``."""
        return await open_tunnel(self, cluster, timeout)

    def consume(
        self,
        stream: str,
        *,
        durable: Optional[str] = None,
        from_: Any = "earliest",
        partition: Optional[int] = None,
        ack_wait: Optional[float] = None,
        capability: Optional[str] = None,
        filter: Optional[str] = None,
        max_deliver: Optional[int] = None,
        backoff: Optional[List[float]] = None,
        max_ack_pending: Optional[int] = None,
        ack_policy: Optional[str] = None,
    ) -> Consumer:
        """Reads a durable stream: every partition (or ``partition``) in offset order, then
        live. ``from_``: 'earliest', 'latest', 'new', an offset (int or ``{'offset': n}``) or a
        ``datetime``. A ``durable`` consumer resumes after its last acknowledged message
        (``await m.ack()``); an unacknowledged one is redelivered after ``ack_wait`` seconds.
        ``await`` the result to wait until it is open; iterate it with ``async for`` (push), or
        call ``await consumer.fetch(max, expires)`` for batches (pull; one way per consumer).
        Options as the library's ``ConsumeOptions``: ``filter`` (a subject pattern within the
        stream), and for durable consumers ``max_deliver`` (then the message is dropped and
        counted), ``backoff`` (redelivery delays in seconds), ``max_ack_pending`` and
        ``ack_policy`` ('explicit' or 'none'). The node refuses bad values naming the option."""
        options = (filter, max_deliver, backoff, max_ack_pending, ack_policy)
        return self._consumers.consume(stream, durable, from_, partition, ack_wait, capability, options)

    async def status(self) -> Dict[str, Any]:
        """The node's status (peers, clusters and members, streams, counters) as a dict."""
        _op, r = await self._call(Op.STATUS, b"", Op.STATUS_REPLY)
        doc = r.blob("json")
        r.end()
        parsed: Dict[str, Any] = json.loads(doc.decode("utf-8"))
        return parsed

    async def ping(self) -> float:
        """A PING round trip to the relay, in seconds."""
        start = time.monotonic()
        await self._call(Op.PING, b"", Op.PONG)
        return time.monotonic() - start

