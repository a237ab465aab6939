import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { InvalidArgumentError, NotEnoughReplicasError, StreamNotFoundError } from '../../src/errors.js'
import { matches } from '../../src/pubsub/subject.js'
import { NotLeaderError, ReplicaDriver } from '../../src/replication/index.js'
import {
  type CreateStream,
  decodeCommand,
  encodeCommand,
  type MetaCommand,
  type MetaResult,
  metaResultError,
  placeStream,
  StreamCatalog,
  type StreamSpec,
  subjectsOverlap,
  validateStreamConfig,
} from '../../src/streams/partition/index.js'
import { DecodeError } from '../../src/util/binary.js'
import { mulberry32 } from '../helpers/rng.js'
import { MemNet, tempDir, until } from '../replication/helpers.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c()
})

let req = 0
function create(name: string, subject: string, over: Partial<CreateStream> = {}): CreateStream {
  const partitions = over.partitions ?? 1
  const replicas = over.replicas ?? 3
  return {
    type: 'create',
    name,
    subject,
    partitions,
    replicas,
    retention: {},
    compact: false,
    placement: placeStream(['a', 'b', 'c', 'd'], new Map(), partitions, replicas, 1),
    requestId: `r${++req}`,
    ...over,
    duplicateWindow: over.duplicateWindow ?? 120_000,
  }
}
const del = (name: string): MetaCommand => ({ type: 'delete', name, requestId: `r${++req}` })

describe('metadata command codec', () => {
  const samples: MetaCommand[] = [
    create('orders', 'orders.>'),
    create('eu-2_x', 'a.*.c', {
      partitions: 3,
      replicas: 2,
      retention: { maxAge: 86_400_000, maxMessages: 5 },
      compact: true,
      placement: placeStream(['p1', 'p2', 'p3'], new Map([['p1', 4]]), 3, 2, 9),
    }),
    create('big', 'x', { retention: { maxAge: 1, maxBytes: 2 ** 40, maxMessages: 3 } }),
    del('orders'),
    { type: 'updatePlacement', name: 'orders', partition: 7, replicas: ['z', 'y'], requestId: 'é-unicode' },
    { type: 'update', name: 'orders', retention: { maxBytes: 9 }, requestId: 'u1' },
    { type: 'setReplicas', name: 'orders', replicas: 5, requestId: 'u1/r' },
  ]

  it('round-trips every command kind', () => {
    for (const c of samples) expect(decodeCommand(encodeCommand(c))).toEqual(c)
  })

  it('rejects every truncation, trailing bytes, bad version and kind with DecodeError', () => {
    for (const c of samples) {
      const bytes = encodeCommand(c)
      for (let n = 0; n < bytes.length; n++)
        expect(() => decodeCommand(bytes.subarray(0, n))).toThrow(DecodeError)
      expect(() => decodeCommand(Uint8Array.of(...bytes, 0))).toThrow(DecodeError)
      expect(() => decodeCommand(Uint8Array.of(2, ...bytes.subarray(1)))).toThrow(DecodeError)
      expect(() => decodeCommand(Uint8Array.of(1, 9, ...bytes.subarray(2)))).toThrow(DecodeError)
    }
  })

  it('refuses to encode commands that would not decode', () => {
    expect(() => encodeCommand(create('bad name', 'x'))).toThrow(InvalidArgumentError)
    expect(() => encodeCommand(create('n', 'a.>.b'))).toThrow(/subject/)
    expect(() => encodeCommand(create('n', 'x', { placement: [['a', 'a', 'b']] }))).toThrow(/repeated/)
    expect(() => encodeCommand(create('n', 'x', { placement: [['a', 'b']] }))).toThrow(/3 replicas/)
    const short = create('n', 'x', { partitions: 2, placement: [['a', 'b', 'c']] })
    expect(() => encodeCommand(short)).toThrow(/placement for 1 partitions, stream has 2/)
    expect(() => encodeCommand({ ...del('x'), requestId: '' })).toThrow(/requestId/)
  })

  it('garbage never decodes silently (DecodeError or an exact re-encoding)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          const c = decodeCommand(bytes)
          expect(encodeCommand(c)).toEqual(bytes)
        } catch (err) {
          expect(err).toBeInstanceOf(DecodeError)
        }
      }),
      { numRuns: 3000 },
    )
    // mutate valid commands: single byte flips decode to DecodeError or a valid command
    const base = encodeCommand(samples[1]!)
    fc.assert(
      fc.property(fc.nat(base.length - 1), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const b = base.slice()
        b[i]! ^= x
        try {
          expect(encodeCommand(decodeCommand(b))).toEqual(b)
        } catch (err) {
          expect(err).toBeInstanceOf(DecodeError)
        }
      }),
      { numRuns: 2000 },
    )
  })
})

