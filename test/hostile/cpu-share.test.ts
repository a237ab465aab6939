/**
 * Hostile peers, CPU (issue 18): a keyless attacker in a process of its own (the `attacker`
 * role of fuzz/cpu-share.ts, from dist) floods the victim's link with cheap well-formed
 * frames as fast as its stream takes them: echoed requests, then internal calls that are
 * refused. The good peer's sequential requests must keep `KEEP` of the rate they had just
 * before, with the attacker idle (a ratio measured in the same test: the machine is shared);
 * the victim must not drop the good peer's link, and must serve it at half its baseline again
 * soon after the flood stops. Without fair dispatch (link/reader.ts) the good peer kept
 * 0–2% of its rate or lost its link.
 */
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import type { PlexusNode } from '../../src/index.js'
import { spawnNode, waitForLine } from '../helpers/procs.js'
import { victimAndGood } from './harness.js'

const SCRIPT = fileURLToPath(new URL('../../dist/fuzz/cpu-share.js', import.meta.url))

/**
 * Share of its baseline the good peer must keep under each flood. The goal is half; the
 * bound is lower because victim, good peer and test share one event loop here (the good
 * peer's own requests wait behind the attacker's slices too) on a machine shared with other
 * work. With shared slices for non-members (reader.ts) the good peer kept 0.29–0.46 under
 * the request flood and 0.65–0.73 under internal calls at load 8–16; round-robin slices
 * alone kept 0.08–0.13 and 0.19–0.30; the code before fair dispatch 0.02 (or lost its link).
 */
const KEEP = 0.15

/**
 * Sequential 64-byte requests per second from `from` to `db` over `ms`; a request that fails
 * (the victim left the good peer unanswered so long that it looked gone) fails the test.
 */
async function sequentialRate(from: PlexusNode, ms: number, what: string): Promise<number> {
  const data = new Uint8Array(64)
  const start = performance.now()
  let n = 0
  while (performance.now() - start < ms) {
    try {
      await from.request('db', data, { timeout: 10_000 })
    } catch (err) {
      throw new Error(`${what}: the good peer's request failed: ${err}`)
    }
    n++
  }
  return (n * 1000) / (performance.now() - start)
}

/** Sends `cmd` to the attacker and waits for its answer line. */
async function command(attacker: ChildProcess, cmd: string, answer: RegExp): Promise<RegExpMatchArray> {
  const line = waitForLine(attacker, answer, 30_000)
  attacker.stdin!.write(`${cmd}\n`)
  return line
}

describe('hostile peer CPU share', () => {
  it('a flooding keyless peer in its own process leaves the good peer its rate and link', async () => {
    const { victim, good } = await victimAndGood()
    const addr = victim.addresses.find((a) => a.includes('127.0.0.1')) ?? victim.addresses[0]!
    // The victim's link to the good peer: the same one, still open, after every flood.
    type Links = { links: { get(p: string): { closed: boolean } | undefined } }
    const goodLink = (victim as unknown as Links).links.get(good.id)
    expect(goodLink).toBeDefined()
    const goodLinkOpened = () =>
      (victim as unknown as Links).links.get(good.id) === goodLink && !goodLink!.closed
    await sequentialRate(good, 300, 'warm-up')
    for (const attack of ['request', 'rpc']) {
      // A fresh attacker per attack: one whose window is still full of the last flood's frames
      // (read at its share) sends nothing new for a while.
      const attacker = spawnNode([SCRIPT, '--role', 'attacker', '--network', victim.network, '--addr', addr])
      await waitForLine(attacker, /^READY/, 20_000)
      const baseline = await sequentialRate(good, 1000, `${attack} baseline`)
      await command(attacker, `start ${attack}`, /^STARTED/)
      await new Promise((r) => setTimeout(r, 200))
      // The best of up to three windows: a pause of the shared machine must not fail the test
      // (the old code failed all three: the good peer got 0–2% or lost its link).
      let during = 0
      for (let i = 0; i < 3 && during < baseline * KEEP; i++)
        during = Math.max(during, await sequentialRate(good, 1000, attack))
      const sent = Number((await command(attacker, 'stop', /^STOPPED (\d+)/))[1])
      const stopped = performance.now()
      // Back at half the baseline within a few seconds of the flood's end (nothing left queued).
      while ((await sequentialRate(good, 200, `${attack} recovery`)) < baseline / 2) {
        expect(performance.now() - stopped, `${attack}: still slow after the flood`).toBeLessThan(5000)
      }
      const recovery = performance.now() - stopped
      console.log(
        `${attack}: baseline ${baseline.toFixed(0)}/s, under attack ${during.toFixed(0)}/s ` +
          `(${(during / baseline).toFixed(2)}), attacker sent ${sent} frames, recovery ${recovery.toFixed(0)} ms`,
      )
      expect(sent, `${attack}: the attacker sent nothing`).toBeGreaterThan(1000)
      expect(
        during,
        `${attack}: ${during.toFixed(0)}/s against ${baseline.toFixed(0)}/s`,
      ).toBeGreaterThanOrEqual(baseline * KEEP)
      expect(goodLinkOpened(), `${attack}: the good peer's link dropped`).toBe(true)
      attacker.stdin!.end()
    }
  }, 90_000)
})
