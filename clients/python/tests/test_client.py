"""The Python client against a real node's relay. test/python/client.test.ts starts the
nodes and runs this file with:

  PLEXUS_RELAY             the relay of node A (a data directory; a storage-only member of $PLEXUS_TEST_STORE)
  PLEXUS_TEST_STORE        a cluster whose one member is node A, to host streams (replicas 1)
  PLEXUS_TEST_STORE_KEY    its key
  PLEXUS_TEST_ECHO         a cluster served by node B (TypeScript): request -> b"echo:" + data,
                           broadcasts accepted, tunnels echo each message
  PLEXUS_TEST_RELAY_B      the relay of node B (tunnels go to members on other nodes)

Without PLEXUS_RELAY the tests that need a node are skipped (the codec tests still run).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import sys
import unittest

import plexus_relay as px
from plexus_relay.wire import Op, Writer, frame

RELAY = os.environ.get("PLEXUS_RELAY")
STORE = os.environ.get("PLEXUS_TEST_STORE", "")
STORE_KEY = os.environ.get("PLEXUS_TEST_STORE_KEY", "")
ECHO = os.environ.get("PLEXUS_TEST_ECHO", "")
RELAY_B = os.environ.get("PLEXUS_TEST_RELAY_B")
SEED = int(os.environ.get("PLEXUS_TEST_SEED", str(random.randrange(1 << 30))))
print(f"test_client: python {sys.version.split()[0]}, seed {SEED} (PLEXUS_TEST_SEED to replay)", flush=True)
rng = random.Random(SEED)


def unique(prefix: str) -> str:
    return f"{prefix}-{rng.randrange(1 << 40):x}"


class Codec(unittest.TestCase):
    def test_hello_matches_the_worked_example(self) -> None:
        body = Writer().raw(b"PLXR").u16(1).text("py").body()
        self.assertEqual(frame(Op.HELLO, 0, body).hex(), "0000000f" "01" "00000000" "504c5852" "0001" "00027079")

    def test_request_matches_the_worked_example(self) -> None:
        body = Writer().text("echo").u32(5000).blob(b"hi").body()
        self.assertEqual(frame(Op.REQUEST, 1, body).hex(), "00000015" "10" "00000001" "00046563686f" "00001388" "000000026869")

    def test_errors_are_rebuilt_by_name(self) -> None:
        for name, cls in px.ERROR_CLASSES.items():
            e = px.error_from_wire(name, "m")
            self.assertIs(type(e), cls)
            self.assertEqual((e.name, e.message, str(e)), (name, "m", f"{name}: m"))
        self.assertIsInstance(px.error_from_wire("NoSuchError", "x"), px.RemoteError)
        self.assertIsInstance(px.error_from_wire("TimeoutError", "x"), TimeoutError)  # the builtin

    def test_addresses(self) -> None:
        self.assertEqual(px.parse_address("[::1]:55555"), ("::1", 55555))
        self.assertEqual(px.parse_address("example.org:1"), ("example.org", 1))
        for bad in ("nope", ":1", "h:0", "h:99999", "h:x"):
            with self.assertRaises(px.InvalidArgumentError):
                px.parse_address(bad)


@unittest.skipUnless(RELAY, "PLEXUS_RELAY is not set: no node to test against (see test/python/client.test.ts)")
class Relay(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.clients: list = []

    async def asyncTearDown(self) -> None:
        for c in self.clients:
            await c.close()

    async def client(self, address: "str | None" = None) -> px.Client:
        c = await px.connect(address or RELAY, name="py-test")
        self.clients.append(c)
        return c

    async def members_seen(self, c: px.Client, cluster: str, n: int) -> None:
        """Waits until the node behind ``c`` sees ``n`` connected members of ``cluster``."""
        for _ in range(500):
            status = await c.status()
            seen = [m for cl in status["clusters"] if cl["name"] == cluster for m in cl["members"] if m["connected"]]
            if len(seen) >= n:
                return
            await asyncio.sleep(0.02)
        self.fail(f"{cluster}: {n} members not seen within 10 s")

    async def test_connect_status_ping(self) -> None:
        c = await self.client()
        self.assertTrue(c.node_id)
        self.assertEqual(c.max_message_size, 1024 * 1024)
        status = await c.status()
        self.assertEqual((status["id"], status["network"]), (c.node_id, c.network))
        self.assertGreater(await c.ping(), 0)
        # An address with nothing listening: this client's own error class (a ConnectionError).
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with self.assertRaises(px.RelayUnavailableError) as cm:
            await px.connect(f"127.0.0.1:{port}")
        self.assertIsInstance(cm.exception, ConnectionError)
        self.assertIn("no Plexus node's relay is listening", cm.exception.message)

    async def test_request_broadcast_and_errors(self) -> None:
        c = await self.client()
        self.assertEqual(await c.request(ECHO, b"hello", timeout=5), b"echo:hello")
        self.assertEqual(await c.request(ECHO, "text"), b"echo:text")
        self.assertEqual(await c.broadcast(ECHO, b"to all"), 1)
        with self.assertRaises(px.InvalidArgumentError) as cm:
            await c.request("bad name", b"x")
        self.assertIn("cluster", cm.exception.message)
        with self.assertRaises(px.InvalidArgumentError):
            await c.request(ECHO, b"x" * (c.max_message_size + 1))
        with self.assertRaises(px.NoMembersError):
            await c.request(unique("nobody"), b"x", timeout=10)

    async def test_serve_remote_timeout_overloaded(self) -> None:
        server, caller = await self.client(), await self.client()
        key = STORE_KEY  # any valid key works for a new cluster
        cluster = unique("py")
        release = asyncio.Event()
        cancelled = asyncio.Event()
        seen = []

        async def handler(data: bytes, ctx: px.RequestContext) -> bytes:
            seen.append((ctx.cluster, ctx.from_, ctx.remaining > 0))
            if data == b"boom":
                raise ValueError("boom from python")
            if data == b"slow":
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    cancelled.set()
                    raise
            if data == b"hold":
                await release.wait()
            return data.upper()

        m = await server.join(cluster, key, on_request=handler, limits=px.Limits(requests=1))
        self.assertEqual(await caller.request(cluster, b"shout", timeout=5), b"SHOUT")
        self.assertEqual(seen[0], (cluster, caller.node_id, True))
        with self.assertRaises(px.RemoteError) as remote:
            await caller.request(cluster, b"boom", timeout=5)
        self.assertIn("boom from python", remote.exception.message)
        with self.assertRaises(px.PlexusTimeoutError) as slow:
            await caller.request(cluster, b"slow", timeout=0.3)
        self.assertEqual(slow.exception.name, "TimeoutError")
        self.assertIsInstance(slow.exception, TimeoutError)
        await asyncio.wait_for(cancelled.wait(), 5)  # INVOKE_CANCEL cancelled the handler
        # Giving up on the caller's side (cancelling the awaiting task) sends CANCEL: the
        # member's handler is cancelled long before the request's own 20 s deadline. (From
        # node B: a request its own node serves is not cancelled by the library on abort.)
        far = await self.client(RELAY_B)
        await self.members_seen(far, cluster, 1)
        cancelled.clear()
        with self.assertRaises(asyncio.TimeoutError):
            await asyncio.wait_for(far.request(cluster, b"slow", timeout=20), 0.3)
        await asyncio.wait_for(cancelled.wait(), 5)
        held = asyncio.ensure_future(caller.request(cluster, b"hold", timeout=5))
        while len(seen) < 5:
            await asyncio.sleep(0.01)
        with self.assertRaises(px.OverloadedError):
            await caller.request(cluster, b"one too many", timeout=5)
        release.set()
        self.assertEqual(await held, b"HOLD")
        # A second join of the same cluster on this node: refused by the relay.
        with self.assertRaises(px.InvalidArgumentError):
            await caller.serve(cluster, key, lambda d, _c: d)
        await m.leave()

    async def test_broadcast_to_a_python_member(self) -> None:
        member, sender = await self.client(), await self.client()
        cluster = unique("pybc")
        got: "asyncio.Queue[bytes]" = asyncio.Queue()
        await member.join(cluster, STORE_KEY, on_broadcast=lambda d, _ctx: got.put_nowait(d))
        self.assertEqual(await sender.broadcast(cluster, b"hey"), 1)
        self.assertEqual(await asyncio.wait_for(got.get(), 5), b"hey")

    async def test_subscribe_publish_flush(self) -> None:
        sub_client, pub = await self.client(), await self.client()
        topic = unique("pyev")
        sub = await sub_client.subscribe(f"{topic}.*")
        await pub.flush(timeout=5)
        for i in range(3):
            self.assertIsNone(await pub.publish(f"{topic}.x", f"m{i}", key=b"k", headers={"h": str(i)}))
        await pub.publish(f"{topic}.y.z", b"not matched")
        got = []
        async for m in sub:
            got.append(m)
            if len(got) == 3:
                break
        self.assertEqual([m.string() for m in got], ["m0", "m1", "m2"])
        self.assertEqual((got[0].topic, got[0].key, got[2].headers, got[0].from_), (f"{topic}.x", b"k", {"h": "2"}, pub.node_id))
        self.assertEqual(sub.dropped, 0)
        await sub.unsubscribe()
        with self.assertRaises(px.InvalidArgumentError):
            await pub.publish(f"{topic}.*", b"x")
        with self.assertRaises(px.InvalidArgumentError):
            sub_client.subscribe("a..b")
        with self.assertRaises(px.InvalidArgumentError):
            await pub.publish(topic, b"x", headers={"": "x"})
        # Publishing with ack where no stream captures the topic.
        with self.assertRaises(px.StreamNotFoundError):
            await pub.publish(f"{topic}.x", b"x", ack="leader", timeout=5)

    async def test_tunnel_to_typescript_member_beyond_one_window(self) -> None:
        c = await self.client()
        t = await c.tunnel(ECHO, timeout=5)
        self.assertEqual(t.cluster, ECHO)
        chunk = 60 * 1024
        total = 3 * t.window + 12345  # more than the window in both directions
        sizes = []
        left = total
        while left > 0:
            n = min(left, rng.randrange(1, chunk))
            sizes.append(n)
            left -= n
        sent = bytearray()

        async def write() -> None:
            for i, n in enumerate(sizes):
                b = bytes([i % 251]) * n
                sent.extend(b)
                await t.send(b)
            await t.close()

        async def read() -> bytearray:
            got = bytearray()
            async for data in t:
                got.extend(data)
            return got

        # A credit that is not returned stalls both directions: bounded, so it fails here.
        got, _ = await asyncio.wait_for(asyncio.gather(read(), write()), 20)
        self.assertEqual(len(got), total)
        self.assertEqual(bytes(got), bytes(sent))
        self.assertTrue(t.closed)

    async def test_tunnel_between_python_ends_and_failures(self) -> None:
        # Tunnels go to members on other nodes: the member is on A, the opener on B.
        member, opener = await self.client(), await self.client(RELAY_B)
        cluster = unique("pytun")
        accepted = []

        async def on_tunnel(t: px.Tunnel, ctx: px.RequestContext) -> None:
            accepted.append(ctx.from_)
            first = await t.recv()
            if first == b"fail":
                raise RuntimeError("refusing this one")
            n = 0
            async for _ in t:
                n += 1
            await t.send(f"{n + 1} messages".encode())
            await t.close()

        await member.join(cluster, STORE_KEY, on_tunnel=on_tunnel)
        await self.members_seen(opener, cluster, 1)
        t = await opener.tunnel(cluster, timeout=5)
        for _ in range(5):
            await t.send(b"x" * 1000)
        await t.close()
        self.assertEqual(await t.recv(), b"5 messages")
        self.assertIsNone(await t.recv())
        self.assertEqual(accepted, [opener.node_id])
        bad = await opener.tunnel(cluster, timeout=5)
        await bad.send(b"fail")
        with self.assertRaises(px.TunnelClosedError) as cm:
            await bad.recv()
        self.assertIn("refusing this one", cm.exception.message)
        with self.assertRaises(px.TunnelClosedError):
            await bad.send(b"more")
        with self.assertRaises(px.NoMembersError):
            await opener.tunnel(unique("nobody"), timeout=10)

    async def test_streams_publish_ack_durable_consume_resume(self) -> None:
        c = await self.client()
        name, subject = unique("pystream"), unique("pyorders")
        info = await c.streams.create(name, cluster=STORE, subject=f"{subject}.>", replicas=1, retention={"max_age": 3600})
        self.assertEqual((info.name, info.cluster, info.replicas, len(info.partitions)), (name, STORE, 1, 1))
        self.assertEqual(info.retention, {"max_age": 3600.0})
        self.assertIn(name, [s.name for s in await c.streams.list()])
        acks = [await c.publish(f"{subject}.eu", f"o{i}", ack="all", key=b"k", headers={"n": str(i)}) for i in range(10)]
        self.assertEqual([a.offset for a in acks if a], list(range(10)))
        self.assertEqual([(a.stream, a.partition) for a in acks if a][0], (name, 0))
        once = await c.publish(f"{subject}.eu", "dup", ack="leader", msg_id="m-1")
        again = await c.publish(f"{subject}.eu", "dup", ack="leader", msg_id="m-1")
        assert once is not None and again is not None  # with ack: always a PublishAck
        self.assertEqual((again.offset, again.duplicate, once.duplicate), (once.offset, True, False))
        self.assertEqual((await c.streams.info(name)).partitions[0].next_offset, 11)

        durable = unique("billing")
        first = await c.consume(name, durable=durable, ack_wait=60)
        got = []
        async for m in first:
            got.append(m)
            self.assertEqual(m.delivery_count, 1)
            if len(got) <= 4:
                await m.ack()
            if len(got) == 6:
                break  # 4 acked, 2 delivered and not acked
        first.close()
        self.assertEqual([m.string() for m in got], [f"o{i}" for i in range(6)])
        self.assertEqual((got[0].key, got[3].headers, got[0].topic), (b"k", {"n": "3"}, f"{subject}.eu"))
        async with await c.consume(name, durable=durable) as again_c:
            rest = []
            async for m in again_c:
                rest.append(m.offset)
                await m.ack()
                if m.offset == 10:
                    break
        self.assertEqual(rest, list(range(4, 11)))
        # Administration (STREAM_ADMIN): the durable consumer's position, retention, purge.
        # Acks are committed on the node's tick and on close, so the position gets there soon.
        for _ in range(200):
            summaries = await c.streams.consumers(name, timeout=10)
            if summaries and summaries[0]["positions"] == [{"partition": 0, "position": 11}]:
                break
            await asyncio.sleep(0.05)
        self.assertEqual([(x["name"], x["positions"]) for x in summaries], [(durable, [{"partition": 0, "position": 11}])])
        self.assertEqual((await c.streams.consumer_info(name, durable, timeout=10))["name"], durable)
        updated = await c.streams.update(name, retention={"max_messages": 1000}, timeout=10)
        self.assertEqual(updated.retention, {"max_messages": 1000})
        self.assertEqual(await c.streams.purge(name, before=2, timeout=10), [{"partition": 0, "firstOffset": 2}])
        await c.streams.delete_consumer(name, durable, timeout=10)
        with self.assertRaises(px.ConsumerNotFoundError):
            await c.streams.consumer_info(name, durable, timeout=10)
        # A plain consumer from an offset, one partition.
        plain = await c.consume(name, from_=9, partition=0)
        self.assertEqual([m.offset async for m in _take(plain, 2)], [9, 10])

        with self.assertRaises(px.StreamNotFoundError):
            await c.streams.info(unique("nostream"))
        with self.assertRaises(px.NotEnoughReplicasError):
            await c.streams.create(unique("big"), cluster=STORE, subject=f"{unique('big')}.>", replicas=3, timeout=10)
        with self.assertRaises(px.UnauthorizedError):
            await c.streams.delete(name, cluster_key="a wrong passphrase of a key!", timeout=10)
        failed = c.consume(unique("nostream"))
        with self.assertRaises(px.StreamNotFoundError):
            async for _ in failed:
                pass
        await c.streams.delete(name, timeout=10)
        with self.assertRaises(px.StreamNotFoundError):
            await c.streams.info(name)

    async def test_consumer_reads_beyond_its_window(self) -> None:
        c = await self.client()
        name, subject = unique("pybig"), unique("pybig")
        await c.streams.create(name, cluster=STORE, subject=f"{subject}.>", replicas=1)
        size, count = 100 * 1024, 48  # 4.7 MiB: more than twice the 2 MiB window granted the relay
        for i in range(count):
            await c.publish(f"{subject}.x", bytes([i]) * size, ack="leader")
        consumer = await c.consume(name)
        self.assertLess(consumer.window, size * count)

        async def read() -> "list[tuple[int, int, int]]":
            return [(m.offset, m.data[0], len(m.data)) async for m in _take(consumer, count)]

        # Credit that is not returned stalls the consumer at one window: bounded, so it fails here.
        got = await asyncio.wait_for(read(), 20)
        self.assertEqual(got, [(i, i, size) for i in range(count)])
        await c.streams.delete(name, timeout=10)

    async def test_queue_group_splits_messages(self) -> None:
        a, b, plain, pub = await self.client(), await self.client(), await self.client(), await self.client()
        topic = unique("pyq")
        subs = [await a.subscribe(f"{topic}.*", queue="workers"), await b.subscribe(f"{topic}.*", queue="workers")]
        every = await plain.subscribe(f"{topic}.*")
        await pub.flush(timeout=5)
        for i in range(20):
            await pub.publish(f"{topic}.x", f"m{i}")
        everything = []
        async for m in every:
            everything.append(m.string())
            if len(everything) == 20:
                break
        self.assertEqual(everything, [f"m{i}" for i in range(20)])
        got: list = []
        for s in subs:
            while True:
                try:
                    m = await asyncio.wait_for(s.__anext__(), 0.5 if got else 5)
                except asyncio.TimeoutError:
                    break
                got.append(m.string())
        self.assertEqual(sorted(got), sorted(everything))  # each once, across the group
        with self.assertRaises(px.InvalidArgumentError):
            a.subscribe(topic, queue="bad name")

    async def test_slow_subscriber_drops_and_counts(self) -> None:
        sub_client, pub = await self.client(), await self.client()
        topic = unique("pyslow")
        sub = await sub_client.subscribe(topic, max_pending=4)
        for i in range(20):
            await pub.publish(topic, f"m{i}")
        # Nobody reads: 4 wait in the queue, the rest are dropped (here or at the relay) and counted.
        for _ in range(250):
            if sub.received + sub.dropped >= 20:
                break
            await asyncio.sleep(0.02)
        got = []
        async for m in sub:
            got.append(m.string())
            if len(got) == 4:
                break
        self.assertEqual(got, ["m0", "m1", "m2", "m3"])
        self.assertEqual(sub.received + sub.dropped, 20)

    async def test_close_fails_what_is_pending(self) -> None:
        server, caller = await self.client(), await self.client()
        cluster = unique("pyclose")
        await server.serve(cluster, STORE_KEY, lambda d, _c: asyncio.sleep(30, b"never"))
        pending = asyncio.ensure_future(caller.request(cluster, b"x", timeout=20))
        sub = caller.subscribe("pyclose.>")
        await sub
        await asyncio.sleep(0.05)
        await caller.close()
        with self.assertRaises(px.AbortedError):
            await pending
        with self.assertRaises(px.AbortedError):
            await sub.__anext__()
        with self.assertRaises(px.AbortedError):
            await caller.status()


async def _take(consumer: px.Consumer, n: int):  # type: ignore[no-untyped-def]
    i = 0
    async for m in consumer:
        yield m
        i += 1
        if i == n:
            consumer.close()
            return


if __name__ == "__main__":
    unittest.main()