describe('subjectsOverlap', () => {
  const alphabet = ['a', 'b', 'c']
  const topics: string[] = []
  const grow = (prefix: string[], depth: number) => {
    if (prefix.length > 0) topics.push(prefix.join('.'))
    if (depth === 0) return
    for (const t of alphabet) grow([...prefix, t], depth - 1)
  }
  grow([], 4)
  const brute = (a: string, b: string) => topics.some((t) => matches(a, t) && matches(b, t))
  const pattern = fc
    .tuple(fc.array(fc.constantFrom('a', 'b', '*'), { minLength: 0, maxLength: 3 }), fc.boolean())
    .filter(([toks, rest]) => toks.length > 0 || rest)
    .map(([toks, rest]) => (rest ? [...toks, '>'] : toks).join('.'))

  it('agrees with brute force over small alphabets', () => {
    fc.assert(
      fc.property(pattern, pattern, (a, b) => {
        expect(subjectsOverlap(a, b)).toBe(brute(a, b))
        expect(subjectsOverlap(b, a)).toBe(subjectsOverlap(a, b))
      }),
      { numRuns: 5000 },
    )
  })

  it('classic cases', () => {
    expect(subjectsOverlap('orders.>', 'orders.eu')).toBe(true)
    expect(subjectsOverlap('orders.*', 'orders.eu.x')).toBe(false)
    expect(subjectsOverlap('orders.>', 'orders')).toBe(false)
    expect(subjectsOverlap('*.eu', 'orders.*')).toBe(true)
    expect(subjectsOverlap('>', 'anything.at.all')).toBe(true)
    expect(subjectsOverlap('a.b', 'a.c')).toBe(false)
  })
})

describe('placeStream', () => {
  const members = fc.uniqueArray(fc.stringMatching(/^[a-z0-9]{1,6}$/), { minLength: 1, maxLength: 9 })
  const setup = members.chain((ms) =>
    fc.record({
      ms: fc.constant(ms),
      load: fc.array(fc.nat(20), { minLength: ms.length, maxLength: ms.length }),
      replicas: fc.integer({ min: 1, max: ms.length }),
      partitions: fc.integer({ min: 1, max: 40 }),
      seed: fc.integer(),
    }),
  )

  it('distinct replicas from members, leaders balanced, deterministic', () => {
    fc.assert(
      fc.property(setup, ({ ms, load, replicas, partitions, seed }) => {
        const loads = new Map(ms.map((m, i) => [m, load[i]!]))
        const out = placeStream(ms, loads, partitions, replicas, seed)
        expect(out.length).toBe(partitions)
        for (const list of out) {
          expect(list.length).toBe(replicas)
          expect(new Set(list).size).toBe(replicas)
          for (const m of list) expect(ms).toContain(m)
        }
        if (partitions >= ms.length) {
          const counts = ms.map((m) => out.filter((l) => l[0] === m).length)
          expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1)
        }
        expect(placeStream([...ms].reverse(), new Map(loads), partitions, replicas, seed)).toEqual(out)
      }),
      { numRuns: 500 },
    )
  })

  it('prefers the least loaded members', () => {
    const load = new Map([
      ['a', 10],
      ['b', 0],
      ['c', 0],
      ['d', 5],
    ])
    const [list] = placeStream(['a', 'b', 'c', 'd'], load, 1, 2, 3)
    expect([...list!].sort()).toEqual(['b', 'c'])
  })

  it('throws NotEnoughReplicasError naming both numbers', () => {
    const err = (() => {
      try {
        placeStream(['a', 'b'], new Map(), 1, 3, 0)
      } catch (e) {
        return e as Error
      }
    })()
    expect(err).toBeInstanceOf(NotEnoughReplicasError)
    expect(err!.name).toBe('NotEnoughReplicasError')
    expect(err!.message).toMatch(/3 replicas.*2 members/)
  })
})

