/**
 * Batched publishing (streams/publisher.ts, publish-serve.ts, the `s.pub` and `s.seek` bodies
 * in wire.ts / consumer-wire.ts): the client against a scripted leader (fake `PeerRpc`), and
 * the leader's side against a real single-voter partition replica.
 */

import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { LeadershipLostError, MemberLostError, TimeoutError } from '../../src/errors.js'
import type { PeerRpc } from '../../src/rpc/rpc.js'
import { PeerUnreachableError } from '../../src/rpc/rpc.js'
import { GrantPresenter } from '../../src/streams/access/grants.js'
import { decodeSeek, encodeSeek } from '../../src/streams/consumer/consumer-wire.js'
import { servePublish } from '../../src/streams/host/publish-serve.js'
import { PartitionReplica } from '../../src/streams/partition/partition.js'
import {
  type PendingPublish,
  PUB_BATCH_BYTES,
  PUB_BATCH_MESSAGES,
  PUB_CALLS_IN_FLIGHT,
  PUB_MAX_QUEUED,
  Publisher,
} from '../../src/streams/publisher.js'
import {
  decodePubCall,
  decodePubReply,
  encodePubReply,
  type PubCall,
  type PubMessage,
  type PubResult,
  type Routed,
  type Stored,
  type WireAck,
  writePubHead,
  writePubMessage,
} from '../../src/streams/wire.js'
import { BinaryWriter, DecodeError } from '../../src/util/binary.js'
import { tempDir, until } from '../replication/helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

const ref = { stream: 's', createdIndex: 1, partition: 0 }
const text = (s: string) => new TextEncoder().encode(s)
const msg = (data: string, extra: Partial<PubMessage> = {}): PubMessage => ({
  topic: 's.x',
  msgId: undefined,
  key: undefined,
  headers: undefined,
  data: text(data),
  ...extra,
})

interface Served {
  peer: string
  call: PubCall
}

/**
 * A publisher whose calls go to `answer` (which sees the decoded call and returns a reply or
 * throws); `served` records every call, `max` the most calls in flight at once.
 */
function harness(answer: (s: Served) => Routed<PubResult[]> | Promise<Routed<PubResult[]>>) {
  const served: Served[] = []
  const stats = { inflight: 0, max: 0 }
  const rpc = {
    async call(peer: string, method: string, body: Uint8Array) {
      expect(method).toBe('s.pub')
      const s = { peer, call: decodePubCall(body) }
      served.push(s)
      stats.inflight++
      stats.max = Math.max(stats.max, stats.inflight)
      try {
        await new Promise((r) => setTimeout(r, 2))
        return encodePubReply(await answer(s))
      } finally {
        stats.inflight--
      }
    },
  } as unknown as PeerRpc
  const ac = new AbortController()
  const publisher = new Publisher({
    rpc,
    presenter: new GrantPresenter({ self: 'me', rpc }),
    leaders: new Map(),
    signal: ac.signal,
  })
  cleanups.push(async () => ac.abort())
  const publish = (
    m: PubMessage,
    opts: { ack?: WireAck; timeout?: number; replicas?: string[] } = {},
  ): Promise<Stored> =>
    new Promise((resolve, reject) => {
      const p: PendingPublish = {
        message: m,
        ack: opts.ack ?? 'all',
        deadline: Date.now() + (opts.timeout ?? 5000),
        timeout: opts.timeout ?? 5000,
        resolve,
        reject,
      }
      publisher.publish('s/1/0', ref, opts.replicas ?? ['A', 'B', 'C'], p)
    })
  return { served, stats, publish, publisher }
}

/** A leader that stores everything at increasing offsets. */
function storing() {
  let next = 0
  return (s: Served): { status: 'ok'; value: Stored[] } => ({
    status: 'ok',
    value: s.call.messages.map(() => ({ offset: next++, duplicate: false })),
  })
}

