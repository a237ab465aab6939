"""Serving clusters through the relay: JOIN / LEAVE, and the work the node routes to a
member: INVOKE (requests), BROADCAST_DELIVER (broadcasts) and TUNNEL_INCOMING (tunnels).
Each runs its handler in its own task; handlers may be plain functions or coroutines."""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, Optional, Tuple, Union

from . import validate as check
from .errors import InvalidArgumentError, PlexusError
from .tunnel import Tunnel, tunnel_window
from .wire import JOIN_BROADCASTS, JOIN_HEADERS, JOIN_REQUESTS, JOIN_TUNNELS, Op, Reader, Writer

if TYPE_CHECKING:
    from .client import Client


@dataclass(frozen=True)
class Limits:
    """A member's limits (0: the node's defaults of 1024 concurrent requests, 256
    broadcasts, 128 tunnels, 64 MiB queued bytes); over them callers get ``OverloadedError``."""

    requests: int = 0
    broadcasts: int = 0
    tunnels: int = 0
    queue_bytes: int = 0


@dataclass(frozen=True)
class RequestContext:
    """What a handler knows of the call: the cluster, the caller's node id ``from_`` and
    ``deadline`` (``time.time()`` seconds) after which the caller no longer waits. When the
    caller gives up first, the handler's task is cancelled."""

    cluster: str
    from_: str
    deadline: float
    #: The request's headers (``request_reply`` / ``request_many`` / the library's ``headers``); {} when none.
    headers: Dict[str, str] = field(default_factory=dict)

    @property
    def remaining(self) -> float:
        """Seconds left before the deadline (0 when passed)."""
        return max(0.0, self.deadline - time.time())


Reply = Union[bytes, bytearray, memoryview, str, Tuple[Union[bytes, bytearray, memoryview, str], Dict[str, str]]]
#: ``handler(data, ctx) -> reply`` (bytes or str, or ``(data, headers)`` to send reply headers), plain or async.
RequestHandler = Callable[[bytes, RequestContext], Union[Reply, Awaitable[Reply]]]
#: ``handler(data, ctx)``, plain or async; its return value is ignored.
BroadcastHandler = Callable[[bytes, RequestContext], Any]
#: ``handler(tunnel, ctx)``, plain or async; the tunnel fails if it raises.
TunnelHandler = Callable[[Tunnel, RequestContext], Any]


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    r = fn(*args)
    if inspect.isawaitable(r):
        r = await r
    return r


class Membership:
    """A cluster joined through the relay; ``await leave()`` withdraws it at once."""

    def __init__(self, owner: "Memberships", cluster: str) -> None:
        self.cluster = cluster
        self._owner = owner
        self._left = False

    async def leave(self) -> None:
        """Leaves the cluster (idempotent). Invocations still running finish unanswered."""
        if self._left:
            return
        self._left = True
        client = self._owner.client
        try:
            if not client.closed:
                await client._call(Op.LEAVE, Writer().text(self.cluster).body(), Op.OK)
        finally:
            self._owner._handlers.pop(self.cluster, None)


@dataclass
class _Handlers:
    on_request: Optional[RequestHandler]
    on_broadcast: Optional[BroadcastHandler]
    on_tunnel: Optional[TunnelHandler]


