"""Error classes, named like the TypeScript ones (``src/errors.ts``): the relay sends an
error's class name and message, and this client raises the class of that name (unknown
names become ``RemoteError``). Tell them apart with ``except`` or by ``err.name``.

``TimeoutError`` is a Python builtin, so Plexus's is ``PlexusTimeoutError``: its ``name``
is ``"TimeoutError"`` and it subclasses the builtin, so ``except TimeoutError`` catches it.
``RelayUnavailableError`` (the connection is lost or refused) also subclasses ``ConnectionError``.
"""

from __future__ import annotations

import builtins
from typing import Dict, Type


class PlexusError(Exception):
    """Base class of every error Plexus raises on purpose. ``name`` is the wire name of the class."""

    name = "PlexusError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


class InvalidArgumentError(PlexusError, ValueError):
    """An argument (or relay field) is missing or malformed; the message names it."""

    name = "InvalidArgumentError"


class PlexusTimeoutError(PlexusError, builtins.TimeoutError):
    """The operation did not complete before its deadline (wire name ``TimeoutError``)."""

    name = "TimeoutError"


class NoMembersError(PlexusError):
    """No proven, reachable member of the addressed cluster exists right now."""

    name = "NoMembersError"


class RemoteError(PlexusError):
    """The member's handler raised; ``message`` carries its message. Also any unknown error name."""

    name = "RemoteError"


class OverloadedError(PlexusError):
    """The member's limits, or this connection's in-flight bounds, are full; nothing was run."""

    name = "OverloadedError"


class UnauthorizedError(PlexusError):
    """A key or capability is missing or wrong."""

    name = "UnauthorizedError"


class StreamNotFoundError(PlexusError):
    """The durable stream does not exist (or no stream captures a publish with ack)."""

    name = "StreamNotFoundError"


class ConsumerNotFoundError(PlexusError):
    """The named durable consumer does not exist."""

    name = "ConsumerNotFoundError"


class TunnelClosedError(PlexusError):
    """The tunnel was closed or failed (the remote end died, its handler failed, the connection was lost)."""

    name = "TunnelClosedError"


class NotEnoughReplicasError(PlexusError):
    """Too few members for the stream's replicas."""

    name = "NotEnoughReplicasError"


class MemberLostError(PlexusError):
    """The member died after the request was written; it may or may not have run."""

    name = "MemberLostError"


class LeadershipLostError(PlexusError):
    """A publish without msg id whose partition leader lost leadership before commit: it may or may not be stored."""

    name = "LeadershipLostError"


class AbortedError(PlexusError):
    """Cancelled, or the node is stopping."""

    name = "AbortedError"


class KeyExistsError(PlexusError):
    """``kv.create``: the key already has a value."""

    name = "KeyExistsError"


class WrongRevisionError(PlexusError):
    """``kv.update``: the key's revision is not the expected one (the message ends with the current one)."""

    name = "WrongRevisionError"


class MessageNotFoundError(PlexusError):
    """``streams.get`` / ``last``: no message there (never written, purged, or removed by retention)."""

    name = "MessageNotFoundError"


class RelayUnavailableError(PlexusError, ConnectionError):
    """This client's own error: no relay listens at the address, it refused the connection,
    the connection was lost, or the relay sent a frame this client cannot read."""

    name = "RelayUnavailableError"


#: Every class an ERROR frame may name, by wire name.
ERROR_CLASSES: Dict[str, Type[PlexusError]] = {
    c.name: c
    for c in (
        PlexusError,
        InvalidArgumentError,
        PlexusTimeoutError,
        NoMembersError,
        RemoteError,
        OverloadedError,
        UnauthorizedError,
        StreamNotFoundError,
        ConsumerNotFoundError,
        TunnelClosedError,
        NotEnoughReplicasError,
        MemberLostError,
        LeadershipLostError,
        AbortedError,
        KeyExistsError,
        WrongRevisionError,
        MessageNotFoundError,
        RelayUnavailableError,
    )
}


def error_from_wire(name: str, message: str) -> PlexusError:
    """The error of class ``name`` (``RemoteError`` when the name is unknown). Never raises."""
    return ERROR_CLASSES.get(name, RemoteError)(message)
