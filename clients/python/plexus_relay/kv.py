"""Key-value buckets through the relay (KV_CALL / KV_REPLY, KV_WATCH / KV_CHANGE /
KV_WATCH_CLOSE; docs/relay-protocol.md, "Key-value buckets"; semantics in docs/kv.md): a
bucket is a compacted stream, a key's revision is the offset of its latest write. Writes go
through the partition's Raft leader (linearizable); reads as ``streams.get``."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Optional

from . import validate as check
from ._queue import BoundedQueue
from .errors import InvalidArgumentError, OverloadedError, RelayUnavailableError, error_from_wire
from .wire import Op, Reader, Writer

if TYPE_CHECKING:
    from .client import Client

_BUCKET_RE = re.compile(r"^[A-Za-z0-9_-]{1,61}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_=/-]+(\.[A-Za-z0-9_=/-]+)*$")
_GET, _PUT, _CREATE, _UPDATE, _DELETE, _KEYS, _HISTORY, _OPEN = 1, 2, 3, 4, 5, 6, 7, 8
#: Changes a watch queues for a reader that falls behind; beyond it the watch fails (OverloadedError).
WATCH_MAX_PENDING = 8192
#: Most watches one connection may hold (the relay's bound).
MAX_WATCHES = 64


@dataclass(frozen=True)
class KvEntry:
    """A key's value at ``revision`` (the offset of that write); ``operation`` is 'put' or
    'delete' (a delete has an empty value); ``timestamp`` in ms since the epoch."""

    key: str
    revision: int
    operation: str
    timestamp: int
    value: bytes

    def string(self) -> str:
        """The value as UTF-8 text."""
        return self.value.decode("utf-8")

    def json(self) -> Any:
        """The value parsed as JSON."""
        return json.loads(self.value)


def _entry(r: Reader) -> KvEntry:
    key, revision, op = r.text("key"), r.u64("revision"), r.u8("operation")
    if op > 1:
        raise RelayUnavailableError(f"malformed KV entry from the relay: unknown operation {op}")
    return KvEntry(key, revision, "put" if op == 0 else "delete", r.u64("timestamp"), r.blob("value"))


class Kv:
    """A key-value bucket (``await client.kv(bucket, cluster=…, replicas=…)``). Keys are
    dot-separated tokens (no wildcards); values are bytes (str is UTF-8). ``create`` raises
    ``KeyExistsError`` when the key has a value; ``update`` raises ``WrongRevisionError`` when
    the key's revision is not the one given."""

    def __init__(self, client: "Client", bucket: str, cluster: Optional[str], replicas: Optional[int]) -> None:
        if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket):
            raise InvalidArgumentError(f"bucket must be 1-61 characters of [A-Za-z0-9_-], got {check.describe(bucket)}")
        if cluster is not None:
            check.name(cluster, "cluster")
        if replicas is not None and (isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 0xFFFF):
            raise InvalidArgumentError(f"replicas must be a positive integer, got {check.describe(replicas)}")
        self.client = client
        self.bucket = bucket
        self.cluster = cluster or ""
        self.replicas = replicas or 0

    async def _call(self, op: int, key: str = "", revision: int = 0, value: bytes = b"", timeout: Optional[float] = None) -> Reader:
        w = Writer().u8(op).text(self.bucket).text(self.cluster).u16(self.replicas).u32(check.timeout_ms(timeout))
        w.text(key).u64(revision).blob(value)
        _op, r = await self.client._call(Op.KV_CALL, w.body(), Op.KV_REPLY, cancel=True)
        return r

    @staticmethod
    def _key(key: Any) -> str:
        if not isinstance(key, str) or len(key) > 256 or not _KEY_RE.match(key):
            raise InvalidArgumentError(
                f"key must be dot-separated tokens of [A-Za-z0-9_=/-], at most 256 characters, got {check.describe(key)}"
            )
        return key

    def _value(self, value: Any) -> bytes:
        return check.payload(value, "value", self.client.max_message_size)

    async def _open(self, timeout: Optional[float]) -> None:
        (await self._call(_OPEN, timeout=timeout)).end()

    async def _revision(self, op: int, key: str, revision: int, value: bytes, timeout: Optional[float]) -> int:
        r = await self._call(op, key, revision, value, timeout)
        rev = r.u64("revision")
        r.end()
        return rev

    async def put(self, key: str, value: check.Payload, *, timeout: Optional[float] = None) -> int:
        """Writes ``value``; returns its revision."""
        return await self._revision(_PUT, self._key(key), 0, self._value(value), timeout)

    async def create(self, key: str, value: check.Payload, *, timeout: Optional[float] = None) -> int:
        """Writes ``value`` only if ``key`` has none (``KeyExistsError``); returns the revision."""
        return await self._revision(_CREATE, self._key(key), 0, self._value(value), timeout)

    async def update(self, key: str, value: check.Payload, revision: int, *, timeout: Optional[float] = None) -> int:
        """Writes ``value`` only if ``key``'s revision is ``revision`` (compare-and-set;
        ``WrongRevisionError``); returns the new revision."""
        if isinstance(revision, bool) or not isinstance(revision, int) or not 0 <= revision < 2**53:
            raise InvalidArgumentError(f"revision must be a non-negative integer, got {check.describe(revision)}")
        return await self._revision(_UPDATE, self._key(key), revision, self._value(value), timeout)

    async def delete(self, key: str, *, timeout: Optional[float] = None) -> int:
        """Deletes ``key`` (a tombstone); returns the delete's revision."""
        return await self._revision(_DELETE, self._key(key), 0, b"", timeout)

    async def get(self, key: str, *, timeout: Optional[float] = None) -> Optional[KvEntry]:
        """The key's current entry, or None (never written, or deleted)."""
        r = await self._call(_GET, self._key(key), timeout=timeout)
        e = _entry(r) if r.u8("found") else None
        r.end()
        return e

    async def keys(self, *, timeout: Optional[float] = None) -> List[str]:
        """The keys that have a value."""
        r = await self._call(_KEYS, timeout=timeout)
        out = [r.text("key") for _ in range(r.u32("key count"))]
        r.end()
        return out

    async def history(self, key: str, *, timeout: Optional[float] = None) -> List[KvEntry]:
        """The key's retained writes and deletes, oldest first."""
        r = await self._call(_HISTORY, self._key(key), timeout=timeout)
        out = [_entry(r) for _ in range(r.u32("entry count"))]
        r.end()
        return out

    def watch(self, pattern: str = ">") -> "KvWatch":
        """Changes of the keys matching ``pattern`` (wildcards ``*`` and ``>``): first the
        current entry of each, then every change, live. Iterate with ``async for``;
        ``close()`` ends it."""
        return self.client._watches.open(self, check.pattern(pattern, "pattern"))


