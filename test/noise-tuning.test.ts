import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, Stream } from '@libp2p/interface'
import { LengthPrefixedDecoder } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import { afterEach, describe, expect, it } from 'vitest'
import { lengthOrWait, tuneNoiseReads } from '../src/link/noise-reads.js'
import { sendReleased } from '../src/link/send-released.js'
import { buildLibp2p, type PlexusLibp2p } from '../src/transport/libp2p.js'
import { noiseCrypto } from '../src/transport/noise-crypto.js'
import { uniqueNetwork } from './helpers/nodes.js'
import { mulberry32, randomBytesFrom, testSeed } from './helpers/rng.js'

/** Noise types lists with its own copy of uint8arraylist (2.x): any list with `subarray()`. */
type Bytes = Uint8Array | { subarray(): Uint8Array }
const flat = (b: Bytes) => (b instanceof Uint8Array ? b : b.subarray())
const hex = (b: Bytes) => Buffer.from(flat(b)).toString('hex')
const key = new Uint8Array(32).fill(7)
const nonce = new Uint8Array(12)
nonce[4] = 9
const ad = new Uint8Array([1, 2, 3])

describe('noise crypto', () => {
  it('encrypts to the same bytes as noise default, for every size and input shape', () => {
    const rand = mulberry32(testSeed())
    for (const n of [0, 1, 100, 1199, 1200, 4096, 65_507]) {
      const plain = randomBytesFrom(rand, n)
      const ours = flat(noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, key))
      expect(hex(ours)).toBe(hex(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, key)))
      expect(ours.length).toBe(n + 16)
      const back = flat(defaultCrypto.chaCha20Poly1305Decrypt(ours, nonce, ad, key))
      expect(Buffer.from(back).equals(Buffer.from(plain))).toBe(true)
    }
    const list = new Uint8ArrayList(randomBytesFrom(rand, 3000), randomBytesFrom(rand, 2000))
    expect(hex(noiseCrypto.chaCha20Poly1305Encrypt(list as never, nonce, ad, key))).toBe(
      hex(defaultCrypto.chaCha20Poly1305Encrypt(list.subarray(), nonce, ad, key)),
    )
  })
})

describe('noise length prefixes', () => {
  it('are decoded from any fragmentation, without a throw when under 2 bytes are buffered', () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    const messages = Array.from({ length: 300 }, () => randomBytesFrom(rand, Math.floor(rand() * 3000)))
    const wire = Buffer.concat(
      messages.map((m) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m])),
    )
    const decoder = new LengthPrefixedDecoder({
      lengthDecoder: lengthOrWait(4 * 1024 * 1024) as never,
      encodingLength: () => 2,
    })
    const got: string[] = []
    let off = 0
    while (off < wire.length) {
      // Fragments of 1 byte, a few bytes, or up to a few messages, so reads end everywhere.
      const r = rand()
      const n = r < 0.3 ? 1 : r < 0.6 ? 1 + Math.floor(rand() * 5) : 1 + Math.floor(rand() * 8000)
      for (const m of decoder.decode(wire.subarray(off, off + n))) got.push(hex(m))
      off += n
    }
    expect(got.length, `seed ${seed}`).toBe(messages.filter((m) => m.length > 0).length)
    expect(got, `seed ${seed}`).toEqual(messages.filter((m) => m.length > 0).map(hex))
  })
})

describe('noise connections between real nodes', () => {
  const nodes: PlexusLibp2p[] = []
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.stop()))
  })

  it('move 4 MiB byte-exact in random write sizes, read through the tuned noise decoder', async () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    const network = uniqueNetwork('noise')
    const build = async () => {
      const n = await buildLibp2p({
        network,
        privateKey: await generateKeyPair('Ed25519'),
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap: [],
        mdns: false,
        dht: false,
      })
      nodes.push(n)
      return n
    }
    const [a, b] = [await build(), await build()]
    const total = 4 * 1024 * 1024
    const received = createHash('sha256')
    let got = 0
    const done = new Promise<void>((resolve, reject) => {
      void a.handle('/t/sink/1.0.0', (stream: Stream) => {
        stream.addEventListener('message', (evt) => {
          const data = evt.data
          for (const c of data instanceof Uint8Array ? [data] : data) {
            received.update(c)
            got += c.length
          }
          if (got === total) resolve()
          if (got > total) reject(new Error(`received ${got} bytes, sent ${total}`))
        })
      })
    })
    const stream = await b.dialProtocol(a.getMultiaddrs()[0]!, '/t/sink/1.0.0')
    const conn = b.getConnections(a.peerId)[0] as Connection
    const receiving = a.getConnections(b.peerId)[0] as Connection
    tuneNoiseReads(conn)
    tuneNoiseReads(receiving)
    const noiseOf = (c: Connection) =>
      (c as unknown as { muxer: { maConn: { decoder?: { __plexusFast?: boolean } } } }).muxer.maConn
    // If libp2p changes shape the tweaks silently stop applying: this test says so.
    expect((Object.getPrototypeOf(noiseOf(conn)) as { __plexusNoCopy?: boolean }).__plexusNoCopy).toBe(true)
    expect(noiseOf(receiving).decoder?.__plexusFast).toBe(true)
    // Likewise the check that lets links reuse block buffers.
    const released = sendReleased(stream, conn)
    expect(released).toBeDefined()
    const sent = createHash('sha256')
    let off = 0
    while (off < total) {
      const n = Math.min(total - off, 1 + Math.floor(rand() * 200_000))
      const chunk = randomBytesFrom(rand, n)
      sent.update(chunk)
      off += n
      if (!stream.send(chunk)) await once(stream as unknown as EventTarget, 'drain')
    }
    await done
    expect(received.digest('hex'), `seed ${seed}`).toBe(sent.digest('hex'))
    expect(released!()).toBe(true) // everything arrived: nothing is held below the stream
  })
})
