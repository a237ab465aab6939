/**
 * A relay client that reconnects (`connectRelay({ …, reconnect: true })`), over either
 * transport. The first connection must succeed (its error rejects `connectRelay`). When a
 * connection is lost, a new one is opened with exponential backoff (250 ms doubling to
 * 10 s by default, with jitter) until `close()`; then subscriptions are subscribed again
 * and clusters joined through it are joined again with the same handlers.
 *
 * What a lost connection still costs: calls in flight reject with `RelayUnavailableError`
 * (at-most-once: they are not resent; they may or may not have run); messages published
 * while disconnected are missed; tunnels and consumers end (a durable consumer opened again
 * resumes from its acknowledged position). A call made while reconnecting waits for the
 * connection up to the connect `timeout`, then rejects with `RelayUnavailableError`.
 */
import { AbortedError } from '../../src/errors.js'
import { checkPattern } from '../../src/pubsub/subject.js'
import type {
  ConsumeOptions,
  KvBucket,
  ManyReply,
  Message,
  NodeStatus,
  PublishAck,
  PublishOptions,
  RequestReply,
  SubscribeOptions,
} from '../../src/types.js'
import { checkSubscribeArgs } from '../../src/util/validate.js'
import { unrefTimer } from '../wire/transport.js'
import {
  type FlushOptions,
  type RelayClient,
  type RelayJoinOptions,
  type RelayMembership,
  type RelayRequestManyOptions,
  type RelayRequestOptions,
  type RelayTunnelOptions,
  RelayUnavailableError,
} from './client-api.js'
import type { RelayConsumer } from './client-consumer.js'
import type { RelayKvOptions } from './client-kv.js'
import type { RelayStreams } from './client-streams.js'
import { ClientSubscription, type RelaySubscription } from './client-subscription.js'
import type { RelayTunnel } from './client-tunnel.js'

/** Backoff bounds and the state callback of a reconnecting client. */
export interface ReconnectOptions {
  /** First delay before reconnecting (ms, default 250). */
  minDelay?: number
  /** Largest delay between attempts (ms, default 10 000). */
  maxDelay?: number
  /** Told when the connection is lost (`'disconnected'`, with why) and when it is back (`'connected'`). */
  onState?: (state: 'connected' | 'disconnected', err?: Error) => void
}

/** Connects once; the reconnecting client calls it for every attempt. */
export type Connector = () => Promise<RelayClient & { readonly closed: Promise<Error> }>

/** Opens the first connection, then keeps one open (see the module comment). */
export async function connectReconnecting(
  connect: Connector,
  opts: ReconnectOptions,
  waitMs: number,
): Promise<RelayClient> {
  const first = await connect()
  return new ReconnectingClient(connect, opts, waitMs, first)
}

type Inner = Awaited<ReturnType<Connector>>

class ReconnectingClient implements RelayClient {
  private current: Inner | undefined
  private waiters: Array<() => void> = []
  private closedErr: Error | undefined
  private lostErr: Error | undefined
  private readonly subs = new Map<ClientSubscription, RelaySubscription | undefined>()
  private readonly joins = new Map<string, { opts: RelayJoinOptions; membership?: RelayMembership }>()
  private readonly minDelay: number
  private readonly maxDelay: number

  constructor(
    private readonly connect: Connector,
    private readonly opts: ReconnectOptions,
    private readonly waitMs: number,
    first: Inner,
  ) {
    this.minDelay = Math.max(1, opts.minDelay ?? 250)
    this.maxDelay = Math.max(this.minDelay, opts.maxDelay ?? 10_000)
    this.attach(first)
  }

  get id(): string {
    return this.current?.id ?? ''
  }
  get network(): string {
    return this.current?.network ?? ''
  }
  get maxMessageSize(): number {
    return this.current?.maxMessageSize ?? 0
  }

  private attach(c: Inner): void {
    this.current = c
    this.lostErr = undefined
    for (const w of this.waiters.splice(0)) w()
    void c.closed.then((err) => this.lost(c, err))
  }

  private lost(c: Inner, err: Error): void {
    if (this.current !== c || this.closedErr) return
    this.current = undefined
    this.lostErr = err
    for (const k of this.subs.keys()) this.subs.set(k, undefined)
    for (const j of this.joins.values()) j.membership = undefined
    this.opts.onState?.('disconnected', err)
    void this.reconnect()
  }

  private async reconnect(): Promise<void> {
    for (let attempt = 0; !this.closedErr; attempt++) {
      const base = Math.min(this.maxDelay, this.minDelay * 2 ** Math.min(attempt, 30))
      await new Promise((r) => unrefTimer(() => r(undefined), base * (0.5 + Math.random() / 2)))
      if (this.closedErr) return
      let c: Inner
      try {
        c = await this.connect()
      } catch (err) {
        this.lostErr = err as Error
        continue
      }
      if (this.closedErr) {
        await c.close()
        return
      }
      this.attach(c)
      this.restore(c)
      this.opts.onState?.('connected')
      return
    }
  }

  /** Subscribes and joins again on a new connection. */
  private restore(c: Inner): void {
    for (const outer of this.subs.keys()) this.subs.set(outer, this.innerSubscribe(c, outer))
    for (const [cluster, j] of this.joins) {
      c.join(cluster, j.opts).then(
        (m) => {
          if (this.current === c && this.joins.get(cluster) === j) j.membership = m
          else void m.leave().catch(() => {})
        },
        () => {},
      )
    }
  }

