/**
 * Our encrypter facing a hostile or broken peer: garbage, truncated and oversized handshake
 * messages, a payload signed by another key, a peer other than the one dialled, a peer that
 * hangs up or floods mid-handshake, an aborted upgrade. Each ends in `HandshakeError` (the
 * upgrader then closes the connection), never a crash; a real node keeps serving after a raw
 * TCP peer sent it garbage, and refuses a dial that names the wrong peer id.
 */
import { connect } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { MultiaddrConnection, PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it } from 'vitest'
import { HandshakeError } from '../../src/errors.js'
import type { PlexusLibp2p } from '../../src/transport/libp2p.js'
import { PlexusNoise } from '../../src/transport/noise/index.js'
import { keylessLibp2p } from '../helpers/keyless-libp2p.js'
import { uniqueNetwork } from '../helpers/nodes.js'
import { mulberry32, randomBytesFrom, testSeed } from '../helpers/rng.js'

const noMuxers = { getStreamMuxers: () => new Map() }
const encrypter = (privateKey: PrivateKey) =>
  new PlexusNoise({ privateKey, upgrader: noMuxers }, { protocol: '/noise', aead: 'chacha20-poly1305' })

/** Sends raw bytes on `conn` as one u16-length-prefixed message (or as given when `raw`). */
function sendFramed(conn: MultiaddrConnection, body: Uint8Array, raw = false): void {
  if (raw) conn.send(body)
  else conn.send(Buffer.concat([Uint8Array.of(body.length >> 8, body.length & 0xff), body]))
}

describe('noise handshake against hostile peers', () => {
  it('rejects garbage, truncated and oversized first messages with HandshakeError', async () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    const key = await generateKeyPair('Ed25519')
    const cases: Array<[string, Uint8Array, boolean]> = [
      ['empty message', new Uint8Array(0), false],
      ['short ephemeral key', randomBytesFrom(rand, 20), false],
      ['length prefix only, then hang-up', Uint8Array.of(0xff), true],
      [
        'claims 65535 bytes, sends 100, then hangs up',
        Buffer.concat([Uint8Array.of(0xff, 0xff), new Uint8Array(100)]),
        true,
      ],
    ]
    for (const [what, bytes, raw] of cases) {
      const [outbound, inbound] = multiaddrConnectionPair()
      const refused = expect(encrypter(key).secureInbound(inbound), `${what} (seed ${seed})`).rejects.toThrow(
        HandshakeError,
      )
      sendFramed(outbound, bytes, raw)
      if (raw) await outbound.close()
      await refused
    }
    // A message 1 of any 32 bytes or more is accepted (a key, then early data, ignored) and
    // answered; garbage as message 3 is then refused.
    for (let k = 0; k < 5; k++) {
      const [outbound, inbound] = multiaddrConnectionPair()
      const result = encrypter(key).secureInbound(inbound)
      const replied = new Promise((resolve) => outbound.addEventListener('message', resolve, { once: true }))
      sendFramed(outbound, randomBytesFrom(rand, 32 + Math.floor(rand() * 100)))
      await replied
      sendFramed(outbound, randomBytesFrom(rand, Math.floor(rand() * 200)))
      await expect(result, `garbage message 3 (seed ${seed})`).rejects.toThrow(HandshakeError)
    }
  })

  it('rejects a payload signed by another key, and a peer other than the one dialled', async () => {
    const [alice, bob, mallory] = await Promise.all([1, 2, 3].map(() => generateKeyPair('Ed25519')))
    // Bob's encrypter signs its static key with Mallory's key while claiming Bob's identity.
    const forger = new PlexusNoise(
      {
        privateKey: {
          ...bob,
          publicKey: bob.publicKey,
          sign: (d: Uint8Array) => mallory!.sign(d),
        } as PrivateKey,
        upgrader: noMuxers,
      },
      { protocol: '/noise', aead: 'chacha20-poly1305' },
    )
    let [outbound, inbound] = multiaddrConnectionPair()
    let results = await Promise.allSettled([
      encrypter(alice!).secureOutbound(outbound),
      forger.secureInbound(inbound),
    ])
    expect(results[0].status === 'rejected' && results[0].reason).toBeInstanceOf(HandshakeError)
    expect(String(results[0].status === 'rejected' && results[0].reason.message)).toMatch(/identity_sig/)
    // Alice dials "Mallory" but Bob answers.
    ;[outbound, inbound] = multiaddrConnectionPair()
    results = await Promise.allSettled([
      encrypter(alice!).secureOutbound(outbound, { remotePeer: peerIdFromPrivateKey(mallory!) }),
      encrypter(bob!).secureInbound(inbound),
    ])
    expect(results[0].status === 'rejected' && results[0].reason.message).toMatch(/expected peer/)
    // And a good pair completes, each side naming the other.
    ;[outbound, inbound] = multiaddrConnectionPair()
    const [a, b] = await Promise.all([
      encrypter(alice!).secureOutbound(outbound, { remotePeer: peerIdFromPrivateKey(bob!) }),
      encrypter(bob!).secureInbound(inbound),
    ])
    expect(a.remotePeer.equals(peerIdFromPrivateKey(bob!))).toBe(true)
    expect(b.remotePeer.equals(peerIdFromPrivateKey(alice!))).toBe(true)
  })

  it('rejects when the upgrade is aborted or the peer floods mid-handshake', async () => {
    const key = await generateKeyPair('Ed25519')
    let [outbound, inbound] = multiaddrConnectionPair()
    const ctl = new AbortController()
    const pending = expect(encrypter(key).secureOutbound(outbound)).rejects.toThrow(HandshakeError)
    void inbound
    const aborted = encrypter(key).secureInbound(multiaddrConnectionPair()[1], { signal: ctl.signal })
    ctl.abort()
    await expect(aborted).rejects.toThrow(/aborted/)
    await outbound.close()
    await pending
    ;[outbound, inbound] = multiaddrConnectionPair()
    const flooded = encrypter(key).secureInbound(inbound)
    // A full first message is answered; then 5 MiB arrive without a valid message 3.
    sendFramed(outbound, new Uint8Array(32).fill(9))
    const chunk = new Uint8Array(64 * 1024).fill(0xff) // length prefixes of 65535: never complete
    for (let i = 0; i < 80; i++) sendFramed(outbound, chunk, true)
    await expect(flooded).rejects.toThrow(/bytes during the noise handshake|failed authentication/)
  })
})

