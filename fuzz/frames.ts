/**
 * Seeded frame generators for the long fuzz run (`run.ts`): for every link frame type, a
 * body with the right structure and hostile values (names at and past their bounds,
 * wildcards, unknown clusters and methods, lying counts, junk internal-call bodies, huge
 * timeouts and windows), and byte-level mutations of valid frames (flips, cuts, splices)
 * that break the structure. Pure: everything comes from the `rand` given.
 */
import { ClusterSigner } from '../src/cluster/proof.js'
import { FrameType, writeFrame } from '../src/link/frames.js'
import { BinaryWriter } from '../src/util/binary.js'

/** The frame types driven, by name (every link frame type a peer can send). */
export const FRAME_TYPES: Record<string, number> = {
  Announce: FrameType.Announce,
  Request: FrameType.Request,
  Reply: FrameType.Reply,
  Cancel: FrameType.Cancel,
  Interest: FrameType.Interest,
  Publish: FrameType.Publish,
  Broadcast: FrameType.Broadcast,
  TunnelOpen: FrameType.TunnelOpen,
  TunnelAccept: FrameType.TunnelAccept,
  TunnelData: FrameType.TunnelData,
  TunnelCredit: FrameType.TunnelCredit,
  TunnelClose: FrameType.TunnelClose,
  Raft: FrameType.Raft,
  RpcCall: FrameType.RpcCall,
  RpcReply: FrameType.RpcReply,
  StreamTable: FrameType.StreamTable,
  Ping: FrameType.Ping,
  Pong: FrameType.Pong,
}

/** Valid bodies the generators start from (captured or encoded by the runner). */
export interface Seeds {
  /**
   * Well-formed announcements: those the victim sent (replayed as they are) and ones signed
   * with wrong keys (`wrongKeyAnnouncements`). A malformed one resets the stream, so only the
   * byte-mutated frames carry those.
   */
  announcements: Uint8Array[]
  /** Stream tables the victim sent (mutated or not: a bad table is refused, never thrown). */
  tables: Uint8Array[]
  /** An encoded raft message. */
  raft: Uint8Array
  /** Internal methods the victim serves, with valid call bodies where known. */
  methods: Array<{ method: string; bodies: Uint8Array[] }>
  /** Peer ids worth naming (the victim, the good peer, the attacker). */
  peers: string[]
}

/** A generator of random values from one PRNG. */
export class Gen {
  constructor(readonly rand: () => number) {}

  int(n: number): number {
    return Math.floor(this.rand() * n)
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!
  }

  u32(): number {
    return this.pick([0, 1, 2, 0x7fffffff, 0xffffffff, this.int(1000), this.int(0x100000000)])
  }

  bytes(max = 2048): Uint8Array {
    const n = this.int(8) === 0 ? this.int(max + 1) : this.int(64)
    const b = new Uint8Array(n)
    for (let i = 0; i < n; i++) b[i] = this.int(256)
    return b
  }

  /** A string from the names a node knows, names past their bounds, wildcards and junk. */
  str(extra: readonly string[] = []): string {
    switch (this.int(8)) {
      case 0:
        return ''
      case 1:
        return 'x'.repeat(this.pick([64, 65, 255, 256, 1000, 4096]))
      case 2:
        return this.pick(['>', '*', 'a.>', 'a.*.b', 'a..b', '.a', 'a.', 'orders.>', '*.*', 'a b', '\u0000', 'é.ü'])
      case 3: {
        let s = ''
        const n = this.int(40)
        for (let i = 0; i < n; i++) s += String.fromCharCode(this.int(0x3000))
        return s
      }
      default:
        return this.pick(['db', 'other', 'orders', 'orders.eu', 'meta/db', 't.1', 'p.x', ...extra])
    }
  }
}

/**
 * `n` announcements signed with wrong cluster keys, of random kinds, clusters (the victim's
 * `db` among them), peers (`peers` among them), counters and addresses.
 */
export function wrongKeyAnnouncements(g: Gen, network: string, peers: string[], n = 64): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let i = 0; i < n; i++) {
    const key = new Uint8Array(32).map(() => g.int(256))
    const cluster = g.pick(['db', 'other', 'x'.repeat(64)])
    const signer = new ClusterSigner(key, cluster, network)
    const addrs = g.int(2) === 0 ? [] : ['/ip4/127.0.0.1/tcp/1', g.str()]
    out.push(signer.announce(g.int(3), g.pick(peers), g.int(2 ** 40), addrs))
  }
  return out
}

