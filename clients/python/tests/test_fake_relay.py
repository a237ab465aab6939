"""The client against a scripted relay (an asyncio server in this process): what a real node
rarely does on demand — refusing, a fatal error, a malformed frame, silence, reusing an
INVOKE id — and how the client reports it. Needs no node."""

from __future__ import annotations

import asyncio
import struct
import unittest
from typing import Awaitable, Callable, List, Optional, Tuple

import plexus_relay as px
from plexus_relay.wire import Op, Reader, Writer, frame

Script = Callable[["Peer"], Awaitable[None]]


class Peer:
    """The relay's side of one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self) -> Tuple[int, int, bytes]:
        (length,) = struct.unpack(">I", await self.reader.readexactly(4))
        rest = await self.reader.readexactly(length)
        return rest[0], int.from_bytes(rest[1:5], "big"), rest[5:]

    def send(self, op: int, corr_id: int, body: bytes = b"") -> None:
        self.writer.write(frame(op, corr_id, body))

    async def welcome(self) -> None:
        op, _id, _body = await self.read()
        assert op == Op.HELLO
        self.send(Op.WELCOME, 0, Writer().u16(2).text("fake-node").text("fake-net").u32(1 << 20).body())


class FakeRelay(unittest.IsolatedAsyncioTestCase):
    async def serve(self, script: Script) -> str:
        self.errors: List[BaseException] = []

        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await script(Peer(reader, writer))
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            except BaseException as e:  # noqa: BLE001 - reported by the test
                self.errors.append(e)
            finally:
                writer.close()

        self.server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def asyncTearDown(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        self.assertEqual(self.errors, [])

    async def test_refuse_is_relay_unavailable_with_the_reason(self) -> None:
        async def script(p: Peer) -> None:
            await p.read()
            p.send(Op.REFUSE, 0, Writer().text("relay connection limit reached").body())
            await p.writer.drain()

        with self.assertRaises(px.RelayUnavailableError) as cm:
            await px.connect(await self.serve(script))
        self.assertIn("refused the connection: relay connection limit reached", cm.exception.message)

    async def test_silence_is_a_timeout(self) -> None:
        async def script(p: Peer) -> None:
            await p.read()
            await asyncio.sleep(5)

        with self.assertRaises(px.PlexusTimeoutError):
            await px.connect(await self.serve(script), timeout=0.2)

    async def test_fatal_error_fails_pending_calls_with_its_class(self) -> None:
        async def script(p: Peer) -> None:
            await p.welcome()
            op, _id, _ = await p.read()
            assert op == Op.STATUS
            p.send(Op.ERROR, 0, Writer().text("OverloadedError").text("relay connection limit (1) reached").body())
            await p.writer.drain()

        c = await px.connect(await self.serve(script))
        self.assertEqual((c.node_id, c.network), ("fake-node", "fake-net"))
        with self.assertRaises(px.OverloadedError) as cm:
            await c.status()
        self.assertIn("closed the connection: relay connection limit (1) reached", cm.exception.message)
        self.assertTrue(c.closed)
        with self.assertRaises(px.OverloadedError):
            await c.ping()

    async def test_malformed_frame_ends_the_connection(self) -> None:
        async def script(p: Peer) -> None:
            await p.welcome()
            await p.read()
            p.writer.write(struct.pack(">IB", 1, 0))  # a length below 5
            await p.writer.drain()
            await asyncio.sleep(1)

        c = await px.connect(await self.serve(script))
        with self.assertRaises(px.RelayUnavailableError) as cm:
            await c.request("x", b"y")
        self.assertIn("frame of 1 bytes", cm.exception.message)

    async def test_invoke_ids_reused_after_an_answer(self) -> None:
        answers: List[Tuple[int, int, bytes]] = []

        async def script(p: Peer) -> None:
            await p.welcome()
            op, join_id, _ = await p.read()
            assert op == Op.JOIN
            p.send(Op.OK, join_id)
            for data in (b"one", b"two", b"three"):  # the same INVOKE id, each after its answer
                p.send(Op.INVOKE, 7, Writer().text("fake").u32(5000).text("caller").blob(data).body())
                answers.append(await p.read())
            p.send(Op.INVOKE, 8, Writer().text("fake").u32(5000).text("caller").blob(b"slow").body())
            p.send(Op.INVOKE_CANCEL, 8)
            p.send(Op.PING, 99)
            answers.append(await p.read())

        release: Optional[asyncio.Event] = asyncio.Event()

        async def handler(data: bytes, _ctx: px.RequestContext) -> bytes:
            if data == b"slow":
                assert release is not None
                await release.wait()  # cancelled by INVOKE_CANCEL: never answered
            return data.upper()

        c = await px.connect(await self.serve(script))
        await c.serve("fake", "a passphrase of sixteen+", handler)
        for _ in range(200):
            if len(answers) == 4:
                break
            await asyncio.sleep(0.01)
        replies = [(op, i, Reader(b).blob() if op == Op.INVOKE_REPLY else b) for op, i, b in answers]
        self.assertEqual(
            replies, [(Op.INVOKE_REPLY, 7, b"ONE"), (Op.INVOKE_REPLY, 7, b"TWO"), (Op.INVOKE_REPLY, 7, b"THREE"), (Op.PONG, 99, b"")]
        )
        await c.close()


if __name__ == "__main__":
    unittest.main()