/** A harness whose calls are stored (as by `storing`) once `release()` is called. */
function gatedHarness() {
  let open: () => void = () => {}
  const gate = new Promise<void>((r) => {
    open = r
  })
  const store = storing()
  const h = harness(async (s) => {
    await gate
    return store(s)
  })
  return { h, release: () => open() }
}

describe('Publisher (client side)', () => {
  it('a publish while nothing is in flight leaves at once, alone', async () => {
    const h = harness(storing())
    expect(await h.publish(msg('one'))).toEqual({ offset: 0, duplicate: false })
    expect(h.served).toHaveLength(1)
    expect(h.served[0]!.call.messages.map((m) => new TextDecoder().decode(m.data))).toEqual(['one'])
    expect(h.served[0]!.call.ack).toBe('all')
  })

  it('batches a burst into bounded calls, at most K in flight, offsets in publish order', async () => {
    const h = harness(storing())
    const n = 3000
    const acks = await Promise.all(Array.from({ length: n }, (_, i) => h.publish(msg(`m${i}`))))
    expect(acks.map((a) => a.offset)).toEqual(Array.from({ length: n }, (_, i) => i))
    expect(h.served.length).toBeLessThan(n / 10)
    expect(h.stats.max).toBeLessThanOrEqual(PUB_CALLS_IN_FLIGHT)
    for (const s of h.served) expect(s.call.messages.length).toBeLessThanOrEqual(PUB_BATCH_MESSAGES)
    const order = h.served.flatMap((s) => s.call.messages.map((m) => new TextDecoder().decode(m.data)))
    expect(order).toEqual(Array.from({ length: n }, (_, i) => `m${i}`))
  })

  it('a queue over its bound rejects new publishes with OverloadedError; the queued ones complete', async () => {
    const { h, release } = gatedHarness()
    // All in one turn: nothing leaves before the next microtask, so the queue fills up.
    const queued = Array.from({ length: PUB_MAX_QUEUED }, (_, i) => h.publish(msg(`m${i}`)))
    const over = await h.publish(msg('one too many')).catch((e) => e)
    expect(over).toMatchObject({ name: 'OverloadedError' })
    expect(String(over.message)).toMatch(/await earlier publishes/)
    release()
    const acks = await Promise.all(queued)
    expect(acks.map((a) => a.offset)).toEqual(Array.from({ length: queued.length }, (_, i) => i))
  })

  it('bounds a call by bytes; a message over the bound goes alone', async () => {
    const h = harness(storing())
    const big = 'x'.repeat(300 * 1024)
    const huge = 'y'.repeat(PUB_BATCH_BYTES + 10)
    await Promise.all([...Array.from({ length: 10 }, () => h.publish(msg(big))), h.publish(msg(huge))])
    for (const s of h.served) {
      const bytes = s.call.messages.reduce((a, m) => a + m.data.length, 0)
      if (s.call.messages.length > 1) expect(bytes).toBeLessThanOrEqual(PUB_BATCH_BYTES)
    }
    expect(
      h.served.some((s) => s.call.messages.length === 1 && s.call.messages[0]!.data.length === huge.length),
    ).toBe(true)
  })

  it('one call carries one ack level', async () => {
    const h = harness(storing())
    const acks: WireAck[] = ['all', 'all', 'leader', 'leader', 'none', 'all']
    await Promise.all(acks.map((ack, i) => h.publish(msg(`m${i}`), { ack })))
    for (const s of h.served) expect(s.call.messages.length).toBeGreaterThan(0)
    const seen = h.served.flatMap((s) => s.call.messages.map(() => s.call.ack))
    expect(seen).toEqual(acks)
  })

  it('answers each message separately: an error fails only its message', async () => {
    const h = harness((s) => ({
      status: 'ok',
      value: s.call.messages.map((m, i) =>
        new TextDecoder().decode(m.data) === 'bad'
          ? { error: { name: 'InvalidArgumentError', message: 'options.msgId must be 1-256 characters' } }
          : { offset: 10 + i, duplicate: m.msgId !== undefined },
      ),
    }))
    const rs = await Promise.allSettled([
      h.publish(msg('a')),
      h.publish(msg('bad')),
      h.publish(msg('c', { msgId: 'id-c' })),
    ])
    expect(rs[0]).toMatchObject({ status: 'fulfilled' })
    expect(rs[1]).toMatchObject({ status: 'rejected', reason: { name: 'InvalidArgumentError' } })
    expect((rs[1] as PromiseRejectedResult).reason.message).toMatch(/msgId/)
    expect(rs[2]).toMatchObject({ status: 'fulfilled', value: { duplicate: true } })
  })

  it('follows a not-leader hint and sends the same messages again, in order', async () => {
    const store = storing()
    const h = harness((s) => (s.peer === 'B' ? store(s) : { status: 'notLeader', hint: 'B' }))
    const acks = await Promise.all(Array.from({ length: 50 }, (_, i) => h.publish(msg(`m${i}`))))
    expect(acks.map((a) => a.offset)).toEqual(Array.from({ length: 50 }, (_, i) => i))
    // later publishes go straight to the leader seen last
    h.served.length = 0
    await h.publish(msg('later'))
    expect(h.served.map((s) => s.peer)).toEqual(['B'])
  })

  it('sends again the messages answered "retry", and an unreachable peer is skipped', async () => {
    const store = storing()
    const retried = new Set<string>()
    const h = harness((s) => {
      if (s.peer === 'A') throw new PeerUnreachableError('no link')
      const value = store(s).value.map((v, i) => {
        const d = new TextDecoder().decode(s.call.messages[i]!.data)
        if (!d.startsWith('r') || retried.has(d)) return v
        retried.add(d)
        return 'retry' as const
      })
      return { status: 'ok', value }
    })
    const names = ['a', 'r1', 'b', 'r2', 'c', 'd', 'r3', 'e']
    const acks = await Promise.all(names.map((n) => h.publish(msg(n))))
    expect(new Set(acks.map((a) => a.offset)).size).toBe(names.length)
    expect(retried).toEqual(new Set(['r1', 'r2', 'r3']))
    const sent = h.served.filter((s) => s.peer !== 'A').flatMap((s) => s.call.messages)
    expect(sent.length).toBe(names.length + 3)
    expect(h.served[0]!.peer).toBe('A')
  })

  it('a lost link fails messages without msgId (outcome unknown) and resends those with one', async () => {
    let lost = true
    const store = storing()
    const h = harness((s) => {
      if (lost) {
        lost = false
        throw new MemberLostError('link closed')
      }
      return store(s)
    })
    const [plain, withId] = await Promise.allSettled([
      h.publish(msg('plain')),
      h.publish(msg('keyed', { msgId: 'k1' })),
    ])
    expect(plain).toMatchObject({ status: 'rejected', reason: { name: 'MemberLostError' } })
    expect(withId).toMatchObject({ status: 'fulfilled' })
    expect(h.served[h.served.length - 1]!.call.messages.map((m) => m.msgId)).toEqual(['k1'])
  })

  it('a leader that lost leadership: messages with a msgId go to the next leader, the others fail with LeadershipLostError', async () => {
    // A leads, loses leadership with the call pending (outcome unknown: it was stored after
    // all); B is the new leader and already holds k1 (its duplicate window says so).
    const store = storing()
    const lost = {
      error: { name: 'LeadershipLostError', message: 'A lost leadership; the outcome is unknown' },
    }
    let first = true
    const h = harness((s) => {
      if (s.peer === 'A' && first) {
        first = false
        return { status: 'ok', value: s.call.messages.map(() => lost) }
      }
      if (s.peer !== 'B') return { status: 'notLeader', hint: 'B' }
      return {
        status: 'ok',
        value: store(s).value.map((v, i) =>
          s.call.messages[i]!.msgId === 'k1' ? { offset: 7, duplicate: true } : v,
        ),
      }
    })
    const [plain, withId] = await Promise.allSettled([
      h.publish(msg('plain')),
      h.publish(msg('keyed', { msgId: 'k1' })),
    ])
    expect(plain).toMatchObject({ status: 'rejected', reason: { name: 'LeadershipLostError' } })
    const reason = (plain as PromiseRejectedResult).reason
    expect(reason).toBeInstanceOf(LeadershipLostError)
    expect(reason.message).toMatch(/partition 0 of stream s: A lost leadership.*may or may not be stored/)
    expect(reason.cause).toMatchObject({ name: 'LeadershipLostError', message: lost.error.message })
    expect(withId).toEqual({ status: 'fulfilled', value: { offset: 7, duplicate: true } })
    expect(h.served.map((s) => s.peer)).toEqual(['A', 'B'])
    expect(h.served[1]!.call.messages.map((m) => m.msgId)).toEqual(['k1'])
  })

  it('a msgId publish whose leaders keep losing leadership times out with the last unknown outcome as its cause', async () => {
    const h = harness((s) => ({
      status: 'ok',
      value: s.call.messages.map(() => ({
        error: { name: 'LeadershipLostError', message: `${s.peer} lost leadership; the outcome is unknown` },
      })),
    }))
    const err = await h.publish(msg('keyed', { msgId: 'k2' }), { timeout: 400 }).catch((e) => e)
    expect(err).toBeInstanceOf(TimeoutError)
    expect(err.message).toMatch(/outcome unknown: [ABC] lost leadership/)
    expect(err.cause).toBeInstanceOf(LeadershipLostError)
    expect(h.served.length).toBeGreaterThan(1) // retried until the deadline
  })

  it('each message times out at its own deadline, whatever the rest of its call', async () => {
    const { h, release } = gatedHarness()
    const t0 = Date.now()
    const short = h.publish(msg('short'), { timeout: 200 })
    const long = h.publish(msg('long'), { timeout: 5000 })
    await expect(short).rejects.toBeInstanceOf(TimeoutError)
    expect(Date.now() - t0).toBeLessThan(1500)
    release()
    expect((await long).offset).toBeGreaterThanOrEqual(0)
  })

  it('close rejects what is queued', async () => {
    const h = harness(async () => new Promise<never>(() => {}))
    // with no leader known one call goes first (it never answers here); the rest wait
    const ps = [h.publish(msg('first'))]
    await new Promise((r) => setTimeout(r, 10))
    for (let i = 0; i < 39; i++) ps.push(h.publish(msg(`m${i}`)))
    for (const p of ps) p.catch(() => {})
    await new Promise((r) => setTimeout(r, 10))
    expect(h.served).toHaveLength(1)
    h.publisher.close()
    const rs = await Promise.allSettled(ps.slice(-10))
    expect(rs.every((r) => r.status === 'rejected' && r.reason.name === 'AbortedError')).toBe(true)
  })
})