describe('validateStreamConfig', () => {
  it('fills defaults', () => {
    expect(validateStreamConfig('orders', { cluster: 'db', subject: 'orders.>' })).toEqual({
      cluster: 'db',
      name: 'orders',
      subject: 'orders.>',
      partitions: 1,
      replicas: 3,
      retention: {},
      compact: false,
      duplicateWindow: 120_000,
    })
  })

  it.each([
    ['', {}, /name/],
    ['a'.repeat(65), {}, /name/],
    ['or ders', {}, /name/],
    ['o', { subject: 'x' }, /cluster/],
    ['o', { cluster: 'c' }, /subject/],
    ['o', { cluster: 'c', subject: 'a.>.b' }, /subject/],
    ['o', { cluster: 'c', subject: 'x', partitions: 0 }, /partitions/],
    ['o', { cluster: 'c', subject: 'x', partitions: 1025 }, /partitions/],
    ['o', { cluster: 'c', subject: 'x', partitions: 1.5 }, /partitions/],
    ['o', { cluster: 'c', subject: 'x', replicas: 8 }, /replicas/],
    ['o', { cluster: 'c', subject: 'x', replicas: '3' }, /replicas/],
    ['o', { cluster: 'c', subject: 'x', retention: { maxAge: -1 } }, /retention\.maxAge/],
    ['o', { cluster: 'c', subject: 'x', retention: { maxBytes: 0 } }, /retention\.maxBytes/],
    ['o', { cluster: 'c', subject: 'x', retention: { maxMessages: Number.NaN } }, /retention\.maxMessages/],
    ['o', { cluster: 'c', subject: 'x', retention: { ttl: 1 } }, /ttl/],
    ['o', { cluster: 'c', subject: 'x', compact: 'yes' }, /compact/],
    ['o', { cluster: 'c', subject: 'x', replica: 3 }, /replica/],
  ])('refuses %j %j', (name, opts, re) => {
    expect(() => validateStreamConfig(name, opts)).toThrow(InvalidArgumentError)
    expect(() => validateStreamConfig(name, opts)).toThrow(re)
  })
})

