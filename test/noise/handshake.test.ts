/**
 * The noise core without I/O: the XX state machine against the reference libp2p
 * implementation's (chainsafe's state machine, loaded from its files) byte for byte with
 * fixed keys, property tests of complete handshakes and transport messages, hostile messages
 * (truncated, flipped, oversized, low-order keys, out of turn: always `HandshakeError`), the
 * payload codec against chainsafe's, and the transport reader under any fragmentation.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import fc from 'fast-check'
import { Uint8ArrayList } from 'uint8arraylist'
import { describe, expect, it } from 'vitest'
import { HandshakeError } from '../../src/errors.js'
import { type AeadName, CipherState, MAX_PLAINTEXT, TAG_BYTES } from '../../src/transport/noise/cipher.js'
import { NOISE_PROTOCOL_NAME, XXHandshake } from '../../src/transport/noise/handshake.js'
import { decodePayload, encodePayload, signedStaticKey } from '../../src/transport/noise/payload.js'
import { NoiseFrameReader } from '../../src/transport/noise/reader.js'
import { dhKeyPair } from '../../src/transport/noise/x25519.js'
import { FUZZ_RUNS, inputs } from '../helpers/fuzz.js'
import { mulberry32, randomBytesFrom, testSeed } from '../helpers/rng.js'

/** chainsafe noise's internal modules (not exported by the package), by file. */
const noiseDir = dirname(fileURLToPath(import.meta.resolve('@chainsafe/libp2p-noise')))
const load = (file: string) => import(pathToFileURL(join(noiseDir, file)).href)
const { XXHandshakeState } = await load('protocol.js')
const { wrapCrypto } = await load('crypto.js')
const { defaultCrypto } = await load('crypto/index.js')
const { NoiseHandshakePayload } = await load('proto/payload.js')

const flat = (b: Uint8Array | Uint8ArrayList) => (b instanceof Uint8Array ? b : b.subarray())
const hex = (b: Uint8Array | Uint8ArrayList) => Buffer.from(flat(b)).toString('hex')
const seedOf = (rand: () => number) => randomBytesFrom(rand, 32)

/** chainsafe's crypto with AES-256-GCM in the AEAD slots (as Plexus ran it before). */
const aesCrypto = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(p: Uint8Array | Uint8ArrayList, n: Uint8Array, ad: Uint8Array, k: Uint8Array) {
    const c = createCipheriv('aes-256-gcm', k, n, { authTagLength: 16 })
    c.setAAD(ad)
    return Buffer.concat([c.update(flat(p)), c.final(), c.getAuthTag()])
  },
  chaCha20Poly1305Decrypt(ct: Uint8Array | Uint8ArrayList, n: Uint8Array, ad: Uint8Array, k: Uint8Array) {
    const all = flat(ct)
    const d = createDecipheriv('aes-256-gcm', k, n, { authTagLength: 16 })
    d.setAAD(ad)
    d.setAuthTag(all.subarray(all.length - 16))
    return Buffer.concat([d.update(all.subarray(0, all.length - 16)), d.final()])
  },
}

/** A reference handshake state with the key pairs of the given seeds (it makes `e` when it writes it). */
function reference(aead: AeadName, initiator: boolean, prologue: Uint8Array, s: Uint8Array, e: Uint8Array) {
  const keys = (seed: Uint8Array) => defaultCrypto.generateX25519KeyPairFromSeed(seed)
  const base = aead === 'aes-256-gcm' ? aesCrypto : defaultCrypto
  const crypto = wrapCrypto({ ...base, generateX25519KeyPair: () => keys(e) })
  return new XXHandshakeState({ crypto, protocolName: NOISE_PROTOCOL_NAME, prologue, initiator, s: keys(s) })
}

/** Both sides of a handshake of ours, run to the end with the given payloads. */
function pair(aead: AeadName, prologue = new Uint8Array(0), prologue2 = prologue) {
  const i = new XXHandshake({ initiator: true, aead, prologue, staticKey: dhKeyPair() })
  const r = new XXHandshake({ initiator: false, aead, prologue: prologue2, staticKey: dhKeyPair() })
  return { i, r }
}