class KvWatch:
    """A running ``kv.watch`` (see there). ``await watch`` waits until the relay started it."""

    def __init__(self, owner: "Watches", watch_id: int) -> None:
        self.id = watch_id
        self._owner = owner
        self._closed = False
        self._queue: BoundedQueue[KvEntry] = BoundedQueue(WATCH_MAX_PENDING, 1 << 62, lambda _e: 0)
        self._ready: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()

    async def ready(self) -> None:
        """Returns once the relay started the watch; raises its error otherwise."""
        await asyncio.shield(self._ready)

    def __await__(self) -> Any:
        yield from self.ready().__await__()
        return self

    def __aiter__(self) -> "KvWatch":
        return self

    async def __anext__(self) -> KvEntry:
        if not self._ready.done():
            await self.ready()
        return await self._queue.get()

    def close(self) -> None:
        """Ends the watch (iteration stops). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._owner.client._send(Op.KV_WATCH_CLOSE, self.id, Writer().u8(0).body())
        self._queue.end()
        self._owner.forget(self)

    def _fail(self, err: BaseException) -> None:
        if not self._ready.done():
            self._ready.set_exception(err)
            self._ready.exception()
        if self._closed:
            return
        self._closed = True
        self._queue.fail(err)
        self._owner.forget(self)


class Watches:
    """The KV watches of one client (internal): ids, KV_CHANGE / KV_WATCH_CLOSE routing."""

    def __init__(self, client: "Client") -> None:
        self.client = client
        self._open: Dict[int, KvWatch] = {}
        self._next_id = 1
        client._handlers[Op.KV_CHANGE] = self._on_change
        client._handlers[Op.KV_WATCH_CLOSE] = self._on_close

    def open(self, kv: Kv, pattern: str) -> KvWatch:
        client = self.client
        if client._closed_error is not None:
            raise client._closed_error
        if len(self._open) >= MAX_WATCHES:
            raise InvalidArgumentError(f"at most {MAX_WATCHES} watches per connection")
        wid = self._next_id
        while wid == 0 or wid in self._open:
            wid = (wid + 1) & 0xFFFFFFFF
        self._next_id = (wid + 1) & 0xFFFFFFFF
        watch = KvWatch(self, wid)
        self._open[wid] = watch
        body = Writer().u32(wid).text(kv.bucket).text(kv.cluster).text(pattern).body()

        async def start() -> None:
            try:
                await client._call(Op.KV_WATCH, body, Op.OK)
            except Exception as e:
                watch._fail(e)
                return
            if not watch._ready.done():
                watch._ready.set_result(None)

        client._spawn(start())
        return watch

    def forget(self, w: KvWatch) -> None:
        if self._open.get(w.id) is w:
            del self._open[w.id]

    def fail_all(self, err: BaseException) -> None:
        for w in list(self._open.values()):
            w._fail(err)

    def _on_change(self, wid: int, body: bytes, _length: int) -> None:
        r = Reader(body, "KV_CHANGE")
        e = _entry(r)
        r.end()
        w = self._open.get(wid)
        if w is not None and not w._queue.push(e):
            self.client._send(Op.KV_WATCH_CLOSE, wid, Writer().u8(0).body())
            w._fail(OverloadedError(f"kv watch: more than {WATCH_MAX_PENDING} changes waiting unread"))

    def _on_close(self, wid: int, body: bytes, _length: int) -> None:
        r = Reader(body, "KV_WATCH_CLOSE")
        kind = r.u8("kind")
        err = error_from_wire(r.text("error name"), r.text("message")) if r.remaining > 0 else None
        r.end()
        w = self._open.get(wid)
        if w is None:
            return
        if kind == 1:
            w._fail(err or RelayUnavailableError("kv watch failed"))
        else:
            w._closed = True
            w._queue.end()
            self.forget(w)