describe('s.pub and s.seek bodies', () => {
  it('round-trip, and refuse malformed input with DecodeError', () => {
    const b = writePubHead(new BinaryWriter(64), ref, 'leader', 2)
    writePubMessage(b, msg('a', { key: text('k'), headers: { h: 'v' }, msgId: 'id' }))
    writePubMessage(b, msg('b'))
    const call = decodePubCall(b.finish().slice())
    expect(call).toMatchObject({ ...ref, ack: 'leader' })
    expect(call.messages[0]).toMatchObject({ topic: 's.x', msgId: 'id', headers: { h: 'v' } })
    expect(call.messages[1]!.msgId).toBeUndefined()
    expect(() => decodePubCall(writePubHead(new BinaryWriter(64), ref, 'all', 0).finish().slice())).toThrow(
      DecodeError,
    )
    expect(() =>
      decodePubCall(writePubHead(new BinaryWriter(64), ref, 'all', 5000).finish().slice()),
    ).toThrow(/implausible/)
    const reply = decodePubReply(
      encodePubReply({
        status: 'ok',
        value: [{ offset: 3, duplicate: true }, 'retry', { error: { name: 'TimeoutError', message: 'm' } }],
      }),
    )
    expect(reply).toEqual({
      status: 'ok',
      value: [{ offset: 3, duplicate: true }, 'retry', { error: { name: 'TimeoutError', message: 'm' } }],
    })
    expect(decodeSeek(encodeSeek(ref, 'end'))).toEqual({ ...ref, target: 'end' })
    expect(decodeSeek(encodeSeek(ref, { time: 1234 }))).toEqual({ ...ref, target: { time: 1234 } })
    const bad = encodeSeek(ref, 'end')
    bad[bad.length - 1] = 9
    expect(() => decodeSeek(bad)).toThrow(/unknown seek kind/)
  })
})

