"""One end of a tunnel carried by the relay (TUNNEL_DATA / TUNNEL_CREDIT / TUNNEL_CLOSE):
ordered messages with byte credit in both directions. ``send`` waits until the relay's
credit covers the message; received messages wait in a queue bounded by the window this end
granted, and their credit goes back as the application reads them, so a slow reader here
slows the remote writer end to end."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Dict, Optional

from . import validate as check
from ._queue import BoundedQueue, CreditReturn
from .errors import TunnelClosedError, error_from_wire
from .wire import CLOSE_FAILED, CLOSE_HALF, Op, Reader, Writer

if TYPE_CHECKING:
    from .client import Client

#: Credit (bytes) this client grants the relay per tunnel: 2 MiB, or one message if larger.
DEFAULT_TUNNEL_WINDOW = 2 * 1024 * 1024


def tunnel_window(max_message_size: int) -> int:
    """The window a tunnel end grants the relay (at least one largest message)."""
    return max(DEFAULT_TUNNEL_WINDOW, max_message_size)


class Tunnel:
    """An ordered, reliable, flow-controlled message channel to one member of ``cluster``
    (node ``peer``). ``await send(data)``; ``await recv()`` (None once the other side
    half-closed) or ``async for data in tunnel``; ``await close()`` half-closes (the other
    side reads what was sent, then its end); ``abort(reason)`` fails both directions. A
    failure (peer died, connection lost) raises ``TunnelClosedError`` on both ends."""

    def __init__(self, client: "Client", tunnel_id: int, peer: str, cluster: str, credit: int, window: int) -> None:
        self.id = tunnel_id
        self.peer = peer
        self.cluster = cluster
        self.window = window
        self._client = client
        self._credit = credit
        self._credit_changed = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._local_closed = False
        self._remote_closed = False
        self._terminated = False
        self._error: Optional[BaseException] = None
        self._done = False
        self._returns = CreditReturn(window, lambda n: client._send(Op.TUNNEL_CREDIT, tunnel_id, Writer().u32(n).body()))
        self._inbox: BoundedQueue[bytes] = BoundedQueue(1 << 62, window, len, self._taken)

    @property
    def closed(self) -> bool:
        """True once this side closed or the tunnel failed."""
        return self._local_closed or self._terminated

    async def send(self, data: check.Payload) -> None:
        """Sends one message (at most the max message size); waits while the relay's credit
        is used up. Messages from concurrent calls leave in call order."""
        b = check.payload(data, "data", self._client.max_message_size)
        if self.closed:
            raise self._closed_error()
        async with self._send_lock:
            while self._credit < len(b) and not self._terminated:
                self._credit_changed.clear()
                await self._credit_changed.wait()
            if self._terminated:
                raise self._closed_error()
            self._credit -= len(b)
            self._client._send(Op.TUNNEL_DATA, self.id, Writer().blob(b).body())
            await self._client._drain()

    async def recv(self) -> Optional[bytes]:
        """The next message, or None once the other side half-closed and everything before it was read."""
        try:
            return await self._inbox.get()
        except StopAsyncIteration:
            return None

    def __aiter__(self) -> "Tunnel":
        return self

    async def __anext__(self) -> bytes:
        return await self._inbox.get()

    async def close(self) -> None:
        """Half-closes: no more data from this side; reading goes on until the other side
        closes. The tunnel is finished when both sides closed. Idempotent."""
        if self.closed:
            return
        self._local_closed = True
        async with self._send_lock:  # after the sends already waiting
            pass
        if self._terminated:
            return
        self._client._send(Op.TUNNEL_CLOSE, self.id, Writer().u8(CLOSE_HALF).text("").text("").body())
        if self._remote_closed:
            self._finish()

    def abort(self, reason: str = "aborted") -> None:
        """Fails the tunnel in both directions; the other end gets ``TunnelClosedError(reason)``."""
        if self._terminated:
            return
        self._client._send(
            Op.TUNNEL_CLOSE, self.id, Writer().u8(CLOSE_FAILED).text("TunnelClosedError").text(reason[:1024]).body()
        )
        self._terminate(TunnelClosedError(reason))

    async def __aenter__(self) -> "Tunnel":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if exc[0] is None:
            await self.close()
        else:
            self.abort(f"{exc[0].__name__} on this end")

    # ---- from the relay -------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        if self._terminated or self._remote_closed:
            return
        if not self._inbox.push(data):
            self.abort("flow control violated by the relay")

    def _on_credit(self, n: int) -> None:
        self._credit += n
        self._credit_changed.set()

    def _on_close(self, kind: int, name: str, message: str) -> None:
        if self._terminated or self._remote_closed:
            return
        if kind != CLOSE_HALF:
            err = TunnelClosedError(message) if name in ("", "TunnelClosedError") else error_from_wire(name, message)
            self._terminate(err)
            return
        self._remote_closed = True
        self._inbox.end()
        if self._local_closed:
            self._finish()

    def _terminate(self, err: BaseException) -> None:
        """Ends both directions with ``err``."""
        if self._terminated:
            return
        self._terminated = True
        self._error = err
        self._inbox.fail(err)
        self._credit_changed.set()
        self._finish()

    def _taken(self, data: bytes, idle: bool) -> None:
        if not self._terminated:
            self._returns.consumed(len(data), idle)

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._client.tunnels.get(self.id) is self:
            del self._client.tunnels[self.id]

    def _closed_error(self) -> BaseException:
        return self._error or TunnelClosedError("tunnel closed")


async def open_tunnel(client: "Client", cluster: str, timeout: Optional[float]) -> Tunnel:
    """Opens a tunnel to one member of ``cluster`` through ``client`` (``Client.tunnel``)."""
    check.name(cluster, "cluster")
    ms = check.timeout_ms(timeout)
    window = tunnel_window(client.max_message_size)
    made: Dict[str, Tunnel] = {}

    def opened(op: int, body: bytes) -> None:
        # Runs in the reader as TUNNEL_OPENED arrives, so data right behind it is not lost.
        if op != Op.TUNNEL_OPENED:
            return
        r = Reader(body, "TUNNEL_OPENED")
        tid, peer, credit = r.u32("tunnel id"), r.text("peer"), r.u32("window")
        r.end()
        t = Tunnel(client, tid, peer, cluster, credit, window)
        client.tunnels[tid] = t
        made["t"] = t

    try:
        await client._call(
            Op.TUNNEL_OPEN, Writer().text(cluster).u32(ms).u32(window).body(), Op.TUNNEL_OPENED, cancel=True, hook=opened
        )
    except asyncio.CancelledError:
        if "t" in made:
            made["t"].abort("the tunnel setup was abandoned")
        raise
    return made["t"]
