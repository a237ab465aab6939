"""Plexus relay client for Python (asyncio, standard library only).

Attaches to a local Plexus node's relay (docs/relay-protocol.md) and uses the network
through it: requests, serving clusters, broadcasts, pub/sub, tunnels and durable streams::

    import asyncio, plexus_relay

    async def main():
        async with await plexus_relay.connect() as client:   # $PLEXUS_RELAY or 127.0.0.1:55555
            print(await client.request("echo", b"hi", timeout=2))

    asyncio.run(main())
"""

from .address import DEFAULT_RELAY, RELAY_ENV, parse_address
from .client import Client, connect
from .pubsub import PublishAck
from .errors import (
    ERROR_CLASSES,
    AbortedError,
    ConsumerNotFoundError,
    InvalidArgumentError,
    KeyExistsError,
    LeadershipLostError,
    MessageNotFoundError,
    MemberLostError,
    NoMembersError,
    NotEnoughReplicasError,
    OverloadedError,
    PlexusError,
    PlexusTimeoutError,
    RelayUnavailableError,
    RemoteError,
    StreamNotFoundError,
    TunnelClosedError,
    UnauthorizedError,
    WrongRevisionError,
    error_from_wire,
)
from .members import Limits, Membership, RequestContext
from .pubsub import Message, Subscription
from .consumer import Consumer, StreamMessage
from .streams import PartitionInfo, PartitionPlacement, StoredMessage, StreamInfo, Streams, StreamSummary
from .kv import Kv, KvEntry, KvWatch
from .requests import Reply
from .tunnel import Tunnel

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RELAY",
    "ERROR_CLASSES",
    "RELAY_ENV",
    "AbortedError",
    "Client",
    "Consumer",
    "ConsumerNotFoundError",
    "InvalidArgumentError",
    "KeyExistsError",
    "Kv",
    "KvEntry",
    "KvWatch",
    "MessageNotFoundError",
    "PartitionPlacement",
    "Reply",
    "StoredMessage",
    "WrongRevisionError",
    "LeadershipLostError",
    "Limits",
    "MemberLostError",
    "Membership",
    "Message",
    "NoMembersError",
    "NotEnoughReplicasError",
    "OverloadedError",
    "PartitionInfo",
    "PlexusError",
    "PlexusTimeoutError",
    "PublishAck",
    "RelayUnavailableError",
    "RemoteError",
    "RequestContext",
    "StreamInfo",
    "StreamMessage",
    "StreamNotFoundError",
    "StreamSummary",
    "Streams",
    "Subscription",
    "Tunnel",
    "TunnelClosedError",
    "UnauthorizedError",
    "connect",
    "error_from_wire",
    "parse_address",
    "__version__",
]
