import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { generateKey } from '../src/index.js'
import { FrameType } from '../src/link/frames.js'
import { buildLibp2p, protocols } from '../src/transport/libp2p.js'
import { BinaryWriter } from '../src/util/binary.js'
import { startNodes, waitForMembers } from './helpers/nodes.js'
import { mulberry32, randomBytesFrom, testSeed } from './helpers/rng.js'

const dec = (b: Uint8Array) => new TextDecoder().decode(b)

/** Frames that are well-framed but carry hostile bodies. */
function hostileFrame(rand: () => number): Uint8Array {
  const types = Object.values(FrameType)
  const type = rand() < 0.8 ? types[Math.floor(rand() * types.length)]! : Math.floor(rand() * 256)
  const body = randomBytesFrom(rand, Math.floor(rand() * 64))
  const w = new BinaryWriter()
  const mode = rand()
  if (mode < 0.1)
    w.u32(0xfffffff0) // absurd length
  else if (mode < 0.2)
    w.u32(0) // empty frame
  else w.u32(body.length + 1)
  w.u8(type).raw(body)
  const bytes = w.finish().slice()
  return rand() < 0.2 ? bytes.subarray(0, Math.floor(rand() * bytes.length)) : bytes
}

describe('hostile peers', () => {
  it('random, truncated and malformed frames reset the stream and never crash the node', async () => {
    const seed = testSeed()
    const rand = mulberry32(seed)
    try {
      const [target, client] = await startNodes(2)
      await target.join('db', { key: generateKey(), onRequest: () => 'alive' })
      await waitForMembers(client, 'db', 1)
      const attacker = await buildLibp2p({
        network: target.network,
        privateKey: await generateKeyPair('Ed25519'),
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap: [],
        mdns: false,
        dht: false,
      })
      // Speak the link protocol (so the node links back) but ignore what it sends.
      await attacker.handle(protocols(target.network).link, () => {})
      try {
        let resets = 0
        for (let round = 0; round < 60; round++) {
          const stream = await attacker.dialProtocol(
            multiaddr(target.addresses[0]!),
            protocols(target.network).link,
          )
          const closed = new Promise<void>((resolve) => stream.addEventListener('close', () => resolve()))
          const n = 1 + Math.floor(rand() * 4)
          for (let i = 0; i < n; i++) {
            const frame =
              rand() < 0.3 ? randomBytesFrom(rand, 1 + Math.floor(rand() * 300)) : hostileFrame(rand)
            stream.send(frame)
          }
          await stream.close().catch(() => {})
          await Promise.race([closed, new Promise((r) => setTimeout(r, 200))])
          if (stream.status === 'reset' || stream.status === 'aborted') resets++
        }
        expect(resets).toBeGreaterThan(0)
        // The node still serves everyone else.
        expect(dec(await client.request('db', 'x'))).toBe('alive')
      } finally {
        await attacker.stop()
      }
    } catch (err) {
      console.error(`fuzz seed ${seed} (replay with TEST_SEED=${seed})`)
      throw err
    }
  })
})
