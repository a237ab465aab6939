"""The calls the Python client gained to match the TypeScript relay client, against the real
nodes test/python/client.test.ts starts (same environment as test_client.py): request headers
and request_many, consumer options with nak / term / working and pull fetch, stream get /
last / list details / purge by key, and key-value buckets; each with one error of its kind."""

from __future__ import annotations

import asyncio
import os
import random
import unittest

import plexus_relay as px

RELAY = os.environ.get("PLEXUS_RELAY")
STORE = os.environ.get("PLEXUS_TEST_STORE", "")
ECHO = os.environ.get("PLEXUS_TEST_ECHO", "")
SEED = int(os.environ.get("PLEXUS_TEST_SEED", str(random.randrange(1 << 30))))
rng = random.Random(SEED + 1)


def unique(prefix: str) -> str:
    return f"{prefix}-{rng.randrange(1 << 40):x}"


@unittest.skipUnless(RELAY, "PLEXUS_RELAY is not set: no node to test against (see test/python/client.test.ts)")
class Parity(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.c = await px.connect(RELAY, name="py-parity")

    async def asyncTearDown(self) -> None:
        await self.c.close()

    async def stream(self, partitions: int = 1) -> "tuple[str, str]":
        name, subject = unique("par"), unique("par")
        await self.c.streams.create(name, cluster=STORE, subject=f"{subject}.>", replicas=1)
        return name, subject

    async def test_request_headers_and_request_many(self) -> None:
        r = await self.c.request_reply(ECHO, b"hi", headers={"trace": "t1"}, timeout=5)
        self.assertEqual(r.data, b"echo:hi")
        self.assertEqual(r.string(), "echo:hi")
        self.assertEqual(r.headers.get("trace"), "t1")  # the handler echoes the headers it got
        self.assertEqual(r.headers.get("echoed"), "yes")
        replies = [m async for m in self.c.request_many(ECHO, b"all", max_replies=0, timeout=5)]
        self.assertEqual([m.data for m in replies], [b"echo:all"])
        self.assertNotEqual(replies[0].from_, "")
        with self.assertRaises(px.InvalidArgumentError):
            await self.c.request_reply(ECHO, b"x", headers={"": "empty name"})
        with self.assertRaises(px.NoMembersError):
            async for _m in self.c.request_many(unique("nobody"), b"x", timeout=2):
                pass

    async def test_python_member_sees_and_returns_headers(self) -> None:
        member = await px.connect(RELAY, name="py-parity-member")
        try:
            cluster = unique("pyhdr")
            key = os.environ.get("PLEXUS_TEST_STORE_KEY", "")

            def handler(data: bytes, ctx: px.RequestContext) -> "tuple[bytes, dict]":
                return data.upper(), {"seen": ctx.headers.get("h", "-")}

            await member.join(cluster, key, on_request=handler)
            # Until the node lists the new member (no event for that): NoMembersError.
            for _ in range(100):
                try:
                    r = await self.c.request_reply(cluster, b"abc", headers={"h": "v"}, timeout=5)
                    break
                except px.NoMembersError:
                    await asyncio.sleep(0.05)
            self.assertEqual((r.data, r.headers), (b"ABC", {"seen": "v"}))
            self.assertEqual(await self.c.request(cluster, b"x"), b"X")  # plain callers still work
        finally:
            await member.close()

    async def test_get_last_list_and_purge_by_key(self) -> None:
        name, subject = await self.stream()
        for i in range(6):
            await self.c.publish(f"{subject}.x", f"v{i}".encode(), key=b"a" if i % 2 == 0 else b"b", ack="all")
        m = await self.c.streams.get(name, offset=1)
        self.assertEqual((m.offset, m.key, m.data), (1, b"b", b"v1"))
        await self.c.publish(f"{subject}.x", b'{"n": 1}', key=b"j", ack="all")
        self.assertEqual((await self.c.streams.last(name, key="j")).json(), {"n": 1})
        self.assertEqual((await self.c.streams.last(name, key="a")).data, b"v4")
        listed = {s.name: s for s in await self.c.streams.list()}
        self.assertEqual(listed[name].placement[0].replicas, (await self.c.streams.info(name)).partitions[0].replicas)
        self.assertEqual((listed[name].cluster, listed[name].access["publish"]), (STORE, "open"))
        self.assertEqual(await self.c.streams.purge(name, key="a"), [{"partition": 0, "firstOffset": 0}])
        with self.assertRaises(px.MessageNotFoundError):
            await self.c.streams.last(name, key="a")
        with self.assertRaises(px.MessageNotFoundError):
            await self.c.streams.get(name, offset=0)
        got = []
        async with await self.c.consume(name) as consumer:
            async for sm in consumer:
                got.append(sm.data)
                if len(got) == 3:
                    break
        self.assertEqual(got, [b"v1", b"v3", b"v5"])  # then the j message
        with self.assertRaises(px.InvalidArgumentError):
            await self.c.streams.purge(name, key=b"")

    async def test_consumer_options_nak_term_working_and_fetch(self) -> None:
        name, subject = await self.stream()
        for i in range(4):
            await self.c.publish(f"{subject}.{'keep' if i < 3 else 'skip'}", f"m{i}".encode(), ack="all")
        c = await self.c.consume(name, durable="w", filter=f"{subject}.keep", max_deliver=3, backoff=[30], ack_wait=30)
        first = await c.fetch(3, expires=5)
        self.assertEqual([m.data for m in first], [b"m0", b"m1", b"m2"])
        await first[0].ack()
        await first[1].working()
        await first[1].nak(0.05)  # again after 50 ms
        await first[2].term()  # never again
        again = await c.fetch(1, expires=5)
        self.assertEqual([(m.data, m.delivery_count) for m in again], [(b"m1", 2)])
        await again[0].ack()
        self.assertEqual(await c.fetch(5, expires=0.3), [])  # m3 is filtered out
        with self.assertRaises(px.InvalidArgumentError):
            async for _m in c:  # pulled: cannot also be iterated
                pass
        c.close()
        # The counters reach the consumer's record within a second or on close: poll a while.
        for _ in range(50):
            info = await self.c.streams.consumer_info(name, "w")
            if info["terminated"] == 1:
                break
            await asyncio.sleep(0.1)
        self.assertEqual(info["terminated"], 1)
        # The node refuses an option that needs a durable consumer, naming it.
        with self.assertRaisesRegex(px.InvalidArgumentError, "ackPolicy"):
            await self.c.consume(name, ack_policy="none")
        # Push with ack policy none, and a bad option refused by the client.
        pushed = await self.c.consume(name, durable="p", ack_policy="none", from_="earliest")
        async for m in pushed:
            self.assertEqual(m.data, b"m0")
            break
        pushed.close()
        with self.assertRaises(px.InvalidArgumentError):
            self.c.consume(name, durable="w2", ack_policy="sometimes")

    async def test_kv_bucket(self) -> None:
        kv = await self.c.kv(unique("cfg"), cluster=STORE, replicas=1)
        watch = kv.watch("app.>")
        await watch
        await kv.put("app.json", '{"on": true}')
        self.assertEqual((await kv.get("app.json")).json(), {"on": True})  # type: ignore[union-attr]
        r1 = await kv.put("app.db", "one")
        entry = await kv.get("app.db")
        assert entry is not None
        self.assertEqual((entry.string(), entry.revision, entry.operation), ("one", r1, "put"))
        with self.assertRaises(px.KeyExistsError):
            await kv.create("app.db", "again")
        r2 = await kv.update("app.db", "two", r1)
        with self.assertRaises(px.WrongRevisionError):
            await kv.update("app.db", "three", r1)
        await kv.create("app.cache", b"on")
        self.assertEqual(sorted(await kv.keys()), ["app.cache", "app.db", "app.json"])
        await kv.delete("app.cache")
        self.assertIsNone(await kv.get("app.cache"))
        self.assertEqual([e.string() for e in await kv.history("app.db")], ["one", "two"])
        seen = []
        async for e in watch:
            seen.append((e.key, e.operation, e.revision))
            if e.key == "app.cache" and e.operation == "delete":
                break
        watch.close()
        self.assertIn(("app.db", "put", r2), seen)
        with self.assertRaises(px.InvalidArgumentError):
            await kv.put("bad key", "x")


if __name__ == "__main__":
    unittest.main()
