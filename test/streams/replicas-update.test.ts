/**
 * `streams.update(name, { replicas })` on real nodes over loopback: four storage members, a
 * stream of two partitions with 2 replicas grown to 3 and shrunk to 1. After each change
 * every partition's placement and in-sync set reach the new size, every acknowledged message
 * stays readable from the earliest offset, publishing keeps working, and the added replicas
 * hold the whole partition (they are in sync). Bad values are refused naming the field, and
 * more replicas than storage members is `NotEnoughReplicasError`.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { PlexusNode, StreamInfo } from '../../src/index.js'
import { startStreamCluster, waitFor } from '../helpers/nodes.js'

const roots: string[] = []
afterAll(async () => {
  for (const r of roots.splice(0)) await rm(r, { recursive: true, force: true })
})

const T = { timeout: 10_000 }

/** Publishes `n` messages `r.<i>` with ack 'all' (keys spread them over the partitions). */
async function publish(node: PlexusNode, from: number, n: number): Promise<void> {
  for (let i = from; i < from + n; i++)
    await node.publish(`r.${i}`, new TextEncoder().encode(`m${i}`), {
      key: `k${i}`,
      ack: 'all',
      timeout: 20_000,
    })
}

/** Every message of the stream, read from the earliest offset of each partition, as text. */
async function readAll(node: PlexusNode, info: StreamInfo): Promise<string[]> {
  const out: string[] = []
  for (const p of info.partitions) {
    const want = p.nextOffset - p.firstOffset
    if (want === 0) continue
    const c = node.consume('r', { from: 'earliest', partition: p.partition })
    for await (const m of c) {
      out.push(m.string())
      if (m.offset + 1 >= p.nextOffset) break
    }
  }
  return out.sort()
}

/** Waits until every partition has `n` placed replicas, all of them in sync, and a leader. */
async function settled(node: PlexusNode, n: number): Promise<StreamInfo> {
  let last: StreamInfo | undefined
  await waitFor(
    async () => {
      last = await node.streams.info('r', T)
      return last.partitions.every(
        (p) =>
          p.replicas.length === n &&
          p.inSync.length === n &&
          p.leader !== null &&
          p.replicas.includes(p.leader),
      )
    },
    45_000,
    `every partition at ${n} in-sync replicas`,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last info: ${JSON.stringify(last?.partitions)}`)
  })
  return last!
}

describe('streams.update({ replicas })', () => {
  it('grows 2 -> 3 and shrinks 3 -> 1 with every acknowledged message readable', async () => {
    const root = await mkdtemp(join(tmpdir(), 'plexus-replicas-'))
    roots.push(root)
    const { members, outside } = await startStreamCluster(root, { members: 4 })
    const client = outside[0]!
    await client.streams.create('r', { cluster: 'db', subject: 'r.>', partitions: 2, replicas: 2 })
    await settled(client, 2)
    await publish(client, 0, 40)

    // Bad values, named; more than the storage members.
    for (const bad of [0, 8, 1.5, 'three'])
      await expect(client.streams.update('r', { replicas: bad as number }, T)).rejects.toMatchObject({
        name: 'InvalidArgumentError',
        message: expect.stringMatching(/^replicas /),
      })
    await expect(client.streams.update('r', { replicas: 5 }, T)).rejects.toMatchObject({
      name: 'NotEnoughReplicasError',
    })
    await expect(client.streams.update('r', {}, T)).rejects.toMatchObject({
      name: 'InvalidArgumentError',
      message: expect.stringMatching(/retention or replicas/),
    })

    // Grow: a third replica per partition, in sync; retention untouched.
    const grown = await client.streams.update('r', { replicas: 3 }, T)
    expect(grown.replicas).toBe(3)
    expect(grown.retention).toEqual({})
    let info = await settled(client, 3)
    await publish(client, 40, 20)
    info = await client.streams.info('r', T)
    expect(info.partitions.reduce((k, p) => k + p.nextOffset, 0)).toBe(60)
    const expected = Array.from({ length: 60 }, (_, i) => `m${i}`).sort()
    expect(await readAll(client, info)).toEqual(expected)

    // Shrink to one replica: the survivor leads and holds everything.
    await client.streams.update('r', { replicas: 1 }, T)
    await settled(client, 1)
    await publish(client, 60, 20)
    info = await client.streams.info('r', T)
    expect(await readAll(client, info)).toEqual(Array.from({ length: 80 }, (_, i) => `m${i}`).sort())
    // Every member's table agrees on the new placement.
    await waitFor(
      () => members.every((m) => m.streams.list().find((s) => s.name === 'r')?.replicas === 1),
      15_000,
      'replicas 1 in every member table',
    )
  }, 150_000)
})