describe('a real node facing a raw TCP peer', () => {
  const nodes: PlexusLibp2p[] = []
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.stop()))
  })
  const node = async (network: string) => {
    const n = await keylessLibp2p(network)
    nodes.push(n)
    return n
  }

  it('survives garbage after negotiating /noise, then serves a good peer; a wrong peer id is refused', async () => {
    const network = uniqueNetwork('hostile-noise')
    const [a, b] = [await node(network), await node(network)]
    const addr = a.getMultiaddrs()[0]!
    const [, host, port] = /^\/ip4\/([^/]+)\/tcp\/(\d+)/.exec(addr.toString())!

    const mss = (s: string) => {
      const b = Buffer.from(`${s}\n`)
      return Buffer.concat([Uint8Array.of(b.length), b])
    }
    // Each refused at once (no wait for the upgrade timeout): a short key, an empty message,
    // and a good message 1 followed by a garbage message 3.
    for (const garbage of [
      Buffer.concat([Uint8Array.of(0, 10), Buffer.alloc(10, 0xab), Buffer.alloc(5000, 0xcd)]),
      Uint8Array.of(0, 0),
      Buffer.concat([Uint8Array.of(0, 32), Buffer.alloc(32, 1), Uint8Array.of(0, 200), Buffer.alloc(200, 7)]),
    ]) {
      const socket = connect({ host: host!, port: Number(port) })
      await new Promise((resolve) => socket.once('connect', resolve))
      socket.write(Buffer.concat([mss('/multistream/1.0.0'), mss('/noise')]))
      socket.write(garbage)
      // The node hangs up on us (its upgrader closes the connection after the HandshakeError).
      await new Promise((resolve) => {
        socket.on('data', () => {})
        socket.once('close', resolve)
        socket.once('error', resolve)
      })
    }
    expect(a.getConnections().length).toBe(0)
    void a.handle('/t/ping/1.0.0', (stream: Stream) => {
      stream.addEventListener('message', (evt) => stream.send(evt.data))
    })
    const stream = await b.dialProtocol(addr, '/t/ping/1.0.0')
    const back = new Promise((resolve) => stream.addEventListener('message', resolve, { once: true }))
    stream.send(Uint8Array.of(1, 2, 3))
    await back
    const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const wrong = multiaddr(`${addr.decapsulateCode(421).toString()}/p2p/${other.toString()}`)
    await b.hangUp(a.peerId)
    await expect(b.dial(wrong)).rejects.toThrow()
  })
})