describe('XX handshake', () => {
  it.each(['chacha20-poly1305', 'aes-256-gcm'] as AeadName[])(
    'writes the reference implementation bytes exactly, as either role (%s)',
    (aead) => {
      const seed = testSeed()
      const rand = mulberry32(seed)
      for (const weInitiate of [true, false]) {
        const prologue = randomBytesFrom(rand, Math.floor(rand() * 40))
        const [si, ei, sr, er] = [seedOf(rand), seedOf(rand), seedOf(rand), seedOf(rand)]
        const payloads = [0, 1, 2].map((k) => randomBytesFrom(rand, k === 0 ? 0 : Math.floor(rand() * 300)))
        const ours = new XXHandshake({
          initiator: weInitiate,
          aead,
          prologue,
          staticKey: dhKeyPair(weInitiate ? si : sr),
          ephemeralKey: dhKeyPair(weInitiate ? ei : er),
        })
        const theirs = reference(aead, !weInitiate, prologue, weInitiate ? sr : si, weInitiate ? er : ei)
        // The reference in our role with our keys: what we write must be what it writes.
        const twin = reference(aead, weInitiate, prologue, weInitiate ? si : sr, weInitiate ? ei : er)
        const ctx = `seed ${seed} ${aead} weInitiate=${weInitiate}`
        // Message A (initiator), B (responder), C (initiator).
        const writers = ['writeMessageA', 'writeMessageB', 'writeMessageC']
        const readers = ['readMessageA', 'readMessageB', 'readMessageC']
        for (let m = 0; m < 3; m++) {
          if ((m % 2 === 0) === weInitiate) {
            const msg = ours.writeMessage(payloads[m]!)
            expect(hex(msg), `${ctx} message ${m + 1}`).toBe(hex(twin[writers[m]!](payloads[m]!)))
            expect(hex(theirs[readers[m]!](new Uint8ArrayList(msg))), ctx).toBe(hex(payloads[m]!))
          } else {
            const msg = theirs[writers[m]!](payloads[m]!)
            twin[readers[m]!](msg)
            expect(hex(ours.readMessage(flat(msg))), ctx).toBe(hex(payloads[m]!))
          }
        }
        expect(hex(ours.split().handshakeHash), ctx).toBe(hex(theirs.ss.h))
        // Transport: their split is [initiator→responder, responder→initiator].
        const [c1, c2] = theirs.ss.split()
        const theirSend = weInitiate ? c2 : c1
        const theirReceive = weInitiate ? c1 : c2
        const { send, receive } = ours.split()
        for (let k = 0; k < 3; k++) {
          const plain = randomBytesFrom(rand, Math.floor(rand() * 5000))
          const mine = send.encrypt(plain)
          expect(hex(theirReceive.decryptWithAd(new Uint8Array(0), mine)), ctx).toBe(hex(plain))
          const back = theirSend.encryptWithAd(new Uint8Array(0), plain)
          expect(hex(Buffer.concat(receive.decrypt(flat(back), back.byteLength))), ctx).toBe(hex(plain))
        }
      }
    },
  )

  it('completes for any payloads and prologue; transport messages go both ways (property)', () => {
    const seed = testSeed()
    fc.assert(
      fc.property(
        fc.constantFrom<AeadName>('chacha20-poly1305', 'aes-256-gcm'),
        fc.uint8Array({ maxLength: 64 }),
        fc.uint8Array({ maxLength: 2000 }),
        fc.uint8Array({ maxLength: 2000 }),
        fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 5 }),
        (aead, prologue, p2, p3, messages) => {
          const { i, r } = pair(aead, prologue)
          r.readMessage(i.writeMessage(new Uint8Array(0)))
          expect(hex(i.readMessage(r.writeMessage(p2)))).toBe(hex(p2))
          expect(hex(r.readMessage(i.writeMessage(p3)))).toBe(hex(p3))
          expect(i.complete && r.complete).toBe(true)
          const a = i.split()
          const b = r.split()
          expect(hex(a.handshakeHash)).toBe(hex(b.handshakeHash))
          for (const m of messages) {
            expect(hex(Buffer.concat(b.receive.decrypt(a.send.encrypt(m), m.byteLength + TAG_BYTES)))).toBe(
              hex(m),
            )
            expect(hex(Buffer.concat(a.receive.decrypt(b.send.encrypt(m), m.byteLength + TAG_BYTES)))).toBe(
              hex(m),
            )
          }
        },
      ),
      { seed, numRuns: 100 },
    )
  })

  it('fails on differing prologues at message 2 (the suites never mix)', () => {
    const { i, r } = pair('aes-256-gcm', new Uint8Array([1]), new Uint8Array([2]))
    r.readMessage(i.writeMessage(new Uint8Array(0)))
    expect(() => i.readMessage(r.writeMessage(new Uint8Array(10)))).toThrow(HandshakeError)
  })

  it('refuses truncated, flipped, extended or garbage messages with HandshakeError only', () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    for (const aead of ['chacha20-poly1305', 'aes-256-gcm'] as AeadName[]) {
      for (const stage of [1, 2, 3]) {
        // A good transcript up to the stage, then a mutated message at it.
        const run = (mutate: (m: Uint8Array) => Uint8Array) => {
          const { i, r } = pair(aead)
          const m1 = i.writeMessage(new Uint8Array(0))
          if (stage === 1) return () => r.readMessage(mutate(m1))
          r.readMessage(m1)
          const m2 = r.writeMessage(randomBytesFrom(rand, 100))
          if (stage === 2) return () => i.readMessage(mutate(m2))
          i.readMessage(m2)
          const m3 = i.writeMessage(randomBytesFrom(rand, 100))
          return () => r.readMessage(mutate(m3))
        }
        const ctx = `seed ${seed} ${aead} stage ${stage}`
        // Truncated anywhere inside the keys (stage 1 has no authenticated part after its key).
        for (let cut = 0; cut < (stage === 1 ? 32 : 148); cut += 1 + Math.floor(rand() * 7)) {
          expect(
            run((m) => m.subarray(0, Math.min(cut, m.length - 1))),
            `${ctx} cut ${cut}`,
          ).toThrow(HandshakeError)
        }
        if (stage > 1) {
          for (let k = 0; k < 20; k++) {
            const flip = (m: Uint8Array) => {
              const b = Uint8Array.from(m)
              b[32 * (stage === 2 ? 1 : 0) + Math.floor(rand() * (b.length - 32 * (stage === 2 ? 1 : 0)))]! ^=
                1
              return b
            }
            expect(run(flip), ctx).toThrow(HandshakeError)
          }
          expect(
            run((m) => Buffer.concat([m, new Uint8Array(5)])),
            ctx,
          ).toThrow(HandshakeError)
          expect(
            run((m) => randomBytesFrom(rand, m.length)),
            ctx,
          ).toThrow(HandshakeError)
        }
        // An all-zero (low-order) ephemeral key: refused at the first DH that uses it.
        if (stage === 2) {
          expect(
            run((m) => Buffer.concat([new Uint8Array(32), m.subarray(32)])),
            ctx,
          ).toThrow(HandshakeError)
        }
      }
    }
    // In message 1 the key is only hashed; the responder's first DH refuses it.
    const { i, r } = pair('chacha20-poly1305')
    r.readMessage(Buffer.concat([new Uint8Array(32), i.writeMessage(new Uint8Array(0)).subarray(32)]))
    expect(() => r.writeMessage(new Uint8Array(0))).toThrow(HandshakeError)
  })

  it('refuses calls out of turn and any use after a failure', () => {
    const { i, r } = pair('chacha20-poly1305')
    expect(() => i.readMessage(new Uint8Array(32))).toThrow(/not our turn/)
    expect(() => r.writeMessage(new Uint8Array(0))).toThrow(/not our turn/)
    expect(() => i.split()).toThrow(HandshakeError)
    r.readMessage(i.writeMessage(new Uint8Array(0)))
    expect(() => i.readMessage(new Uint8Array(10))).toThrow(/truncated/)
    expect(() => i.readMessage(r.writeMessage(new Uint8Array(0)))).toThrow(/already failed/)
    expect(() => r.writeMessage(new Uint8Array(70_000))).toThrow(HandshakeError)
  })
})

