/**
 * The publisher of a schedule: keeps `inflight` publishes with `ack: 'all'` and a msgId
 * each in flight, and records every outcome. A payload is `<seed>:<i>:` followed by a
 * filler, `messageBytes` long; its digest is what the members' dumps are compared with.
 */
import { createHash } from 'node:crypto'
import type { PlexusNode, PublishAck } from '../src/index.js'

/** An acknowledged write: where the ack said it is, and what it holds. */
export interface Acked {
  msgId: string
  offset: number
  length: number
  digest: string
}

/** The SHA-1 digest (16 hex) the member fixture prints for a value. */
export function digestOf(value: Uint8Array): string {
  return createHash('sha1').update(value).digest('hex').slice(0, 16)
}

/** Payload of message `i` of schedule `seed` (deterministic). */
export function payloadOf(seed: number, i: number, bytes: number): Buffer {
  const head = `${seed}:${i}:`
  const buf = Buffer.alloc(bytes, `${(i * 2654435761) >>> 0}.`)
  buf.write(head, 0)
  return buf
}

/** The publishing loop of one schedule. */
export class Workload {
  readonly acked: Acked[] = []
  /** msgIds of publishes that failed: outcome unknown (stored at most once). */
  readonly unknown = new Set<string>()
  readonly errors = new Map<string, number>()
  ackedBytes = 0
  private next = 0
  private stopping = false
  private running: Promise<void> | undefined
  private lastAckAt = Date.now()

  constructor(
    private readonly pub: PlexusNode,
    private readonly seed: number,
    private readonly topic: string,
    private readonly messageBytes: number,
    private readonly inflight: number,
    private readonly totalBytes: number,
  ) {}

  /** Starts publishing in the background. */
  start(): void {
    this.running = Promise.all(Array.from({ length: this.inflight }, () => this.lane())).then(() => {})
  }

  private async lane(): Promise<void> {
    while (!this.stopping && this.ackedBytes < this.totalBytes) {
      const i = this.next++
      const msgId = `${this.seed}-${i}`
      const payload = payloadOf(this.seed, i, this.messageBytes)
      try {
        const ack = (await this.pub.publish(`${this.topic}.${i % 5}`, payload, {
          ack: 'all',
          msgId,
          timeout: 10_000,
        })) as PublishAck
        this.acked.push({ msgId, offset: ack.offset, length: payload.length, digest: digestOf(payload) })
        this.ackedBytes += payload.length
        this.lastAckAt = Date.now()
      } catch (err) {
        this.unknown.add(msgId)
        const name = (err as Error).name ?? 'Error'
        this.errors.set(name, (this.errors.get(name) ?? 0) + 1)
        await new Promise((r) => setTimeout(r, 50))
      }
    }
  }

  /** Milliseconds since the last ack (or since start). */
  get idleMs(): number {
    return Date.now() - this.lastAckAt
  }

  /** Resolves once `bytes` were acknowledged; rejects after `ms` without any ack, or at `deadline`. */
  async reach(bytes: number, deadline: number, stallMs = 20_000): Promise<void> {
    while (this.ackedBytes < bytes) {
      if (Date.now() > deadline)
        throw new Error(`schedule deadline with ${this.ackedBytes} of ${bytes} bytes acked`)
      if (this.idleMs > stallMs) throw new Error(`no ack for ${this.idleMs} ms (publishing stalled)`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  /** Stops publishing and waits for the publishes in flight to settle. */
  async stop(): Promise<void> {
    this.stopping = true
    await this.running
  }

  /** Publishes attempted so far. */
  get attempted(): number {
    return this.next
  }

  /** The failures by error name, as one string. */
  errorSummary(): string {
    return [...this.errors].map(([k, v]) => `${k}×${v}`).join(' ') || 'none'
  }
}
