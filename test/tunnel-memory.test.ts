/**
 * Flow control bounds memory end to end: 1 GiB pushed through a tunnel to a member that
 * reads slowly keeps both processes' peak RSS under 200 MB. (PLEXUS_TUNNEL_BYTES
 * overrides the amount, e.g. for a quick local run.)
 */
import { describe, expect, it } from 'vitest'
import { generateKey } from '../src/index.js'
import { uniqueNetwork } from './helpers/nodes.js'
import { exited, spawnNode, waitForLine } from './helpers/procs.js'

const TOTAL = Number(process.env.PLEXUS_TUNNEL_BYTES ?? 1024 * 1024 * 1024)

describe('tunnel flow control across processes', () => {
  it(`keeps both ends under 200 MB RSS while ${TOTAL >> 20} MiB flow to a slow reader`, async () => {
    const network = uniqueNetwork('mem')
    const key = generateKey()
    const sink = spawnNode(['test/fixtures/tunnel-sink.mjs', network, key])
    await waitForLine(sink, /^ready$/)
    const source = spawnNode(['test/fixtures/tunnel-source.mjs', network, String(TOTAL)])
    const sinkDone = waitForLine(sink, /^sink (\d+) (\d+)$/, 110_000)
    const [, sentBytes, sourcePeak, ms] = await waitForLine(source, /^source (\d+) (\d+) (\d+)$/, 110_000)
    const [, readBytes, sinkPeak] = await sinkDone
    console.log(
      `tunnel: ${TOTAL >> 20} MiB in ${ms} ms (${(TOTAL / 1e6 / (Number(ms) / 1000)).toFixed(0)} MB/s); ` +
        `peak RSS source ${(Number(sourcePeak) / 1024).toFixed(0)} MiB, sink ${(Number(sinkPeak) / 1024).toFixed(0)} MiB`,
    )
    expect(Number(sentBytes)).toBe(TOTAL)
    expect(Number(readBytes)).toBe(TOTAL)
    expect(Number(sourcePeak) * 1024).toBeLessThan(200e6)
    expect(Number(sinkPeak) * 1024).toBeLessThan(200e6)
    expect(await exited(source)).toBe(0)
  }, 120_000)
})