describe('handshake payload', () => {
  it('is read by the reference codec and reads it, extensions included', () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    const mine = {
      identityKey: randomBytesFrom(rand, 36),
      identitySig: randomBytesFrom(rand, 64),
      extensions: {
        webtransportCerthashes: [randomBytesFrom(rand, 10)],
        streamMuxers: ['/yamux/1.0.0', '/mplex/6.7.0'],
      },
    }
    const theirs = NoiseHandshakePayload.decode(encodePayload(mine))
    expect(hex(theirs.identityKey)).toBe(hex(mine.identityKey))
    expect(hex(theirs.identitySig)).toBe(hex(mine.identitySig))
    expect(theirs.extensions.streamMuxers).toEqual(mine.extensions.streamMuxers)
    const back = decodePayload(NoiseHandshakePayload.encode(theirs))
    expect(back.extensions?.streamMuxers).toEqual(mine.extensions.streamMuxers)
    expect(hex(back.extensions!.webtransportCerthashes[0]!)).toBe(
      hex(mine.extensions.webtransportCerthashes[0]!),
    )
    const noExt = decodePayload(
      NoiseHandshakePayload.encode({ identityKey: mine.identityKey, identitySig: mine.identitySig }),
    )
    expect(noExt.extensions).toBeUndefined()
    expect(Buffer.from(signedStaticKey(new Uint8Array([1, 2]))).toString()).toBe(
      'noise-libp2p-static-key:\x01\x02',
    )
  })

  it('decodes any bytes to a payload or a HandshakeError, never anything else (fuzz)', () => {
    const valid = encodePayload({
      identityKey: new Uint8Array(36).fill(1),
      identitySig: new Uint8Array(64).fill(2),
      extensions: { webtransportCerthashes: [], streamMuxers: ['/yamux/1.0.0'] },
    })
    fc.assert(
      fc.property(inputs([valid]), (bytes) => {
        try {
          const p = decodePayload(bytes)
          expect(p.identityKey.byteLength).toBeGreaterThan(0)
        } catch (err) {
          expect(err).toBeInstanceOf(HandshakeError)
        }
      }),
      { seed: testSeed(), numRuns: FUZZ_RUNS },
    )
    expect(() => decodePayload(new Uint8Array(0))).toThrow(/no identity_key/)
  })
})

