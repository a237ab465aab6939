import { createCipheriv, createHash } from 'node:crypto'
import { once } from 'node:events'
import { noise } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { LengthPrefixedDecoder } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { Uint8ArrayList } from 'uint8arraylist'
import { afterEach, describe, expect, it } from 'vitest'
import { NOISE_AES_GCM_PROTOCOL, NOISE_PROTOCOL } from '../src/constants.js'
import { lengthOrWait, tuneNoiseReads } from '../src/link/noise-reads.js'
import { sendReleased } from '../src/link/send-released.js'
import { aesFromCpu, type CipherChoice } from '../src/transport/encrypters.js'
import { buildLibp2p, type PlexusLibp2p } from '../src/transport/libp2p.js'
import { aesGcmCrypto, chachaPolyCrypto } from '../src/transport/noise-crypto.js'
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
      const ours = flat(chachaPolyCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, key))
      expect(hex(ours)).toBe(hex(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, key)))
      expect(ours.length).toBe(n + 16)
      const back = flat(defaultCrypto.chaCha20Poly1305Decrypt(ours, nonce, ad, key))
      expect(Buffer.from(back).equals(Buffer.from(plain))).toBe(true)
    }
    const list = new Uint8ArrayList(randomBytesFrom(rand, 3000), randomBytesFrom(rand, 2000))
    expect(hex(chachaPolyCrypto.chaCha20Poly1305Encrypt(list as never, nonce, ad, key))).toBe(
      hex(defaultCrypto.chaCha20Poly1305Encrypt(list.subarray(), nonce, ad, key)),
    )
  })
})

/** AES-256-GCM of `plain` in one piece, with Node's cipher directly: cipher text then tag. */
function aesReference(plain: Uint8Array): string {
  const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 })
  c.setAAD(ad)
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]).toString('hex')
}

/** `bytes` cut at random points into a list of 1 to 4 pieces. */
function randomList(rand: () => number, bytes: Uint8Array): Uint8ArrayList {
  const cuts = Array.from({ length: Math.floor(rand() * 4) }, () => Math.floor(rand() * bytes.length))
  const points = [0, ...cuts.sort((x, y) => x - y), bytes.length]
  const list = new Uint8ArrayList()
  for (let i = 1; i < points.length; i++) list.append(bytes.subarray(points[i - 1], points[i]))
  return list
}

