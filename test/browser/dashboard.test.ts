/**
 * The web dashboard in a real browser: Debian's chromium (driven by puppeteer-core, no browser
 * download) opens the dashboard on the HTTP port (`http` option) of one member of a live
 * three-member network (this process's node and two member processes) with a replicated
 * stream, traffic and a durable consumer; the page shows the three members, the stream's
 * partitions with their leaders, the consumer's lag, and message rates above zero that change. Then one member process is killed (SIGKILL) and the page shows it down, in the
 * clusters table and on the map, within seconds. Screenshots go to test-output/. Skipped,
 * saying why, when chromium is not installed.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Browser } from 'puppeteer-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKey, type PlexusNode } from '../../src/index.js'
import { findChromium, launchChromium } from '../helpers/chromium.js'
import { startNode, uniqueNetwork, waitForMembers } from '../helpers/nodes.js'
import { spawnNode, waitForLine } from '../helpers/procs.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const output = join(root, 'test-output')
/** The browser: PLEXUS_CHROMIUM when set, else Debian's chromium. */
const CHROMIUM = findChromium('test/browser/dashboard.test.ts')

/** The little of the page's DOM the checks below read (the test is compiled without DOM types). */
interface PageElement {
  dataset: Record<string, string | undefined>
}
declare const document: {
  querySelector(selector: string): PageElement | null
  querySelectorAll(selector: string): { length: number }
  body: PageElement
}

describe.skipIf(!CHROMIUM)('dashboard in a real browser (chromium)', () => {
  let browser: Browser
  let chromium: Awaited<ReturnType<typeof launchChromium>> | undefined
  let dataRoot: string
  let node: PlexusNode | undefined

  beforeAll(async () => {
    mkdirSync(output, { recursive: true })
    dataRoot = mkdtempSync(join(tmpdir(), 'plexus-dash-'))
    chromium = await launchChromium(CHROMIUM!)
    browser = chromium.browser
  }, 60_000)

  afterAll(async () => {
    await chromium?.close()
    await node?.stop()
    if (dataRoot) rmSync(dataRoot, { recursive: true, force: true })
  })

  it('shows members, a stream and live rates, then a killed member as down', async () => {
    const network = uniqueNetwork('dash')
    const key = generateKey()
    // Two member processes (killable) and this process's node, all storing stream replicas.
    const procs = [0, 1].map((i) =>
      spawnNode([join(root, 'test/fixtures/stream-member.mjs'), network, 'db', key, join(dataRoot, `p${i}`)]),
    )
    node = await startNode({ network, dataDir: join(dataRoot, 'self'), http: { port: 0 } })
    await node.join('db', { key, onRequest: (d) => d })
    const ids = await Promise.all(procs.map(async (p) => (await waitForLine(p, /^ready (\S+)/, 20_000))[1]!))
    await waitForMembers(node, 'db', 3, 15_000)
    await node.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 3, partitions: 2 })

    // The dashboard on the node's own HTTP port (`http` option; `plexus node --http-port`).
    const url = `http://${node.httpAddress}/`

    // Traffic until the test ends: stream publishes, pub/sub and requests, a few each tick.
    let traffic = true
    const self = node
    const pump = (async () => {
      let i = 0
      while (traffic) {
        await Promise.all([
          self.publish(`orders.${i % 7}`, `order ${i}`, { ack: 'leader' }).catch(() => {}),
          self.request('db', `req ${i}`, { timeout: 2000 }).catch(() => {}),
        ])
        i++
        await new Promise((r) => setTimeout(r, 10))
      }
    })()

    try {
      const page = await browser.newPage()
      await page.setViewport({ width: 1366, height: 768 })
      const errors: string[] = []
      page.on('pageerror', (e) => errors.push(String(e)))
      await page.goto(url)
      const all = [node.id, ...ids]
      // Members: three, all up.
      await page.waitForFunction(
        (want: string[]) =>
          want.every((id) => document.querySelector(`tr[data-member="${id}"][data-state="up"]`) !== null),
        { timeout: 15_000 },
        all,
      )
      // The stream: both partitions hosted here, each with a leader.
      await page.waitForFunction(
        () =>
          document.querySelectorAll(
            'tr[data-stream="orders"][data-state="ok"], tr[data-stream="orders"][data-state="degraded"]',
          ).length === 2,
        { timeout: 15_000 },
      )
      // A durable consumer that acknowledged some messages and stopped: its lag shows and grows.
      const consumer = node.consume('orders', { durable: 'billing' })
      const it = consumer[Symbol.asyncIterator]()
      for (let i = 0; i < 10; i++) await (await it.next()).value!.ack()
      consumer.close() // commits the acknowledged positions
      await page.waitForFunction(
        () => Number(document.querySelector('tr[data-consumer="billing"]')?.dataset.lag || 0) > 0,
        { timeout: 10_000 },
      )
      // A message rate above zero, and then a different one (the page keeps updating).
      const rate = () =>
        page.evaluate(() => Number(document.querySelector('[data-rate="messages"]')?.dataset.value ?? 0))
      await page.waitForFunction(
        () => Number(document.querySelector('[data-rate="messages"]')?.dataset.value ?? 0) > 0,
        { timeout: 10_000 },
      )
      const first = await rate()
      await page.waitForFunction(
        (was: number) => {
          const v = Number(document.querySelector('[data-rate="messages"]')?.dataset.value ?? 0)
          return v > 0 && v !== was
        },
        { timeout: 10_000 },
        first,
      )
      expect(await page.evaluate(() => document.querySelectorAll('#map [data-node]').length)).toBe(3)
      await page.screenshot({ path: join(output, 'dashboard.png') })

      // Kill one member process: the page shows it down (table and map) within seconds.
      const victim = ids[0]!
      const killedAt = Date.now()
      procs[0]!.kill('SIGKILL')
      await page.waitForFunction(
        (id: string) =>
          document.querySelector(`tr[data-member="${id}"][data-state="down"]`) !== null &&
          document.querySelector(`#map [data-node="${id}"][data-state="down"]`) !== null,
        { timeout: 10_000 },
        victim,
      )
      console.log(`dashboard: killed member shown down after ${Date.now() - killedAt} ms`)
      expect(await page.evaluate(() => Number(document.body.dataset.alerts))).toBeGreaterThan(0)
      await page.screenshot({ path: join(output, 'dashboard-member-down.png') })
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }])
      await page.screenshot({ path: join(output, 'dashboard-dark.png') })
      expect(errors).toEqual([])
    } finally {
      traffic = false
      await pump
    }
  }, 60_000)
})
