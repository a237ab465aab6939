/**
 * Subscription readiness measure shared by the node and relay readiness tests: how many
 * publishes made right after a fresh subscription never arrive.
 */
import type { Message, PlexusNode } from '../../src/index.js'

/** Anything that subscribes like a node or a relay client. */
export interface Subscriber<S extends { unsubscribe(): unknown }> {
  subscribe(pattern: string, handler?: (msg: Message) => void | Promise<void>): S
}

/**
 * `rounds` fresh subscriptions through `sub` (topics `<prefix>.<i>.<random>`), each followed
 * at once by one publish from every node in `pubs`; `wait` runs between subscribe and
 * publish. Returns how many messages never came.
 */
export async function readyLosses<S extends { unsubscribe(): unknown }>(
  sub: Subscriber<S>,
  pubs: PlexusNode[],
  rounds: number,
  wait: (s: S) => Promise<unknown> | undefined,
  prefix: string,
): Promise<number> {
  const subs: S[] = []
  const got = new Set<string>()
  for (let i = 0; i < rounds; i++) {
    const topic = `${prefix}.${i}.${Math.random().toString(36).slice(2)}`
    const s = sub.subscribe(topic, (m) => void got.add(`${m.topic}/${m.from}`))
    subs.push(s)
    await wait(s)
    await Promise.all(pubs.map((p) => p.publish(topic, 'x')))
  }
  // Whatever was going to arrive has arrived well within this.
  await new Promise((r) => setTimeout(r, 500))
  for (const s of subs) s.unsubscribe()
  return rounds * pubs.length - got.size
}
