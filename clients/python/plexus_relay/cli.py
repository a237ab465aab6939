"""``python3 -m plexus_relay``: a small command line over the client.

    python3 -m plexus_relay request CLUSTER DATA [--timeout S]     # prints the reply
    python3 -m plexus_relay serve CLUSTER --key KEY                 # answers with the data upper-cased
    python3 -m plexus_relay publish TOPIC DATA [--ack leader|all]   # with --ack prints stream/partition/offset
    python3 -m plexus_relay subscribe PATTERN [--count N]           # one line per message
    python3 -m plexus_relay consume STREAM [--durable NAME] [--count N]
    python3 -m plexus_relay status                                  # the node's status as JSON

Every command takes ``--relay HOST:PORT`` (default ``$PLEXUS_RELAY``, else 127.0.0.1:55555);
DATA ``-`` reads stdin. Errors print one line ``ErrorName: message`` on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import List, Optional

from .client import Client, connect
from .errors import PlexusError


def _data(arg: str) -> bytes:
    return sys.stdin.buffer.read() if arg == "-" else arg.encode("utf-8")


def _line(data: bytes) -> None:
    sys.stdout.write(data.decode("utf-8", "replace") + "\n")
    sys.stdout.flush()


async def _run(args: argparse.Namespace) -> None:
    client: Client = await connect(args.relay)
    try:
        if args.cmd == "request":
            sys.stdout.buffer.write(await client.request(args.cluster, _data(args.data), timeout=args.timeout))
            sys.stdout.flush()
        elif args.cmd == "status":
            print(json.dumps(await client.status(), indent=2))
        elif args.cmd == "publish":
            ack = await client.publish(args.topic, _data(args.data), ack=args.ack)
            if ack is not None:
                print(f"{ack.stream}/{ack.partition}/{ack.offset}")
        elif args.cmd == "subscribe":
            sub = await client.subscribe(args.pattern)
            print(f"subscribed to {args.pattern}", file=sys.stderr, flush=True)
            seen = 0
            async for m in sub:
                _line(m.data)
                seen += 1
                if args.count and seen >= args.count:
                    break
        elif args.cmd == "consume":
            consumer = await client.consume(args.stream, durable=args.durable)
            seen = 0
            async for sm in consumer:
                _line(sm.data)
                await sm.ack()
                seen += 1
                if args.count and seen >= args.count:
                    break
        else:
            await client.serve(args.cluster, args.key, lambda data, _ctx: data.upper())
            print(f"serving {args.cluster} through node {client.node_id}", file=sys.stderr, flush=True)
            await asyncio.Event().wait()  # until killed
    finally:
        await client.close()


def main(argv: Optional[List[str]] = None) -> int:
    """Runs one command; returns the exit code (0, 1 on a Plexus error, 130 on Ctrl-C)."""
    relay = argparse.ArgumentParser(add_help=False)
    relay.add_argument("--relay", help="relay host:port (default $PLEXUS_RELAY, else 127.0.0.1:55555)")
    p = argparse.ArgumentParser(prog="python3 -m plexus_relay", description="Plexus relay client (Python)")
    sub = p.add_subparsers(dest="cmd", required=True)
    rq = sub.add_parser("request", parents=[relay], help="send one request and print the reply")
    rq.add_argument("cluster")
    rq.add_argument("data", help="request data, or - for stdin")
    rq.add_argument("--timeout", type=float, default=None, help="deadline in seconds (default: the node's)")
    sv = sub.add_parser("serve", parents=[relay], help="join CLUSTER and answer requests with the data upper-cased")
    sv.add_argument("cluster")
    sv.add_argument("--key", required=True, help="cluster key (64 hex characters or a passphrase)")
    sub.add_parser("status", parents=[relay], help="print the node's status as JSON")
    pb = sub.add_parser("publish", parents=[relay], help="publish DATA on TOPIC")
    pb.add_argument("topic")
    pb.add_argument("data", help="message data, or - for stdin")
    pb.add_argument("--ack", choices=["none", "leader", "all"], default=None)
    sb = sub.add_parser("subscribe", parents=[relay], help="print each message on PATTERN as one line")
    sb.add_argument("pattern")
    sb.add_argument("--count", type=int, default=0, help="exit after N messages (default: run until killed)")
    cs = sub.add_parser("consume", parents=[relay], help="print each message of STREAM as one line")
    cs.add_argument("stream")
    cs.add_argument("--durable", default=None, help="durable consumer name (resumes after its acks)")
    cs.add_argument("--count", type=int, default=0, help="exit after N messages (default: run until killed)")
    args = p.parse_args(argv)
    try:
        asyncio.run(_run(args))
        return 0
    except PlexusError as e:
        print(f"{e.name}: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