describe('transport reader', () => {
  it('decrypts a stream of messages cut at any points, and holds at most one partial message', () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    const key = randomBytesFrom(rand, 32)
    for (const aead of ['chacha20-poly1305', 'aes-256-gcm'] as AeadName[]) {
      const send = new CipherState(aead, key)
      const reader = new NoiseFrameReader(new CipherState(aead, key))
      const sizes = Array.from({ length: 200 }, () =>
        rand() < 0.1 ? MAX_PLAINTEXT : Math.floor(rand() * (rand() < 0.5 ? 40 : 5000)),
      )
      const plain = sizes.map((n) => randomBytesFrom(rand, n))
      const wire = Buffer.concat(
        plain.map((p) => {
          const out = Buffer.alloc(2 + p.length + TAG_BYTES)
          out.writeUInt16BE(p.length + TAG_BYTES)
          send.encryptInto(p, p.length, new Uint8Array(0), out, 2)
          return out
        }),
      )
      const got: Uint8Array[] = []
      let off = 0
      while (off < wire.length) {
        const r = rand()
        const n = r < 0.3 ? 1 : r < 0.6 ? 1 + Math.floor(rand() * 5) : 1 + Math.floor(rand() * 100_000)
        const chunk = wire.subarray(off, off + n)
        // Chunks come as buffers or as lists of pieces, as sockets and pnet deliver them.
        const shaped =
          rand() < 0.5 ? chunk : new Uint8ArrayList(chunk.subarray(0, n >> 1), chunk.subarray(n >> 1))
        const out = reader.push(shaped)
        if (out !== undefined) got.push(out.subarray())
        expect(reader.pendingBytes, `seed ${seed}`).toBeLessThanOrEqual(2 + MAX_PLAINTEXT + TAG_BYTES)
        off += n
      }
      expect(hex(Buffer.concat(got)), `seed ${seed} ${aead}`).toBe(hex(Buffer.concat(plain)))
    }
  })

  it('refuses a message shorter than its tag or one that fails authentication', () => {
    const key = new Uint8Array(32).fill(3)
    expect(() =>
      new NoiseFrameReader(new CipherState('aes-256-gcm', key)).push(Uint8Array.of(0, 3, 1, 2, 3)),
    ).toThrow(/shorter than its tag/)
    const send = new CipherState('chacha20-poly1305', key)
    const body = send.encrypt(new Uint8Array(100))
    body[7]! ^= 1
    const msg = Buffer.concat([Uint8Array.of(0, body.length), body])
    expect(() => new NoiseFrameReader(new CipherState('chacha20-poly1305', key)).push(msg)).toThrow(
      HandshakeError,
    )
  })
})