describe('noise AES-256-GCM crypto', () => {
  it('is AES-256-GCM with the tag appended, and opens what it seals from any split', () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    for (const n of [0, 1, 100, 1183, 1184, 1200, 4096, 65_519]) {
      const plain = randomBytesFrom(rand, n)
      const sealed = flat(aesGcmCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, key))
      expect(hex(sealed), `size ${n} seed ${seed}`).toBe(aesReference(plain))
      const fromList = aesGcmCrypto.chaCha20Poly1305Encrypt(randomList(rand, plain) as never, nonce, ad, key)
      expect(hex(fromList), `size ${n} seed ${seed}`).toBe(aesReference(plain))
      for (const shape of [sealed, randomList(rand, sealed)]) {
        const back = flat(aesGcmCrypto.chaCha20Poly1305Decrypt(shape as never, nonce, ad, key))
        expect(Buffer.from(back).equals(Buffer.from(plain)), `size ${n} seed ${seed}`).toBe(true)
      }
    }
  })

  it('refuses a message with any byte changed, a wrong nonce or a wrong key', () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    const plain = randomBytesFrom(rand, 5000)
    const sealed = Buffer.from(flat(aesGcmCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, key)))
    for (let i = 0; i < 20; i++) {
      const bad = Buffer.from(sealed)
      const at = Math.floor(rand() * bad.length) // body or tag
      bad[at]! ^= 1 + Math.floor(rand() * 255)
      for (const shape of [bad, randomList(rand, bad)]) {
        expect(
          () => aesGcmCrypto.chaCha20Poly1305Decrypt(shape as never, nonce, ad, key),
          `byte ${at} seed ${seed}`,
        ).toThrow()
      }
    }
    const otherNonce = new Uint8Array(12)
    otherNonce[4] = 10
    expect(() => aesGcmCrypto.chaCha20Poly1305Decrypt(sealed, otherNonce, ad, key)).toThrow()
    expect(() =>
      aesGcmCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, new Uint8Array(32).fill(8)),
    ).toThrow()
    expect(() => aesGcmCrypto.chaCha20Poly1305Decrypt(sealed.subarray(0, 10), nonce, ad, key)).toThrow(
      /shorter than its tag/,
    )
  })

  it('is preferred only where the CPU has AES instructions', () => {
    const x86 = 'processor\t: 0\nflags\t\t: fpu vme sse2 ssse3 aes avx2 sha_ni\n'
    const x86NoAes = 'processor\t: 0\nflags\t\t: fpu vme sse2 ssse3 avx2\n'
    const arm = 'processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n'
    const pi4 = 'processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n'
    expect(aesFromCpu('x64', x86)).toBe(true)
    expect(aesFromCpu('x64', x86NoAes)).toBe(false)
    expect(aesFromCpu('arm64', arm)).toBe(true)
    expect(aesFromCpu('arm64', pi4)).toBe(false)
    expect(aesFromCpu('x64', 'vaes_only: aes\n')).toBe(true) // no flags line: by architecture
    expect(aesFromCpu('arm64', undefined)).toBe(true)
    expect(aesFromCpu('arm', undefined)).toBe(false)
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
  /** A libp2p node as Plexus builds it, on loopback (stopped after the test). */
  const plexusNode = async (network: string, cipher: CipherChoice) => {
    const n = await buildLibp2p({
      network,
      cipher,
      privateKey: await generateKeyPair('Ed25519'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [],
      mdns: false,
      dht: false,
    })
    nodes.push(n)
    return n
  }

  it.each([
    ['aes-256-gcm', NOISE_AES_GCM_PROTOCOL],
    ['chacha20-poly1305', NOISE_PROTOCOL],
  ] as Array<[CipherChoice, string]>)(
    'move 4 MiB byte-exact in random write sizes with %s, read through the tuned noise decoder',
    async (cipher, protocol) => {
      const seed = testSeed()
      const rand = mulberry32(seed)
      const network = uniqueNetwork('noise')
      const build = () => plexusNode(network, cipher)
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
      expect(conn.encryption).toBe(protocol)
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
    },
  )

  it('negotiate AES-256-GCM between Plexus nodes and fall back to the noise spec for others', async () => {
    const network = uniqueNetwork('cipher')
    const plexus = (cipher: CipherChoice) => plexusNode(network, cipher)
    // A libp2p node as anyone would build it: standard noise only.
    const plain = (await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
    })) as unknown as PlexusLibp2p
    nodes.push(plain)
    const echo = async (node: PlexusLibp2p) =>
      node.handle('/t/echo/1.0.0', (stream: Stream) => {
        stream.addEventListener('message', (evt) => {
          stream.send(evt.data instanceof Uint8Array ? evt.data : evt.data.subarray())
        })
      })
    const roundTrip = async (from: PlexusLibp2p, to: PlexusLibp2p) => {
      const stream = await from.dialProtocol(to.getMultiaddrs()[0]!, '/t/echo/1.0.0')
      const payload = new Uint8Array(3000).fill(0x5a)
      const back = new Promise<number>((resolve) => {
        let got = 0
        stream.addEventListener('message', (evt) => {
          got += evt.data.byteLength
          if (got >= payload.length) resolve(got)
        })
      })
      stream.send(payload)
      expect(await back).toBe(payload.length)
      return from.getConnections(to.peerId)[0]!.encryption
    }
    const [auto1, auto2, chacha] = [
      await plexus('auto'),
      await plexus('auto'),
      await plexus('chacha20-poly1305'),
    ]
    for (const n of [auto1, auto2, chacha, plain]) await echo(n)
    expect(await roundTrip(auto1, auto2)).toBe(NOISE_AES_GCM_PROTOCOL)
    expect(await roundTrip(auto1, chacha)).toBe(NOISE_PROTOCOL)
    expect(await roundTrip(chacha, auto2)).toBe(NOISE_PROTOCOL)
    expect(await roundTrip(auto2, plain)).toBe(NOISE_PROTOCOL)
    expect(await roundTrip(plain, auto1)).toBe(NOISE_PROTOCOL)
  })
})
