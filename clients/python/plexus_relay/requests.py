"""Requests with headers and ``request_many`` through the relay (REQUEST_HEADERS /
REPLY_HEADERS, REQUEST_MANY / MANY_REPLY; docs/relay-protocol.md, "Request headers and
REQUEST_MANY"). ``Client.request_reply`` and ``Client.request_many`` call these."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, Optional, Tuple, Union

from . import validate as check
from .errors import InvalidArgumentError, PlexusError, RelayUnavailableError, error_from_wire
from .wire import Op, Reader, Writer

if TYPE_CHECKING:
    from .client import Client

#: MANY_REPLY kinds.
_MANY_REPLY, _MANY_FAILED = 0, 1


@dataclass(frozen=True)
class Reply:
    """A member's reply: its data and the headers its handler returned (``{}`` when none);
    ``from_`` is the member's node id (``request_many``; '' for ``request_reply``)."""

    data: bytes
    headers: Dict[str, str]
    from_: str = ""

    def string(self) -> str:
        """The data as UTF-8 text."""
        return self.data.decode("utf-8")

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)


async def request_reply(
    client: "Client", cluster: str, data: check.Payload, headers: Optional[Dict[str, str]], timeout: Optional[float]
) -> Reply:
    """See ``Client.request_reply``."""
    check.name(cluster, "cluster")
    payload = check.payload(data, "data", client.max_message_size)
    h = check.headers(headers) or {}
    body = Writer().text(cluster).u32(check.timeout_ms(timeout)).headers(h).blob(payload).body()
    _op, r = await client._call(Op.REQUEST_HEADERS, body, Op.REPLY_HEADERS, cancel=True)
    got = r.headers()
    reply = r.blob("data")
    r.end()
    return Reply(reply, got)


#: What a running ``request_many`` gets from the reader: a reply, or None at the end.
_Item = Union[Reply, PlexusError, None]


class ManyReplies:
    """The MANY_REPLY frames of running ``request_many`` calls, by correlation id (internal)."""

    def __init__(self, client: "Client") -> None:
        self.queues: Dict[int, "asyncio.Queue[Tuple[str, _Item]]"] = {}
        client._handlers[Op.MANY_REPLY] = self._on_reply

    def _on_reply(self, corr_id: int, body: bytes, _length: int) -> None:
        r = Reader(body, "MANY_REPLY")
        from_, kind = r.text("from"), r.u8("kind")
        item: _Item
        if kind == _MANY_REPLY:
            headers = r.headers()
            item = Reply(r.blob("data"), headers, from_)
        elif kind == _MANY_FAILED:
            item = error_from_wire(r.text("error name"), r.text("message"))
        else:
            raise RelayUnavailableError(f"malformed MANY_REPLY from the relay: unknown kind {kind}")
        r.end()
        q = self.queues.get(corr_id)
        if q is not None:
            q.put_nowait((from_, item))


async def request_many(
    client: "Client",
    cluster: str,
    data: check.Payload,
    max_replies: int,
    timeout: Optional[float],
    headers: Optional[Dict[str, str]],
) -> AsyncIterator[Reply]:
    """See ``Client.request_many``."""
    check.name(cluster, "cluster")
    payload = check.payload(data, "data", client.max_message_size)
    if isinstance(max_replies, bool) or not isinstance(max_replies, int) or not 0 <= max_replies <= 0xFFFFFFFF:
        raise InvalidArgumentError(f"max_replies must be an integer >= 0 (0: every member), got {check.describe(max_replies)}")
    h = check.headers(headers) or {}
    body = Writer().text(cluster).u32(check.timeout_ms(timeout)).u32(max_replies).headers(h).blob(payload).body()
    many = client._many
    queue: "asyncio.Queue[Tuple[str, _Item]]" = asyncio.Queue()
    corr: Dict[str, int] = {}

    def started(_op: int, _body: bytes) -> None:
        queue.put_nowait(("", None))  # OK or ERROR: after every MANY_REPLY of the call

    async def run() -> None:
        await client._call(Op.REQUEST_MANY, body, Op.OK, cancel=True, hook=started, on_id=lambda i: _register(i))

    def _register(i: int) -> None:
        corr["id"] = i
        many.queues[i] = queue

    task = asyncio.ensure_future(run())
    try:
        while True:
            get = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                task.result()  # the call's error (ERROR answer, lost connection)
                while not queue.empty():
                    _f, item = queue.get_nowait()
                    if isinstance(item, Reply):
                        yield item
                return
            _from, item = get.result()
            if item is None:
                await task  # raises the call's error, if any
                return
            if isinstance(item, Reply):
                yield item
    finally:
        if not task.done():
            task.cancel()  # sends CANCEL
        many.queues.pop(corr.get("id", -1), None)
