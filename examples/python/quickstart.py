#!/usr/bin/env python3
"""Pub/sub, serving a cluster and requesting it from Python, through local nodes' relays.

    plexus node --relay-port 55555 &                       # a node with a relay
    PYTHONPATH=clients/python python3 examples/python/quickstart.py
    # or: pip install ./clients/python; python3 examples/python/quickstart.py

The relay address comes from $PLEXUS_RELAY, else 127.0.0.1:55555. Requests go to members
on other nodes: with a second node (`plexus node --relay-port 55556 &`) and
PLEXUS_RELAY_2=127.0.0.1:55556 this also serves a cluster through the first node and
requests it through the second. The package's command line: `python3 -m plexus_relay --help`.
"""

import asyncio
import os

import plexus_relay


async def main() -> None:
    async with await plexus_relay.connect() as client:
        print(f"attached to node {client.node_id} on network {client.network}")

        # Pub/sub: once awaited, the subscription is live across the network.
        sub = await client.subscribe("greetings.*")
        await client.publish("greetings.python", "hello from python")
        async for msg in sub:
            print(f"{msg.topic}: {msg.string()}")
            break
        await sub.unsubscribe()

        other = os.environ.get("PLEXUS_RELAY_2")
        if not other:
            return
        key = "an example passphrase; use `plexus keygen` for real keys"
        await client.serve("py-upper", key, lambda data, ctx: data.upper())
        async with await plexus_relay.connect(other) as caller:
            for _ in range(50):  # until the other node has seen the new member
                try:
                    print((await caller.request("py-upper", "shout", timeout=2)).decode())
                    break
                except plexus_relay.NoMembersError:
                    await asyncio.sleep(0.1)


asyncio.run(main())
