"""Where a client attaches: ``host:port`` from the argument, ``$PLEXUS_RELAY`` or the default."""

from __future__ import annotations

import os
from typing import Optional, Tuple

from . import validate as check
from .errors import InvalidArgumentError

#: Where clients attach when no address is given and ``PLEXUS_RELAY`` is unset.
DEFAULT_RELAY = "127.0.0.1:55555"
#: The environment variable naming the relay (``host:port``, IPv6 as ``[::1]:55555``).
RELAY_ENV = "PLEXUS_RELAY"

def parse_address(address: Optional[str]) -> Tuple[str, int]:
    """``host:port`` (IPv6 as ``[::1]:55555``): the argument, else ``$PLEXUS_RELAY``, else 127.0.0.1:55555."""
    field = "address"
    if address is None:
        address = os.environ.get(RELAY_ENV) or None
        field = RELAY_ENV
    if address is None:
        address = DEFAULT_RELAY
    if not isinstance(address, str):
        raise InvalidArgumentError(f"{field} must be host:port, got {check.describe(address)}")
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgumentError(f"{field} must be host:port, got {check.describe(address)}")
    return host, int(port)