describe('servePublish (leader side)', () => {
  async function leader() {
    const { dir, cleanup } = await tempDir('plexus-pubserve-')
    const r = new PartitionReplica({
      id: 'n1',
      dir: join(dir, 'n1'),
      voters: ['n1'],
      send: () => {},
      driver: { tickMs: 10, electionTick: 5 },
    })
    await r.start()
    cleanups.push(async () => {
      await r.stop()
      await cleanup()
    })
    await until(() => r.role === 'leader', 5000, 'leader')
    return r
  }

  it('appends a batch in order with one result per message; bad ones fail alone', async () => {
    const r = await leader()
    const counted: string[] = []
    const call: PubCall = {
      ...ref,
      ack: 'all',
      messages: [
        msg('a'),
        msg('b'),
        msg('too big', { data: new Uint8Array(2000) }),
        msg('c', { msgId: 'id-1' }),
        msg('d', { headers: { 'px.bad': 'x' } }),
        msg('e', { msgId: 'x'.repeat(300) }),
        msg('f'),
      ],
    }
    const out = await servePublish(r, call, 1000, (n) => counted.push(n))
    expect(out.status).toBe('ok')
    const v = (out as { value: PubResult[] }).value
    expect(v[0]).toEqual({ offset: 0, duplicate: false })
    expect(v[1]).toEqual({ offset: 1, duplicate: false })
    expect(v[2]).toMatchObject({ error: { name: 'InvalidArgumentError' } })
    expect((v[2] as { error: { message: string } }).error.message).toMatch(/maxMessageSize/)
    expect(v[3]).toEqual({ offset: 2, duplicate: false })
    expect((v[4] as { error: { message: string } }).error.message).toMatch(/options\.headers/)
    expect((v[5] as { error: { message: string } }).error.message).toMatch(/options\.msgId/)
    expect(v[6]).toEqual({ offset: 3, duplicate: false })
    // the same msgId again: a duplicate, at the first one's offset
    const again = await servePublish(
      r,
      { ...ref, ack: 'leader', messages: [msg('z'), msg('c', { msgId: 'id-1' })] },
      1000,
      () => {},
    )
    expect((again as { value: PubResult[] }).value).toEqual([
      { offset: 4, duplicate: false },
      { offset: 2, duplicate: true },
    ])
    await r.waitForNew(3)
    const stored = await r.read(0)
    expect(stored.map((m) => new TextDecoder().decode(m.value))).toEqual(['a', 'b', 'c', 'f', 'z'])
  })

  it('a follower answers notLeader for the whole call', async () => {
    const { dir, cleanup } = await tempDir('plexus-pubserve-')
    const r = new PartitionReplica({
      id: 'n1',
      dir: join(dir, 'n1'),
      voters: ['n1', 'n2', 'n3'],
      send: () => {},
      driver: { tickMs: 1000, electionTick: 50 },
    })
    await r.start()
    cleanups.push(async () => {
      await r.stop()
      await cleanup()
    })
    expect(await servePublish(r, { ...ref, ack: 'all', messages: [msg('a')] }, 1000, () => {})).toEqual({
      status: 'notLeader',
      hint: null,
    })
  })
})
