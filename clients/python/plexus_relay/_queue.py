"""The two flow-control pieces every stream of messages in this client uses: a bounded
asyncio queue (what the application has not read yet) and byte-credit return (the relay
protocol's credit, docs/relay-protocol.md "Tunnels" -> "Flow control")."""

from __future__ import annotations

import asyncio
import collections
from typing import Callable, Deque, Generic, Optional, Tuple, TypeVar

T = TypeVar("T")


class BoundedQueue(Generic[T]):
    """A queue of at most ``max_items`` items and ``max_bytes`` bytes (``size(item)``) for
    one reader. ``push`` never blocks: it returns False when the item does not fit, and the
    caller decides (drop and count, or fail the flow). ``taken(item, idle)`` runs as the
    reader takes each item (``idle``: nothing else is queued), which is where credit goes back.
    ``end()`` lets the reader drain what is queued, then stop; ``fail(err)`` raises ``err``
    to the reader once the queue is empty."""

    def __init__(
        self,
        max_items: int,
        max_bytes: int,
        size: Callable[[T], int],
        taken: Optional[Callable[[T, bool], None]] = None,
    ) -> None:
        self._items: Deque[Tuple[T, int]] = collections.deque()
        self._bytes = 0
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._size = size
        self._taken = taken
        self._waiter: "Optional[asyncio.Future[None]]" = None
        self._ended = False
        self._error: Optional[BaseException] = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Bytes held."""
        return self._bytes

    def push(self, item: T) -> bool:
        """Queues ``item``; False (nothing queued) when it would pass a bound or the queue ended."""
        if self._ended:
            return False
        n = self._size(item)
        if len(self._items) >= self._max_items or self._bytes + n > self._max_bytes:
            return False
        self._items.append((item, n))
        self._bytes += n
        self._wake()
        return True

    def end(self) -> None:
        """No more items: the reader gets what is queued, then the end."""
        self._ended = True
        self._wake()

    def fail(self, err: BaseException) -> None:
        """Ends the queue with ``err``: the reader gets what is queued, then ``err``."""
        if self._ended:
            return
        self._ended = True
        self._error = err
        self._wake()

    def clear(self) -> None:
        """Drops what is queued (after the reader stopped)."""
        self._items.clear()
        self._bytes = 0

    def _wake(self) -> None:
        w = self._waiter
        self._waiter = None
        if w is not None and not w.done():
            w.set_result(None)

    async def get(self) -> T:
        """The next item; raises ``StopAsyncIteration`` after ``end()``, or the error of ``fail()``."""
        while not self._items:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        item, n = self._items.popleft()
        self._bytes -= n
        if self._taken is not None:
            self._taken(item, not self._items)
        return item


class CreditReturn:
    """Credit owed to the relay for data the application took, returned in batches: when a
    quarter of the window is owed, or when nothing else waits to be read."""

    def __init__(self, window: int, send: Callable[[int], None]) -> None:
        self._window = window
        self._send = send
        self._owed = 0

    def consumed(self, n: int, idle: bool) -> None:
        """``n`` more bytes were taken; ``idle``: nothing else is queued."""
        self._owed += n
        if self._owed > 0 and (self._owed * 4 >= self._window or idle):
            owed, self._owed = self._owed, 0
            self._send(owed)
