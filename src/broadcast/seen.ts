/**
 * Which broadcasts a node has seen, for at-most-once delivery: per origin, a bitmap of the
 * last `window` sequence numbers below the highest one seen. No string or set entry per
 * message (the former `${origin}/${seq}` set cost member processes a quarter of their busy
 * time in garbage collection).
 *
 * - a sequence above the highest seen advances the window (bits it passes are cleared);
 * - one inside the window is new unless its bit is set;
 * - one further back than the window is taken as the origin having restarted (its numbers
 *   begin at a random point, see `Broadcaster`): the window starts over from it. A copy
 *   delayed by more than `window` broadcasts of its origin could therefore be delivered
 *   again, as with the bounded set before.
 *
 * Sequence numbers are u32 and compared modulo 2^32. Memory is bounded: at most
 * `maxOrigins` origins are tracked (`window / 8` bytes each); when full, the one that has
 * gone longest without advancing (roughly: order is refreshed every 256 messages) is
 * forgotten. Each origin is owned by the peer whose frame first named it, and one owner may
 * hold at most `maxPerOwner` origins (`admits`), so a peer inventing origins takes only its
 * share of the table and cannot push the others' windows out.
 */

interface OriginWindow {
  /** Highest sequence seen. */
  top: number
  /** Bit i (mod window) set when sequence top - d with d < window was seen, i = seq mod window. */
  bits: Uint32Array
  /** The peer whose frame created this window. */
  owner: string
}

/** At-most-once filter of (origin, seq) pairs (see the module doc). */
export class SeenWindows {
  private readonly origins = new Map<string, OriginWindow>()
  /** Origins held per owner. */
  private readonly owned = new Map<string, number>()
  private readonly words: number

  /** `window`: a power of two ≥ 32; `maxPerOwner`: origins one owner may hold. */
  constructor(
    private readonly window: number,
    private readonly maxOrigins: number,
    private readonly maxPerOwner = maxOrigins,
  ) {
    if (window < 32 || (window & (window - 1)) !== 0)
      throw new RangeError('window must be a power of two >= 32')
    this.words = window >>> 5
  }

  /** True when `origin` is tracked already or `owner` may add one more origin. */
  admits(origin: string, owner: string): boolean {
    return this.origins.has(origin) || (this.owned.get(owner) ?? 0) < this.maxPerOwner
  }

  /**
   * True when (origin, seq) is new (and records it); false for a duplicate. A new origin is
   * owned by `owner` (callers check `admits` first).
   */
  check(origin: string, seq: number, owner = origin): boolean {
    let w = this.origins.get(origin)
    if (!w) {
      if (this.origins.size >= this.maxOrigins) {
        const [oldest, old] = this.origins.entries().next().value!
        this.origins.delete(oldest)
        const n = (this.owned.get(old.owner) ?? 1) - 1
        if (n > 0) this.owned.set(old.owner, n)
        else this.owned.delete(old.owner)
      }
      w = { top: seq, bits: new Uint32Array(this.words), owner }
      this.owned.set(owner, (this.owned.get(owner) ?? 0) + 1)
      this.origins.set(origin, w)
      this.set(w, seq)
      return true
    }
    const ahead = (seq - w.top) | 0
    if (ahead > 0) {
      // The positions of top+1 … seq held numbers that now fall out of the window.
      if (ahead >= this.window) w.bits.fill(0)
      else for (let d = 1; d <= ahead; d++) this.clear(w, w.top + d)
      w.top = seq >>> 0
      this.set(w, seq)
      this.touch(origin, w)
      return true
    }
    if (-ahead >= this.window) {
      // Far behind: the origin restarted. Start over from here.
      w.bits.fill(0)
      w.top = seq >>> 0
      this.set(w, seq)
      this.touch(origin, w)
      return true
    }
    const i = (seq >>> 0) & (this.window - 1)
    const mask = 1 << (i & 31)
    if ((w.bits[i >>> 5]! & mask) !== 0) return false
    w.bits[i >>> 5]! |= mask
    return true
  }

  /** Origins tracked now. */
  get size(): number {
    return this.origins.size
  }

  /** Origins `owner` holds now. */
  ownedBy(owner: string): number {
    return this.owned.get(owner) ?? 0
  }

  private set(w: OriginWindow, seq: number): void {
    const i = (seq >>> 0) & (this.window - 1)
    w.bits[i >>> 5]! |= 1 << (i & 31)
  }

  private clear(w: OriginWindow, seq: number): void {
    const i = (seq >>> 0) & (this.window - 1)
    w.bits[i >>> 5]! &= ~(1 << (i & 31))
  }

  /** Moves an origin to the most recently used end (every 256th advance: cheap enough). */
  private touch(origin: string, w: OriginWindow): void {
    if ((w.top & 255) === 0 && this.origins.size > 1) {
      this.origins.delete(origin)
      this.origins.set(origin, w)
    }
  }
}