describe('StreamCatalog', () => {
  it('create, duplicate (same / different), overlap, delete, re-create', () => {
    const cat = new StreamCatalog()
    let i = 0
    const run = (c: MetaCommand) => cat.apply(++i, c)!
    const r1 = run(create('orders', 'orders.>'))
    expect(r1).toMatchObject({ ok: true, op: 'created', name: 'orders' })
    expect(r1.ok && r1.stream!.createdIndex).toBe(1)
    const same = run(create('orders', 'orders.>', { placement: [['d', 'c', 'b']] }))
    expect(same).toMatchObject({ ok: true, op: 'exists' })
    expect(same.ok && same.stream!.placement).toEqual(cat.get('orders')!.placement) // the existing one
    const diff = run(create('orders', 'orders.>', { partitions: 2, placement: [['a'], ['b']], replicas: 1 }))
    expect(diff).toMatchObject({ ok: false, code: 'exists' })
    expect(!diff.ok && diff.message).toMatch(/"orders" already exists/)
    expect(metaResultError(diff as MetaResult & { ok: false })).toBeInstanceOf(InvalidArgumentError)
    const ov = run(create('eu', 'orders.eu'))
    expect(ov).toMatchObject({ ok: false, code: 'overlap' })
    expect(!ov.ok && ov.message).toMatch(/overlaps subject "orders.>" of stream "orders"/)
    expect(run(create('pay', 'payments.*'))).toMatchObject({ ok: true, op: 'created' })
    expect(cat.list().map((s) => s.name)).toEqual(['orders', 'pay'])
    expect(cat.streamForTopic('orders.eu.created')?.name).toBe('orders')
    expect(cat.streamForTopic('payments.x')?.name).toBe('pay')
    expect(cat.streamForTopic('payments.x.y')).toBeUndefined()
    expect(run(del('orders'))).toMatchObject({ ok: true, op: 'deleted', name: 'orders' })
    expect(cat.get('orders')).toBeUndefined()
    expect(cat.streamForTopic('orders.eu')).toBeUndefined()
    const nf = run(del('orders'))
    expect(nf).toMatchObject({ ok: false, code: 'not_found' })
    expect(metaResultError(nf as MetaResult & { ok: false })).toBeInstanceOf(StreamNotFoundError)
    expect(run(create('eu', 'orders.eu'))).toMatchObject({ ok: true, op: 'created' }) // overlap gone
    expect(
      run(create('orders', 'x.y', { partitions: 2, replicas: 1, placement: [['a'], ['b']] })),
    ).toMatchObject({
      ok: true,
      op: 'created',
    })
    expect(cat.get('orders')!.createdIndex).toBe(i)
    const up = run({
      type: 'updatePlacement',
      name: 'orders',
      partition: 1,
      replicas: ['c'],
      requestId: 'u1',
    })
    expect(up).toMatchObject({ ok: true, op: 'updated' })
    expect(cat.get('orders')!.placement).toEqual([['a'], ['c']])
    const bad = run({
      type: 'updatePlacement',
      name: 'orders',
      partition: 2,
      replicas: ['c'],
      requestId: 'u2',
    })
    expect(bad).toMatchObject({ ok: false, code: 'invalid' })
    // queries return copies
    cat.get('orders')!.placement[0]!.push('zz')
    expect(cat.get('orders')!.placement[0]).toEqual(['a'])
  })

  it('skips indexes already applied and deduplicates request ids', () => {
    const cat = new StreamCatalog()
    const c = create('s', 's.>')
    expect(cat.apply(5, c)).toMatchObject({ op: 'created' })
    const before = cat.snapshot()
    expect(cat.apply(5, del('s'))).toBeUndefined()
    expect(cat.apply(3, del('s'))).toBeUndefined()
    expect(cat.snapshot()).toEqual(before)
    const d = del('s')
    expect(cat.apply(6, d)).toMatchObject({ ok: true, op: 'deleted' })
    // a retry of the same delete (same requestId) gets the original outcome, not "not found"
    expect(cat.apply(7, d)).toMatchObject({ ok: true, op: 'deleted', duplicate: true })
    // a retried create after the stream was deleted does not resurrect it
    expect(cat.apply(8, c)).toMatchObject({ ok: true, op: 'created', duplicate: true, stream: undefined })
    expect(cat.get('s')).toBeUndefined()
    expect(cat.lastApplied).toBe(8)
  })

  it('applies raft entries: no-ops, conf changes and garbage advance the index only', () => {
    const cat = new StreamCatalog()
    cat.applyEntries([
      { index: 1, term: 1, type: 'normal', data: new Uint8Array() },
      { index: 2, term: 1, type: 'normal', data: encodeCommand(create('s', 's')) },
      { index: 3, term: 1, type: 'normal', data: Uint8Array.of(1, 2, 3) },
      { index: 4, term: 1, type: 'confChange', data: Uint8Array.of(9) },
      { index: 2, term: 1, type: 'normal', data: encodeCommand(del('s')) },
    ])
    expect(cat.lastApplied).toBe(4)
    expect(cat.skipped).toBe(1)
    expect(cat.get('s')?.createdIndex).toBe(2)
    expect(cat.resultAt(2)).toMatchObject({ ok: true, op: 'created' })
  })

  it('snapshot/restore reproduces the state exactly; bad snapshots change nothing', () => {
    const a = new StreamCatalog()
    const cmds: MetaCommand[] = [
      create('s1', 'a.>', { retention: { maxAge: 1000 }, compact: true }),
      create('s2', 'b.*', {
        partitions: 3,
        replicas: 2,
        placement: placeStream(['x', 'y', 'z'], new Map(), 3, 2, 4),
      }),
      create('s3', 'c'),
      del('s3'),
      del('nope'),
    ]
    for (const [i, c] of cmds.entries()) a.apply(i + 1, c)
    const snap = a.snapshot()
    const b = new StreamCatalog()
    b.restore(snap)
    expect(b.list()).toEqual(a.list())
    expect(b.lastApplied).toBe(5)
    expect(b.snapshot()).toEqual(snap)
    expect(b.streamForTopic('b.q')?.name).toBe('s2')
    // both continue identically, including deduplication of an old request id
    for (const c of [cmds[2]!, create('s4', 'a.x'), create('s5', 'd')]) {
      expect(b.apply(b.lastApplied + 1, c)).toEqual(a.apply(a.lastApplied + 1, c))
    }
    expect(b.snapshot()).toEqual(a.snapshot())
    const keep = b.snapshot()
    for (let n = 0; n < snap.length; n++) expect(() => b.restore(snap.subarray(0, n))).toThrow(DecodeError)
    expect(() => b.restore(Uint8Array.of(...snap, 0))).toThrow(DecodeError)
    expect(b.snapshot()).toEqual(keep)
    const empty = new StreamCatalog()
    empty.restore(new StreamCatalog().snapshot())
    expect(empty.list()).toEqual([])
  })
})

class MetaMember {
  catalog = new StreamCatalog()
  driver!: ReplicaDriver
  restores = 0
  constructor(
    readonly id: string,
    readonly dir: string,
    private readonly net: MemNet,
    private readonly voters: string[],
  ) {}
  async start(): Promise<void> {
    this.catalog = new StreamCatalog() // in memory: rebuilt from the snapshot and the raft log
    this.driver = new ReplicaDriver({
      id: this.id,
      dir: this.dir,
      voters: this.voters,
      tickMs: 20,
      electionTick: 10,
      rand: mulberry32(this.id.charCodeAt(1) * 7919 + Date.now()),
      send: (to, bytes) => this.net.send(this.id, to, bytes),
      apply: (entries) => this.catalog.applyEntries(entries),
      restore: (snap) => {
        this.restores++
        if (snap.data.length > 0) this.catalog.restore(snap.data)
      },
    })
    this.net.nodes.set(this.id, this.driver)
    await this.driver.start()
  }
  async kill(): Promise<void> {
    this.net.nodes.delete(this.id)
    await this.driver.stop({ flush: false })
  }
}