class Memberships:
    """The clusters a client joined, with their handlers and running invocations (internal)."""

    def __init__(self, client: "Client") -> None:
        self.client = client
        self._handlers: Dict[str, _Handlers] = {}
        self._invocations: "Dict[int, asyncio.Task[None]]" = {}
        client._handlers[Op.INVOKE] = self._on_invoke
        client._handlers[Op.INVOKE_HEADERS] = self._on_invoke_headers
        client._handlers[Op.INVOKE_CANCEL] = self._on_invoke_cancel
        client._handlers[Op.BROADCAST_DELIVER] = self._on_broadcast
        client._handlers[Op.TUNNEL_INCOMING] = self._on_tunnel_incoming

    async def join(
        self,
        cluster: str,
        key: Any,
        on_request: Optional[RequestHandler],
        on_broadcast: Optional[BroadcastHandler],
        on_tunnel: Optional[TunnelHandler],
        limits: Optional[Limits],
    ) -> Membership:
        check.name(cluster, "cluster")
        check.parse_key(key, "key")
        for field, fn in (("on_request", on_request), ("on_broadcast", on_broadcast), ("on_tunnel", on_tunnel)):
            if fn is not None and not callable(fn):
                raise InvalidArgumentError(f"{field} must be callable, got {check.describe(fn)}")
        lim = limits if limits is not None else Limits()
        if not isinstance(lim, Limits):
            raise InvalidArgumentError(f"limits must be a Limits, got {check.describe(limits)}")
        if cluster in self._handlers:
            raise InvalidArgumentError(f"cluster must be a cluster not yet joined by this client, got {cluster!r}")
        flags = (
            (JOIN_REQUESTS | JOIN_HEADERS if on_request else 0)
            | (JOIN_BROADCASTS if on_broadcast else 0)
            | (JOIN_TUNNELS if on_tunnel else 0)
        )
        w = Writer().text(cluster)
        if isinstance(key, str):
            w.u8(0).blob(key.encode("utf-8"))
        else:
            w.u8(1).blob(bytes(key))
        w.u32(check.u32(lim.requests, "limits.requests")).u32(check.u32(lim.broadcasts, "limits.broadcasts"))
        w.u32(check.u32(lim.tunnels, "limits.tunnels")).u32(check.u32(lim.queue_bytes, "limits.queue_bytes"))
        w.u8(flags)
        self._handlers[cluster] = _Handlers(on_request, on_broadcast, on_tunnel)
        try:
            await self.client._call(Op.JOIN, w.body(), Op.OK)
        except BaseException:
            self._handlers.pop(cluster, None)
            raise
        return Membership(self, cluster)

    def abort_all(self) -> None:
        """Cancels every running invocation (the connection is gone)."""
        for task in self._invocations.values():
            task.cancel()
        self._invocations.clear()

    def _on_invoke(self, inv_id: int, body: bytes, _length: int) -> None:
        r = Reader(body, "INVOKE")
        cluster, remaining_ms, sender, data = r.text("cluster"), r.u32("remaining"), r.text("from"), r.blob("data")
        r.end()
        self._invoke(inv_id, cluster, remaining_ms, sender, {}, data)

    def _on_invoke_headers(self, inv_id: int, body: bytes, _length: int) -> None:
        r = Reader(body, "INVOKE_HEADERS")
        cluster, remaining_ms, sender = r.text("cluster"), r.u32("remaining"), r.text("from")
        headers = r.headers()
        data = r.blob("data")
        r.end()
        self._invoke(inv_id, cluster, remaining_ms, sender, headers, data)

    def _invoke(self, inv_id: int, cluster: str, remaining_ms: int, sender: str, headers: Dict[str, str], data: bytes) -> None:
        client = self.client
        h = self._handlers.get(cluster)
        if h is None or h.on_request is None:
            client._send(Op.INVOKE_ERROR, inv_id, Writer().text(f"{cluster}: this member has no request handler").body())
            return
        ctx = RequestContext(cluster, sender, time.time() + remaining_ms / 1000, headers)
        handler = h.on_request

        async def invoke() -> None:
            # Past the deadline, or when the caller gives up, the relay sends INVOKE_CANCEL,
            # which cancels this task: no answer is sent then.
            try:
                reply = await _run(handler, data, ctx)
                reply_headers: Optional[Dict[str, str]] = None
                if isinstance(reply, tuple):
                    if len(reply) != 2:
                        raise InvalidArgumentError("a reply tuple must be (data, headers)")
                    reply, reply_headers = reply[0], check.headers(reply[1], "reply headers")
                out = check.payload(reply, "reply", client.max_message_size)
            except Exception as e:  # the caller gets RemoteError with this message
                message = e.message if isinstance(e, PlexusError) else (str(e) or type(e).__name__)
                if self._invocations.get(inv_id) is task:
                    del self._invocations[inv_id]
                    client._send(Op.INVOKE_ERROR, inv_id, Writer().text(message[:4096]).body())
                return
            if self._invocations.get(inv_id) is task:
                del self._invocations[inv_id]
                if reply_headers:
                    client._send(Op.INVOKE_REPLY_HEADERS, inv_id, Writer().headers(reply_headers).blob(out).body())
                else:
                    client._send(Op.INVOKE_REPLY, inv_id, Writer().blob(out).body())

        task = client._spawn(invoke())
        self._invocations[inv_id] = task

        def done(t: "asyncio.Task[None]") -> None:
            # The relay may reuse the id for a new INVOKE once this one was answered.
            if self._invocations.get(inv_id) is t:
                del self._invocations[inv_id]

        task.add_done_callback(done)

    def _on_invoke_cancel(self, inv_id: int, _body: bytes, _length: int) -> None:
        task = self._invocations.pop(inv_id, None)
        if task is not None:
            task.cancel()

    def _on_broadcast(self, deliver_id: int, body: bytes, _length: int) -> None:
        client = self.client
        r = Reader(body, "BROADCAST_DELIVER")
        cluster, sender, data = r.text("cluster"), r.text("from"), r.blob("data")
        r.end()
        h = self._handlers.get(cluster)
        if h is None or h.on_broadcast is None:
            client._send(Op.BROADCAST_ACK, deliver_id)
            return
        handler = h.on_broadcast

        async def deliver() -> None:
            try:
                await _run(handler, data, RequestContext(cluster, sender, float("inf")))
            except Exception:  # noqa: S110 - a failing broadcast handler is acknowledged like any other
                pass
            finally:
                client._send(Op.BROADCAST_ACK, deliver_id)

        client._spawn(deliver())

    def _on_tunnel_incoming(self, tunnel_id: int, body: bytes, _length: int) -> None:
        client = self.client
        r = Reader(body, "TUNNEL_INCOMING")
        cluster, sender, credit = r.text("cluster"), r.text("from"), r.u32("window")
        r.end()
        window = tunnel_window(client.max_message_size)
        t = Tunnel(client, tunnel_id, sender, cluster, credit, window)
        client.tunnels[tunnel_id] = t
        h = self._handlers.get(cluster)
        if h is None or h.on_tunnel is None:
            t.abort(f"{cluster}: this member does not accept tunnels")
            return
        handler = h.on_tunnel
        client._send(Op.TUNNEL_CREDIT, tunnel_id, Writer().u32(window).body())  # accept: grant our window

        async def accept() -> None:
            try:
                await _run(handler, t, RequestContext(cluster, sender, float("inf")))
            except asyncio.CancelledError:
                t.abort("the connection closed")
                raise
            except Exception as e:
                t.abort(f"handler failed: {e}")

        client._spawn(accept())
