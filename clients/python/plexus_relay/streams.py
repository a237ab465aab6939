"""Durable streams through the relay: ``client.streams.create / info / delete / list``
(STREAM_* frames) and the administration calls of STREAM_ADMIN (``update``, ``purge``,
``consumers``, ``consumer_info``, ``delete_consumer``). Consumers are in ``consumer.py``.

Durations are seconds here (the wire's milliseconds are converted)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from . import validate as check
from .errors import InvalidArgumentError
from .wire import Op, Reader, Writer

if TYPE_CHECKING:
    from .client import Client

_RETENTION = (("max_age", "maxAge", 0x01, True), ("max_bytes", "maxBytes", 0x02, False), ("max_messages", "maxMessages", 0x04, False))
_DUPLICATE_WINDOW, _PUBLISH_CAPABILITY, _CONSUME_CAPABILITY = 0x08, 0x10, 0x20
#: STREAM_ADMIN kinds.
_CONSUMERS, _CONSUMER_INFO, _CONSUMER_DELETE, _PURGE, _UPDATE = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class PartitionInfo:
    """One partition: its leader (None while none is elected), replicas (preferred leader
    first), in-sync replicas, lowest retained offset and the offset the next message gets."""

    partition: int
    leader: Optional[str]
    replicas: List[str]
    in_sync: List[str]
    first_offset: int
    next_offset: int


@dataclass(frozen=True)
class StreamInfo:
    """A stream's configuration and partitions. ``retention`` keys: ``max_age`` (seconds),
    ``max_bytes``, ``max_messages``; ``access``: ``{'publish': 'open'|'capability', 'consume': …}``."""

    name: str
    cluster: str
    subject: str
    replicas: int
    retention: Dict[str, float]
    compact: bool
    duplicate_window: Optional[float]
    access: Dict[str, str]
    partitions: List[PartitionInfo] = field(default_factory=list)


@dataclass(frozen=True)
class PartitionPlacement:
    """A partition as ``streams.list()`` shows it: replicas (preferred leader first) and the
    leader as the node knows it (None: not known there; ``info`` asks)."""

    partition: int
    replicas: List[str]
    leader: Optional[str]


@dataclass(frozen=True)
class StreamSummary:
    """One stream of ``streams.list()``: configuration and placement from the node's
    directory (no call per stream). ``retention``/``access`` as in ``StreamInfo``."""

    name: str
    cluster: str
    subject: str
    partitions: int
    replicas: int
    retention: Dict[str, float] = field(default_factory=dict)
    compact: bool = False
    duplicate_window: Optional[float] = None
    access: Dict[str, str] = field(default_factory=dict)
    metadata_leader: Optional[str] = None
    placement: List[PartitionPlacement] = field(default_factory=list)


@dataclass(frozen=True)
class StoredMessage:
    """One message read by ``streams.get`` / ``last``."""

    stream: str
    partition: int
    offset: int
    timestamp: int
    topic: str
    key: Optional[bytes]
    headers: Dict[str, str]
    data: bytes

    def string(self) -> str:
        """The data as UTF-8 text."""
        return self.data.decode("utf-8")

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)


def _retention_values(retention: Dict[str, float]) -> Dict[int, int]:
    """Checks ``retention`` (``max_age`` seconds, ``max_bytes``, ``max_messages``): wire values by flag bit."""
    if not isinstance(retention, dict):
        raise InvalidArgumentError(f"retention must be a dict, got {check.describe(retention)}")
    known = [k for k, _w, _b, _s in _RETENTION]
    for k in retention:
        if k not in known:
            raise InvalidArgumentError(f"retention.{k} is unknown (known: {', '.join(known)})")
    out: Dict[int, int] = {}
    for k, _wire, bit, seconds in _RETENTION:
        v = retention.get(k)
        if v is None:
            continue
        if seconds:
            out[bit] = _u64_ms(v, f"retention.{k}")
        elif isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 2**53:
            raise InvalidArgumentError(f"retention.{k} must be a positive integer, got {check.describe(v)}")
        else:
            out[bit] = v
    return out


def _u64_ms(seconds: Any, field: str) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise InvalidArgumentError(f"{field} must be a positive number, got {check.describe(seconds)}")
    return max(1, round(seconds * 1000))


class Streams:
    """``client.streams``: durable streams of the network, created and inspected through the
    relay. Create and delete need the cluster key or a capability when the relay's node is not
    a member of the stream's cluster: pass ``cluster_key=`` or ``capability=``."""

    def __init__(self, client: "Client") -> None:
        self.client = client

    async def create(
        self,
        name: str,
        *,
        cluster: str,
        subject: str,
        replicas: int = 0,
        partitions: int = 0,
        retention: Optional[Dict[str, float]] = None,
        compact: bool = False,
        duplicate_window: Optional[float] = None,
        access: Optional[Dict[str, str]] = None,
        timeout: Optional[float] = None,
        cluster_key: Any = None,
        capability: Optional[str] = None,
    ) -> StreamInfo:
        """Creates a stream owned by ``cluster`` capturing ``subject`` (a pattern), with
        ``replicas`` per partition (0: 3) and ``partitions`` (0: 1); or returns the existing
        one with this configuration. Raises ``NotEnoughReplicasError``, ``UnauthorizedError``,
        ``InvalidArgumentError`` (overlapping subject, name taken), ``PlexusTimeoutError``."""
        check.name(name, "name")
        check.name(cluster, "cluster")
        check.pattern(subject, "subject")
        for fname, v, top in (("replicas", replicas, 0xFFFF), ("partitions", partitions, 0xFFFFFFFF)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= top:
                raise InvalidArgumentError(f"{fname} must be an integer from 0 to {top}, got {check.describe(v)}")
        if not isinstance(compact, bool):
            raise InvalidArgumentError(f"compact must be a bool, got {check.describe(compact)}")
        w = Writer().text(name).text(cluster).text(subject).u16(replicas).u32(partitions)
        self._retention(w, retention or {}, compact, duplicate_window, access or {})
        w.u32(check.timeout_ms(timeout))
        self._auth(w, cluster_key, capability)
        _op, r = await self.client._call(Op.STREAM_CREATE, w.body(), Op.STREAM_INFO_REPLY, cancel=True)
        return _read_info(r)

    async def info(self, name: str, *, timeout: Optional[float] = None) -> StreamInfo:
        """The stream's configuration and partitions; ``StreamNotFoundError`` when absent."""
        check.name(name, "name")
        body = Writer().text(name).u32(check.timeout_ms(timeout)).body()
        _op, r = await self.client._call(Op.STREAM_INFO, body, Op.STREAM_INFO_REPLY, cancel=True)
        return _read_info(r)

    async def delete(
        self, name: str, *, timeout: Optional[float] = None, cluster_key: Any = None, capability: Optional[str] = None
    ) -> None:
        """Deletes the stream and its data on every replica; ``StreamNotFoundError`` when absent."""
        check.name(name, "name")
        w = Writer().text(name).u32(check.timeout_ms(timeout))
        self._auth(w, cluster_key, capability)
        await self.client._call(Op.STREAM_DELETE, w.body(), Op.OK, cancel=True)

    async def list(self) -> List[StreamSummary]:
        """The streams the node knows of, sorted by name, with their configuration and
        placement (STREAM_LIST with details)."""
        _op, r = await self.client._call(Op.STREAM_LIST, Writer().u8(1).body(), Op.STREAM_LIST_REPLY)
        out: List[StreamSummary] = []
        for _ in range(r.u32("stream count")):
            name, cluster, subject, partitions, replicas = (
                r.text("name"),
                r.text("cluster"),
                r.text("subject"),
                r.u32("partitions"),
                r.u16("replicas"),
            )
            retention, compact, duplicate_window, access = _read_retention(r)
            meta_leader = r.text("metadata leader")
            placement: List[PartitionPlacement] = []
            for p in range(r.u32("partition count")):
                leader = r.text("leader")
                reps = [r.text("replica") for _ in range(r.u16("replica count"))]
                placement.append(PartitionPlacement(p, reps, leader or None))
            out.append(
                StreamSummary(
                    name, cluster, subject, partitions, replicas, retention, compact, duplicate_window, access, meta_leader or None, placement
                )
            )
        r.end()
        return out

    async def get(
        self, name: str, *, offset: int, partition: int = 0, timeout: Optional[float] = None, capability: Optional[str] = None
    ) -> StoredMessage:
        """The message at ``offset`` of ``partition``, read by the partition leader (sees every
        message acknowledged with ack='all' before); ``MessageNotFoundError`` when none."""
        for k, v in (("offset", offset), ("partition", partition)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**53:
                raise InvalidArgumentError(f"{k} must be a non-negative integer, got {check.describe(v)}")
        return await self._read(name, 1, partition, offset, b"", timeout, capability)

    async def last(
        self, name: str, *, key: check.Payload, timeout: Optional[float] = None, capability: Optional[str] = None
    ) -> StoredMessage:
        """The latest message with ``key`` (in the key's partition); ``MessageNotFoundError`` when none."""
        k = check.key(key)
        if not k:
            raise InvalidArgumentError("key must not be empty")
        return await self._read(name, 2, 0, 0, k, timeout, capability)

    async def _read(
        self, name: str, kind: int, partition: int, offset: int, key: bytes, timeout: Optional[float], capability: Optional[str]
    ) -> StoredMessage:
        check.name(name, "name")
        w = Writer().text(name).u8(kind).u32(partition).u64(offset).blob(key).u32(check.timeout_ms(timeout))
        self._auth(w, None, capability)
        _op, r = await self.client._call(Op.STREAM_READ, w.body(), Op.STREAM_READ_REPLY, cancel=True)
        p, o, ts, topic = r.u32("partition"), r.u64("offset"), r.u64("timestamp"), r.text("topic")
        k = r.blob("key") if r.u8("has key") else None
        headers = r.headers()
        data = r.blob("data")
        r.end()
        return StoredMessage(name, p, o, ts, topic, k, headers, data)

    @staticmethod
    def _retention(
        w: Writer, retention: Dict[str, float], compact: bool, duplicate_window: Optional[float], access: Dict[str, str]
    ) -> None:
        if not isinstance(retention, dict):
            raise InvalidArgumentError(f"retention must be a dict, got {check.describe(retention)}")
        flags = 0
        values: List[int] = []
        for bit, v in _retention_values(retention).items():
            flags |= bit
            values.append(v)
        if duplicate_window is not None:
            flags |= _DUPLICATE_WINDOW
            values.append(_u64_ms(duplicate_window, "duplicate_window"))
        for k, bit in (("publish", _PUBLISH_CAPABILITY), ("consume", _CONSUME_CAPABILITY)):
            mode = access.get(k, "open")
            if mode not in ("open", "capability"):
                raise InvalidArgumentError(f"access.{k} must be 'open' or 'capability', got {check.describe(mode)}")
            if mode == "capability":
                flags |= bit
        w.u8(flags)
        for v in values:
            w.u64(v)
        w.u8(1 if compact else 0)

    @staticmethod
    def _auth(w: Writer, cluster_key: Any, capability: Optional[str]) -> None:
        if capability is not None:
            if not isinstance(capability, str) or not capability.strip():
                raise InvalidArgumentError(f"capability must be a pxc1.… capability, got {check.describe(capability)}")
            w.u8(2).text(capability.strip())
        elif cluster_key is not None:
            w.u8(1).blob(check.parse_key(cluster_key, "cluster_key"))


    # ---- STREAM_ADMIN ---------------------------------------------------------------------

    async def _admin(
        self,
        kind: int,
        stream: str,
        name: str,
        args: Optional[Dict[str, Any]],
        expect: int,
        timeout: Optional[float],
        cluster_key: Any,
        capability: Optional[str],
    ) -> Reader:
        check.name(stream, "name" if kind in (_PURGE, _UPDATE) else "stream")
        if name:
            check.name(name, "name")
        w = Writer().u8(kind).text(stream).text(name).text("" if args is None else json.dumps(args))
        w.u32(check.timeout_ms(timeout))
        self._auth(w, cluster_key, capability)
        _op, r = await self.client._call(Op.STREAM_ADMIN, w.body(), expect, cancel=True)
        return r

    @staticmethod
    def _json(r: Reader) -> Any:
        v = json.loads(r.text("result"))
        r.end()
        return v

    async def update(
        self,
        name: str,
        *,
        retention: Dict[str, float],
        timeout: Optional[float] = None,
        cluster_key: Any = None,
        capability: Optional[str] = None,
    ) -> StreamInfo:
        """Replaces the stream's retention (``max_age`` seconds, ``max_bytes``,
        ``max_messages``; absent limits are removed, ``{}`` keeps everything); returns its info."""
        values = _retention_values(retention)
        wire = {w: (values[bit]) for _k, w, bit, _s in _RETENTION if bit in values}
        r = await self._admin(_UPDATE, name, "", {"retention": wire}, Op.STREAM_INFO_REPLY, timeout, cluster_key, capability)
        return _read_info(r)

    async def purge(
        self,
        name: str,
        *,
        before: Optional[int] = None,
        partition: Optional[int] = None,
        key: Optional[check.Payload] = None,
        timeout: Optional[float] = None,
        cluster_key: Any = None,
        capability: Optional[str] = None,
    ) -> List[Dict[str, int]]:
        """Drops the messages below offset ``before`` (default: all) of every partition (or
        ``partition``); with ``key`` only that key's messages, in the key's partition (durable,
        replicated; reads, consumers, ``get`` and ``last`` no longer return them). Returns
        ``[{'partition', 'firstOffset'}]`` after it."""
        args: Dict[str, Any] = {}
        if key is not None:
            kb = check.key(key) or b""
            if not kb or len(kb) > 1024:
                raise InvalidArgumentError(f"key must be 1-1024 bytes, got {len(kb)}")
            try:
                args["key"] = kb.decode("utf-8")
            except UnicodeDecodeError:
                args["keyBase64"] = base64.b64encode(kb).decode("ascii")
        for k, v in (("before", before), ("partition", partition)):
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise InvalidArgumentError(f"{k} must be a non-negative integer, got {check.describe(v)}")
                args[k] = v
        r = await self._admin(_PURGE, name, "", args, Op.STREAM_ADMIN_REPLY, timeout, cluster_key, capability)
        result: List[Dict[str, int]] = self._json(r)
        return result

    async def consumers(self, stream: str, *, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """The stream's durable consumers, as the node reports them: ``[{'name', 'positions':
        [{'partition', 'position'}], 'lastActive'}]``."""
        r = await self._admin(_CONSUMERS, stream, "", None, Op.STREAM_ADMIN_REPLY, timeout, None, None)
        result: List[Dict[str, Any]] = self._json(r)
        return result

    async def consumer_info(self, stream: str, name: str, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """One durable consumer in detail, as the node reports it; ``ConsumerNotFoundError`` when absent."""
        r = await self._admin(_CONSUMER_INFO, stream, name, None, Op.STREAM_ADMIN_REPLY, timeout, None, None)
        result: Dict[str, Any] = self._json(r)
        return result

    async def delete_consumer(
        self, stream: str, name: str, *, timeout: Optional[float] = None, cluster_key: Any = None, capability: Optional[str] = None
    ) -> None:
        """Forgets a durable consumer's positions; ``ConsumerNotFoundError`` when absent."""
        r = await self._admin(_CONSUMER_DELETE, stream, name, None, Op.OK, timeout, cluster_key, capability)
        r.end()


def _read_retention(r: Reader) -> Tuple[Dict[str, float], bool, Optional[float], Dict[str, str]]:
    """The retention block of STREAM_INFO_REPLY (and of STREAM_LIST_REPLY with details)."""
    flags = r.u8("retention flags")
    retention: Dict[str, float] = {}
    for k, _wire, bit, seconds in _RETENTION:
        if flags & bit:
            v = r.u64(f"retention.{k}")
            retention[k] = v / 1000 if seconds else v
    duplicate_window = r.u64("duplicate window") / 1000 if flags & _DUPLICATE_WINDOW else None
    compact = r.u8("compact") == 1
    access = {
        "publish": "capability" if flags & _PUBLISH_CAPABILITY else "open",
        "consume": "capability" if flags & _CONSUME_CAPABILITY else "open",
    }
    return retention, compact, duplicate_window, access


def _read_info(r: Reader) -> StreamInfo:
    name, cluster, subject, replicas = r.text("name"), r.text("cluster"), r.text("subject"), r.u16("replicas")
    retention, compact, duplicate_window, access = _read_retention(r)
    parts: List[PartitionInfo] = []
    for _ in range(r.u32("partition count")):
        p, leader = r.u32("partition"), r.text("leader")
        reps = [r.text("replica") for _ in range(r.u16("replica count"))]
        in_sync = [r.text("in-sync replica") for _ in range(r.u16("in-sync count"))]
        parts.append(PartitionInfo(p, leader or None, reps, in_sync, r.u64("first offset"), r.u64("next offset")))
    r.end()
    return StreamInfo(name, cluster, subject, replicas, retention, compact, duplicate_window, access, parts)
