/**
 * `requestMany`: one request to each of several members of a cluster, replies yielded as they
 * arrive. The members are those serving requests and reachable when it starts (best first,
 * as `chooseMember` ranks them); each is asked at most once, at most
 * `REQUEST_MANY_MAX_IN_FLIGHT` at a time, further members as earlier ones answer. A member
 * that fails (handler threw, overloaded, left, lost) yields an item with `error` and does
 * not count towards `maxReplies`. The iteration ends after `maxReplies` successful replies,
 * at the timeout (with what came, no error), or once every member asked answered or failed;
 * breaking out of it, or its end, cancels what is still running (members see `ctx.signal`
 * abort). Held: at most one item per member asked.
 */
import { REQUEST_MANY_MAX_IN_FLIGHT } from '../constants.js'
import { AbortedError, TimeoutError } from '../errors.js'
import type { ManyReply } from '../types.js'
import { ReceivedReply } from '../util/received.js'
import type { RequestClient } from './client.js'

/** Checked options of one `requestMany`. */
export interface ManyOptions {
  maxReplies: number
  timeout: number
  headers: Record<string, string> | undefined
  signal: AbortSignal | undefined
}

/** Reason of the internal abort when the iteration ends (timeout, enough replies, break). */
const ENDED = new Error('requestMany ended')

/** Runs one `requestMany` on `client` (arguments already checked by the node). */
export async function* requestMany(
  client: RequestClient,
  cluster: string,
  data: Uint8Array,
  o: ManyOptions,
): AsyncGenerator<ManyReply, void, undefined> {
  if (o.signal?.aborted) throw new AbortedError('requestMany aborted before it was sent')
  const deadline = Date.now() + o.timeout
  const ac = new AbortController()
  let wake: (() => void) | undefined
  const onEnd = () => wake?.()
  ac.signal.addEventListener('abort', onEnd, { once: true })
  const timer = setTimeout(() => ac.abort(ENDED), o.timeout)
  const onUserAbort = () => ac.abort(new AbortedError('requestMany aborted', { cause: o.signal?.reason }))
  o.signal?.addEventListener('abort', onUserAbort, { once: true })
  const queue: ManyReply[] = []
  let fatal: Error | undefined
  let inFlight = 0
  let received = 0
  try {
    let members: string[]
    try {
      members = await client.reachable(cluster, ac.signal)
    } catch (err) {
      if (!ac.signal.aborted) throw err
      members = []
    }
    let next = 0
    const settle = (item: ReceivedReply | undefined, err?: Error) => {
      inFlight--
      if (ac.signal.aborted) return
      if (item) {
        if (item.error === undefined) received++
        queue.push(item)
      } else if (err) fatal ??= err
      launch()
      wake?.()
    }
    const launch = () => {
      while (inFlight < REQUEST_MANY_MAX_IN_FLIGHT && next < members.length && received < o.maxReplies) {
        const peer = members[next++]!
        inFlight++
        const remaining = Math.max(1, deadline - Date.now())
        client
          .request(cluster, data, { timeout: remaining, signal: ac.signal, headers: o.headers, only: peer })
          .then(
            (r) => settle(new ReceivedReply(peer, r, r.headers)),
            (err: Error) => {
              // Its deadline is ours (the end, not an answer); AbortedError without our abort: the node stops.
              if (err instanceof TimeoutError) settle(undefined)
              else if (err instanceof AbortedError) settle(undefined, err)
              else settle(new ReceivedReply(peer, undefined, undefined, err))
            },
          )
      }
    }
    launch()
    let ok = 0
    for (;;) {
      const item = queue.shift()
      if (item) {
        if (item.error === undefined) ok++
        yield item
        if (ok >= o.maxReplies) return
        continue
      }
      if (fatal) throw fatal
      if (ac.signal.aborted) {
        if (ac.signal.reason !== ENDED) throw ac.signal.reason
        return
      }
      if (inFlight === 0 && next >= members.length) return
      await new Promise<void>((resolve) => {
        wake = resolve
      })
      wake = undefined
    }
  } finally {
    clearTimeout(timer)
    o.signal?.removeEventListener('abort', onUserAbort)
    ac.signal.removeEventListener('abort', onEnd)
    // Cancels the requests still running (their members are told).
    if (!ac.signal.aborted) ac.abort(ENDED)
  }
}
