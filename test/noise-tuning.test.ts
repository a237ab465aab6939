import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { afterEach, describe, expect, it } from 'vitest'
import { decryptWithoutJoin } from '../src/link/noise-reads.js'
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

describe('noise connections between real nodes', () => {
  const nodes: PlexusLibp2p[] = []
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.stop()))
  })

  it('move 4 MiB byte-exact in random write sizes with split messages decrypted without a join', async () => {
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
    decryptWithoutJoin(conn)
    const noiseStream = (conn as unknown as { muxer: { maConn: object } }).muxer.maConn
    // If libp2p changes shape the tweak silently stops applying: this test says so.
    expect((Object.getPrototypeOf(noiseStream) as { __plexusNoCopy?: boolean }).__plexusNoCopy).toBe(true)
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
