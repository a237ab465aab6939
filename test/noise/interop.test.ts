/**
 * Plexus's own noise encrypter on real libp2p nodes over loopback TCP: byte-exact bulk
 * transfer on both suites with the link release check, and interoperation with stock
 * `@chainsafe/libp2p-noise` both ways (a plain libp2p node dials a Plexus node and is dialled
 * by one), including a Plexus node of the previous generation (chainsafe noise with the
 * AES-256-GCM suite and its prologue) on `/plexus/noise-aes256gcm/1.0.0`.
 */
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto'
import { once } from 'node:events'
import { type ICryptoInterface, noise } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import type { Connection, ConnectionEncrypter, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { afterEach, describe, expect, it } from 'vitest'
import { NOISE_AES_GCM_PROTOCOL, NOISE_PROTOCOL } from '../../src/constants.js'
import { aesFromCpu, type CipherChoice } from '../../src/transport/encrypters.js'
import type { PlexusLibp2p } from '../../src/transport/libp2p.js'
import { releasedOnSend } from '../../src/transport/noise/index.js'
import { keylessLibp2p } from '../helpers/keyless-libp2p.js'
import { uniqueNetwork } from '../helpers/nodes.js'
import { mulberry32, randomBytesFrom, testSeed } from '../helpers/rng.js'

const flat = (b: Uint8Array | { subarray(): Uint8Array }) => (b instanceof Uint8Array ? b : b.subarray())

/** AES-256-GCM in chainsafe noise's AEAD slots, as Plexus nodes before our encrypter ran it. */
const oldAesGcm: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    const c = createCipheriv('aes-256-gcm', k, nonce, { authTagLength: 16 })
    c.setAAD(ad)
    return Buffer.concat([c.update(flat(plaintext)), c.final(), c.getAuthTag()])
  },
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k) {
    const all = flat(ciphertext)
    const d = createDecipheriv('aes-256-gcm', k, nonce, { authTagLength: 16 })
    d.setAAD(ad)
    d.setAuthTag(all.subarray(all.length - 16))
    return Buffer.concat([d.update(all.subarray(0, all.length - 16)), d.final()])
  },
}
const OLD_PROLOGUE = new TextEncoder().encode('plexus noise XX 25519 AES-256-GCM SHA256')

describe('noise connections between real nodes', () => {
  const nodes: PlexusLibp2p[] = []
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.stop()))
  })
  /** A libp2p node as Plexus builds it, on loopback (stopped after the test). */
  const plexusNode = async (network: string, cipher: CipherChoice) => {
    const n = await keylessLibp2p(network, cipher)
    nodes.push(n)
    return n
  }
  /** A libp2p node as anyone would build it, with stock chainsafe noise (or the encrypters given). */
  const stockNode = async (encrypters?: Array<(c: any) => ConnectionEncrypter>) => {
    const n = (await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: encrypters ?? [noise()],
      streamMuxers: [yamux()],
    })) as unknown as PlexusLibp2p
    nodes.push(n)
    return n
  }

  it.each([
    ['aes-256-gcm', NOISE_AES_GCM_PROTOCOL],
    ['chacha20-poly1305', NOISE_PROTOCOL],
  ] as Array<[CipherChoice, string]>)(
    'move 4 MiB byte-exact in random write sizes with %s; the link release check holds',
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
      expect(conn.encryption).toBe(protocol)
      const released = releasedOnSend(stream, conn)
      expect(released).toBeDefined()
      const sent = createHash('sha256')
      let off = 0
      while (off < total) {
        const n = Math.min(total - off, 1 + Math.floor(rand() * 200_000))
        const chunk = randomBytesFrom(rand, n)
        sent.update(chunk)
        off += n
        if (!stream.send(chunk)) {
          expect(released!()).toBe(false) // the stream still holds bytes of ours
          await once(stream as unknown as EventTarget, 'drain')
        }
        // Bytes handed down are encrypted at once: overwriting them now must not change what arrives.
        if (released!()) chunk.fill(0)
      }
      await done
      expect(received.digest('hex'), `seed ${seed}`).toBe(sent.digest('hex'))
      expect(released!()).toBe(true)
    },
  )

  it('negotiate AES-256-GCM between Plexus nodes and fall back to the noise spec for stock libp2p, both ways', async () => {
    const network = uniqueNetwork('cipher')
    const plexus = (cipher: CipherChoice) => plexusNode(network, cipher)
    const plain = await stockNode()
    const old = await stockNode([
      (c) => {
        const e = noise({ crypto: oldAesGcm, prologueBytes: OLD_PROLOGUE })(c)
        ;(e as { protocol: string }).protocol = NOISE_AES_GCM_PROTOCOL
        return e
      },
      noise(),
    ])
    const echo = async (node: PlexusLibp2p) =>
      node.handle('/t/echo/1.0.0', (stream: Stream) => {
        stream.addEventListener('message', (evt) => {
          stream.send(evt.data instanceof Uint8Array ? evt.data : evt.data.subarray())
        })
      })
    const roundTrip = async (from: PlexusLibp2p, to: PlexusLibp2p) => {
      const stream = await from.dialProtocol(to.getMultiaddrs()[0]!, '/t/echo/1.0.0')
      const payload = randomBytesFrom(mulberry32(testSeed()), 100_000)
      const back = new Promise<Buffer>((resolve) => {
        const parts: Uint8Array[] = []
        let got = 0
        stream.addEventListener('message', (evt) => {
          parts.push(flat(evt.data))
          got += evt.data.byteLength
          if (got >= payload.length) resolve(Buffer.concat(parts))
        })
      })
      stream.send(payload)
      expect((await back).equals(payload)).toBe(true)
      return from.getConnections(to.peerId)[0]!.encryption
    }
    const [auto1, auto2, chacha] = [
      await plexus('auto'),
      await plexus('auto'),
      await plexus('chacha20-poly1305'),
    ]
    for (const n of [auto1, auto2, chacha, plain, old]) await echo(n)
    const aes = aesFromCpu(process.arch, undefined) ? NOISE_AES_GCM_PROTOCOL : NOISE_PROTOCOL
    expect(await roundTrip(auto1, auto2)).toBe(aes)
    expect(await roundTrip(auto1, chacha)).toBe(NOISE_PROTOCOL)
    expect(await roundTrip(chacha, auto2)).toBe(NOISE_PROTOCOL)
    expect(await roundTrip(auto2, plain)).toBe(NOISE_PROTOCOL)
    expect(await roundTrip(plain, auto1)).toBe(NOISE_PROTOCOL)
    expect(await roundTrip(chacha, plain)).toBe(NOISE_PROTOCOL)
    // The previous generation of Plexus (chainsafe noise running AES-256-GCM), both ways.
    expect(await roundTrip(old, auto1)).toBe(aes)
    expect(await roundTrip(auto2, old)).toBe(aes)
    // Another encrypter: nothing is known about what it holds.
    expect(
      releasedOnSend({ writeBufferLength: 0 } as Stream, { encryption: '/tls/1.0.0' } as Connection),
    ).toBeUndefined()
  })
})

describe('cipher preference', () => {
  it('is AES only where the CPU has AES instructions', () => {
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