/** A client: proposes on `start`, follows NotLeaderError hints, returns the applied result. */
async function submit(members: MetaMember[], start: string, cmd: MetaCommand): Promise<MetaResult> {
  const bytes = encodeCommand(cmd)
  let target = start
  for (let attempt = 0; attempt < 200; attempt++) {
    const m = members.find((x) => x.id === target)!
    try {
      const { index } = await m.driver.propose(bytes)
      return m.catalog.resultAt(index)!
    } catch (err) {
      if (!(err instanceof NotLeaderError)) throw err
      target = err.leader ?? members[(members.indexOf(m) + 1) % members.length]!.id
      await new Promise((r) => setTimeout(r, 10))
    }
  }
  throw new Error('no leader')
}

describe('catalog replicated by three ReplicaDrivers', () => {
  it('two concurrent creates of one name with different configs: one wins everywhere', async () => {
    const { dir, cleanup } = await tempDir('plexus-meta-')
    const net = new MemNet()
    const ids = ['m1', 'm2', 'm3']
    const members = ids.map((id) => new MetaMember(id, join(dir, id), net, ids))
    cleanups.push(async () => {
      for (const m of members) await m.driver.stop().catch(() => {})
      await cleanup()
    })
    for (const m of members) await m.start()
    const specA: Partial<StreamSpec> = { partitions: 2, replicas: 3 }
    const specB: Partial<StreamSpec> = { partitions: 4, replicas: 1 }
    const cA = create('orders', 'orders.>', { ...specA, placement: placeStream(ids, new Map(), 2, 3, 7) })
    const cB = create('orders', 'orders.>', { ...specB, placement: placeStream(ids, new Map(), 4, 1, 7) })
    const [ra, rb] = await Promise.all([submit(members, 'm1', cA), submit(members, 'm2', cB)])
    const results = [ra, rb]
    const winners = results.filter((r) => r.ok)
    const losers = results.filter((r) => !r.ok)
    expect(winners).toHaveLength(1)
    expect(losers).toHaveLength(1)
    expect(winners[0]).toMatchObject({ op: 'created', name: 'orders' })
    const loser = losers[0] as MetaResult & { ok: false }
    expect(loser.code).toBe('exists')
    expect(loser.message).toMatch(/stream "orders" already exists with a different configuration/)
    expect(metaResultError(loser).name).toBe('InvalidArgumentError')
    const won = (winners[0] as MetaResult & { ok: true }).stream!
    const wonCmd = won.partitions === 2 ? cA : cB
    expect(won.placement).toEqual(wonCmd.placement)
    // the same create again (a third client agreeing with the winner) gets the existing stream
    const again = await submit(members, 'm3', { ...wonCmd, requestId: 'third' })
    expect(again).toMatchObject({ ok: true, op: 'exists' })
    // every replica converges on the same catalog, byte for byte
    const last = Math.max(...members.map((m) => m.catalog.lastApplied))
    await until(() => members.every((m) => m.catalog.lastApplied >= last), 10_000, 'all replicas apply')
    for (const m of members) {
      expect(m.catalog.get('orders')).toEqual(won)
      expect(m.catalog.snapshot()).toEqual(members[0]!.catalog.snapshot())
    }
    // compaction: the leader snapshots the catalog; a follower with a wiped disk restores it
    const leader = members.find((m) => m.driver.role === 'leader')!
    const follower = members.find((m) => m !== leader)!
    await follower.kill()
    expect(
      await submit(members, leader.id, create('pay', 'pay.*', { replicas: 1, placement: [['m1']] })),
    ).toMatchObject({ op: 'created' })
    await leader.driver.compact(leader.catalog.lastApplied, leader.catalog.snapshot())
    await rm(follower.dir, { recursive: true, force: true })
    await follower.start()
    await submit(members, leader.id, del('pay'))
    await until(
      () => follower.catalog.lastApplied === leader.catalog.lastApplied,
      10_000,
      'snapshot catch-up',
    )
    expect(follower.catalog.snapshot()).toEqual(leader.catalog.snapshot())
    expect(follower.catalog.get('orders')).toEqual(won)
    expect(follower.catalog.get('pay')).toBeUndefined()
    expect(follower.restores).toBe(1) // caught up by snapshot, not by replaying the log
  })
})