/** One structured frame of `type` with hostile values (see the module doc). */
export function structured(g: Gen, type: number, seeds: Seeds): Uint8Array {
  const w = new BinaryWriter(256)
  writeFrame(w, type, (b) => {
    switch (type) {
      case FrameType.Announce:
        b.bytes(g.pick(seeds.announcements))
        return
      case FrameType.StreamTable:
        b.bytes(seeds.tables.length > 0 && g.int(2) === 0 ? mutate(g, g.pick(seeds.tables)) : g.bytes(4096))
        return
      case FrameType.Request:
        b.u32(g.u32()).str(g.str()).u32(g.u32()).u8(g.int(4)).bytes(g.bytes())
        return
      case FrameType.Reply:
        b.u32(g.u32()).u8(0).bytes(g.bytes())
        return
      case FrameType.Cancel:
        b.u32(g.u32())
        return
      case FrameType.Interest: {
        const n = g.int(6) === 0 ? g.int(300) : g.int(4)
        b.u8(g.int(3)).u16(n)
        for (let i = 0; i < n; i++) b.str(g.str())
        return
      }
      case FrameType.Publish: {
        const flags = g.int(4)
        b.str(g.str()).u8(flags)
        if (flags & 1) b.bytes(g.bytes(40_000))
        if (flags & 2) {
          const n = g.int(4)
          b.u16(n)
          for (let i = 0; i < n; i++) b.str(g.str()).str(g.str())
        }
        b.bytes(g.bytes())
        return
      }
      case FrameType.Broadcast: {
        const n = g.int(4)
        b.str(g.str(seeds.peers)).u32(g.u32()).str(g.str()).u16(n)
        for (let i = 0; i < n; i++) b.str(g.str(seeds.peers))
        b.bytes(g.bytes())
        return
      }
      case FrameType.TunnelOpen:
        b.u32(g.u32()).u8(g.int(2)).str(g.str()).u32(g.u32()).u32(g.u32())
        return
      case FrameType.TunnelAccept:
        b.u32(g.u32()).u8(g.int(2)).u32(g.u32())
        return
      case FrameType.TunnelData:
        b.u32(g.u32()).u8(g.int(2)).u8(g.int(2)).bytes(g.bytes())
        return
      case FrameType.TunnelCredit:
        b.u32(g.u32()).u8(g.int(2)).u32(g.u32())
        return
      case FrameType.TunnelClose:
        b.u32(g.u32()).u8(g.int(2)).u8(g.int(4)).str(g.str())
        return
      case FrameType.Raft:
        b.str(g.pick(['meta/db', 'p/db/orders/1/0', g.str()])).bytes(g.int(2) === 0 ? mutate(g, seeds.raft) : g.bytes())
        return
      case FrameType.RpcCall: {
        const m = seeds.methods.length > 0 && g.int(8) !== 0 ? g.pick(seeds.methods) : { method: g.str(), bodies: [] }
        const body = m.bodies.length > 0 && g.int(2) === 0 ? mutate(g, g.pick(m.bodies)) : g.bytes()
        b.u32(g.u32()).str(m.method).u32(g.u32()).u8(0).bytes(body)
        return
      }
      case FrameType.RpcReply:
        b.u32(g.u32()).u8(0).bytes(g.bytes())
        return
      default:
        // Ping, Pong
        b.u64(g.int(2 ** 40))
    }
  })
  return w.finish().slice()
}

/**
 * A byte-level mutation of `base`: bit flips, a cut, an extension or a splice of random
 * bytes (the result may be any length, even empty).
 */
export function mutate(g: Gen, base: Uint8Array): Uint8Array {
  let out = base.slice()
  const ops = 1 + g.int(3)
  for (let k = 0; k < ops; k++) {
    switch (g.int(4)) {
      case 0:
        if (out.length > 0) out[g.int(out.length)]! ^= 1 << g.int(8)
        break
      case 1:
        out = out.slice(0, g.int(out.length + 1))
        break
      case 2: {
        const more = g.bytes(64)
        const x = new Uint8Array(out.length + more.length)
        x.set(out)
        x.set(more, out.length)
        out = x
        break
      }
      default:
        if (out.length > 0) out[g.int(out.length)] = g.pick([0, 0xff, 0x7f, 0x80])
    }
  }
  return out
}

/**
 * A frame of `type` whose body is a mutated structured body, under a correct length prefix
 * (the link reader hands it to the decoder, which must refuse it without harm).
 */
export function mutatedFrame(g: Gen, type: number, seeds: Seeds): Uint8Array {
  const valid = structured(g, type, seeds)
  // Keep the u32 length + u8 type header honest; mutate the body.
  const body = mutate(g, valid.subarray(5))
  const w = new BinaryWriter(body.length + 8)
  w.u32(body.length + 1).u8(g.int(16) === 0 ? g.int(256) : type)
  w.raw(body)
  return w.finish().slice()
}