  private innerSubscribe(c: Inner, outer: ClientSubscription): RelaySubscription {
    const inner = c.subscribe(outer.pattern, (m) => outer.deliver(m, 0), { queue: outer.queue })
    inner.ready.then(
      () => outer.confirmed(),
      () => {},
    )
    return inner
  }

  /** The live connection, waiting up to `waitMs` while reconnecting. */
  private async live(): Promise<Inner> {
    if (this.closedErr) throw this.closedErr
    if (this.current) return this.current
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer)
        resolve()
      }
      const timer = unrefTimer(() => {
        this.waiters = this.waiters.filter((w) => w !== done)
        reject(
          new RelayUnavailableError(
            `not connected to the relay (reconnecting; last error: ${this.lostErr?.message ?? 'none'})`,
            { cause: this.lostErr },
          ),
        )
      }, this.waitMs)
      this.waiters.push(done)
    })
    return this.live()
  }

  get streams(): RelayStreams {
    const live = () => this.live()
    return {
      create: async (...a) => (await live()).streams.create(...a),
      info: async (...a) => (await live()).streams.info(...a),
      delete: async (...a) => (await live()).streams.delete(...a),
      list: async () => (await live()).streams.list(),
      get: async (...a) => (await live()).streams.get(...a),
      last: async (...a) => (await live()).streams.last(...a),
    } as RelayStreams
  }

  async request(
    cluster: string,
    data: Uint8Array | string,
    opts?: RelayRequestOptions,
  ): Promise<RequestReply> {
    return (await this.live()).request(cluster, data, opts)
  }

  async *requestMany(
    cluster: string,
    data: Uint8Array | string,
    opts?: RelayRequestManyOptions,
  ): AsyncGenerator<ManyReply, void, undefined> {
    yield* (await this.live()).requestMany(cluster, data, opts)
  }

  async join(cluster: string, opts: RelayJoinOptions): Promise<RelayMembership> {
    const c = await this.live()
    const m = await c.join(cluster, opts)
    const entry: { opts: RelayJoinOptions; membership?: RelayMembership } = { opts, membership: m }
    this.joins.set(cluster, entry)
    return {
      cluster,
      leave: async () => {
        if (this.joins.get(cluster) === entry) this.joins.delete(cluster)
        await entry.membership?.leave()
      },
    }
  }

  async broadcast(cluster: string, data: Uint8Array | string): Promise<number> {
    return (await this.live()).broadcast(cluster, data)
  }

  subscribe(
    pattern: string,
    handlerOrOptions?: ((msg: Message) => void | Promise<void>) | SubscribeOptions,
    options?: SubscribeOptions,
  ): RelaySubscription {
    checkPattern(pattern, 'pattern')
    const { handler, queue } = checkSubscribeArgs<(msg: Message) => void | Promise<void>>(
      handlerOrOptions,
      options,
    )
    if (this.closedErr) throw this.closedErr
    const outer: ClientSubscription = new ClientSubscription(
      0,
      pattern,
      handler,
      () => {
        const inner = this.subs.get(outer)
        this.subs.delete(outer)
        inner?.unsubscribe()
      },
      queue,
    )
    // Checks the pattern and handler now, as a plain client does.
    const c = this.current
    this.subs.set(outer, c ? this.innerSubscribe(c, outer) : undefined)
    return outer
  }

  async flush(opts?: FlushOptions): Promise<void> {
    return (await this.live()).flush(opts)
  }

  async publish(
    topic: string,
    data: Uint8Array | string,
    opts?: PublishOptions,
  ): Promise<PublishAck | undefined> {
    return (await this.live()).publish(topic, data, opts)
  }

  async tunnel(cluster: string, opts?: RelayTunnelOptions): Promise<RelayTunnel> {
    return (await this.live()).tunnel(cluster, opts)
  }

  consume(stream: string, options?: ConsumeOptions): RelayConsumer {
    if (this.closedErr) throw this.closedErr
    if (!this.current) throw new RelayUnavailableError('not connected to the relay (reconnecting)')
    return this.current.consume(stream, options)
  }

  /**
   * A key-value bucket whose calls go over the connection live at the time of each call
   * (opened again on a new connection); a watch ends when its connection drops.
   */
  async kv(bucket: string, options?: RelayKvOptions): Promise<KvBucket> {
    let cached: { on: Inner; kv: KvBucket } | undefined
    const get = async (): Promise<KvBucket> => {
      const c = await this.live()
      if (cached?.on !== c) cached = { on: c, kv: await c.kv(bucket, options) }
      return cached.kv
    }
    const first = await get()
    return {
      bucket: first.bucket,
      stream: first.stream,
      put: async (k, v) => (await get()).put(k, v),
      get: async (k) => (await get()).get(k),
      create: async (k, v) => (await get()).create(k, v),
      update: async (k, v, r) => (await get()).update(k, v, r),
      delete: async (k) => (await get()).delete(k),
      keys: async () => (await get()).keys(),
      history: async (k) => (await get()).history(k),
      watch: (p) => {
        if (cached === undefined) throw new RelayUnavailableError('not connected to the relay (reconnecting)')
        return cached.kv.watch(p)
      },
    }
  }

  async status(): Promise<NodeStatus> {
    return (await this.live()).status()
  }

  async close(): Promise<void> {
    if (this.closedErr) return
    this.closedErr = new AbortedError('relay client closed')
    for (const outer of [...this.subs.keys()]) outer.fail(this.closedErr)
    this.subs.clear()
    await this.current?.close()
  }
}
