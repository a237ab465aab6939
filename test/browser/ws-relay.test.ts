/**
 * The relay from a real browser: Debian's chromium (driven by puppeteer-core, no browser
 * download) loads the example page (examples/web/) from the node's own WebSocket port and
 * from another origin the node allows, and through the relay's WebSocket transport chats
 * over pub/sub with a Node-side subscriber (both directions), requests a Node-side member,
 * serves a cluster the Node side requests, and consumes a stream from its earliest offset. A page from an origin the node does not
 * allow cannot connect. Skipped, saying why, when chromium is not installed.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Browser, Page } from 'puppeteer-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startStaticServer } from '../../examples/web/serve.js'
import { generateKey, type Message, type PlexusNode } from '../../src/index.js'
import { findChromium, launchChromium } from '../helpers/chromium.js'
import { startNode, startStreamCluster, uniqueNetwork, waitForMembers } from '../helpers/nodes.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
/** The browser: PLEXUS_CHROMIUM when set, else Debian's chromium. */
const CHROMIUM = findChromium('test/browser/ws-relay.test.ts')

const text = (b: Uint8Array) => new TextDecoder().decode(b)

interface PageApp {
  state: string
  error?: string
  subscribed?: boolean
  chat: string[]
  sendChat(m: string): Promise<void>
  request(cluster: string, data: string): Promise<string>
  consume(stream: string, count: number): Promise<string[]>
  client: {
    join(
      cluster: string,
      opts: { key: string; onRequest(d: Uint8Array): string },
    ): Promise<{ leave(): Promise<void> }>
  }
}
declare const window: { app: PageApp }

describe.skipIf(!CHROMIUM)('relay from a real browser (chromium)', () => {
  let browser: Browser
  let chromium: Awaited<ReturnType<typeof launchChromium>> | undefined
  let dataRoot: string
  let node: PlexusNode
  let service: PlexusNode
  const servers: Server[] = []
  let allowed: string
  let refused: string
  const heard: Message[] = []

  beforeAll(async () => {
    // The page imports the bundle: build it when missing (npm test builds it first).
    if (!existsSync(join(root, 'dist/browser/plexus-relay.js'))) {
      execFileSync(process.execPath, [join(root, 'scripts/bundle-browser.mjs')], { stdio: 'inherit' })
    }
    const a = await startStaticServer(0)
    const b = await startStaticServer(0)
    servers.push(a.server, b.server)
    allowed = a.origin
    refused = b.origin
    dataRoot = mkdtempSync(join(tmpdir(), 'plexus-browser-'))
    chromium = await launchChromium(CHROMIUM!)
    browser = chromium.browser
  }, 120_000)

  /** The nodes (stopped by the helpers after each test): the page's node with a stream, a member, a subscriber. */
  async function startNodes(): Promise<void> {
    heard.length = 0
    const network = uniqueNetwork('web')
    const { members } = await startStreamCluster(mkdtempSync(join(dataRoot, 'run-')), {
      options: {
        network,
        relay: { port: 0, wsPort: 0, wsOrigins: [allowed], wsStatic: join(root, 'examples/web') },
      },
    })
    node = members[0]!
    // A Node-side member serving requests and a Node-side subscriber of the chat.
    service = await startNode({ network })
    await service.join('echo', { key: generateKey(), onRequest: (d) => `echo: ${text(d)}` })
    await waitForMembers(node, 'echo', 1, 10_000)
    const sub = service.subscribe('chat.>', (m) => void heard.push(m))
    await sub.ready
    await node.streams.create('orders', { cluster: 'db', subject: 'orders.>', replicas: 3 })
    for (const o of ['order 1', 'order 2', 'order 3']) await node.publish('orders.eu', o, { ack: 'all' })
  }

  afterAll(async () => {
    await chromium?.close()
    for (const s of servers) s.close()
    if (dataRoot) rmSync(dataRoot, { recursive: true, force: true })
  })

  async function open(url: string): Promise<Page> {
    const page = await browser.newPage()
    await page.goto(url)
    await page.waitForFunction(() => window.app && window.app.state !== 'connecting', { timeout: 15_000 })
    return page
  }

  async function exercise(page: Page, tag: string): Promise<void> {
    expect(await page.evaluate(() => window.app.error ?? window.app.state)).toBe('connected')
    await page.waitForFunction(() => window.app.subscribed === true)
    // browser -> Node subscriber
    await page.evaluate((m) => window.app.sendChat(m), `hello from ${tag}`)
    await expect
      .poll(() => heard.map((m) => text(m.data)), { timeout: 10_000 })
      .toContain(`hello from ${tag}`)
    // Node -> browser subscriber
    await node.flush()
    await service.publish('chat.web', `hello to ${tag}`)
    await page.waitForFunction((m) => window.app.chat.includes(m), { timeout: 10_000 }, `hello to ${tag}`)
    // a request to a cluster served on the Node side
    expect(await page.evaluate(() => window.app.request('echo', 'ping'))).toBe('echo: ping')
    // the stream from its earliest offset
    const lines = await page.evaluate(() => window.app.consume('orders', 3))
    expect(lines).toEqual(['0/0 orders.eu: order 1', '0/1 orders.eu: order 2', '0/2 orders.eu: order 3'])
    // the page's DOM shows them too
    expect(await page.$eval('#reply', (e) => e.textContent)).toBe('echo: ping')
    // the page serves a cluster that the Node side requests
    const key = generateKey()
    await page.evaluate(async (k) => {
      await window.app.client.join('browser', {
        key: k,
        onRequest: (d) => `page got ${new TextDecoder().decode(d)}`,
      })
    }, key)
    await waitForMembers(service, 'browser', 1, 10_000)
    expect(text(await service.request('browser', 'hi'))).toBe('page got hi')
    await page.close()
  }

  it('a page served by the node itself uses clusters, pub/sub and streams', async () => {
    await startNodes()
    await exercise(await open(`http://${node.relayWsAddress}/`), 'own page')
  }, 60_000)

  it('a page from an allowed origin (--relay-ws-origin) works too', async () => {
    await startNodes()
    await exercise(await open(`${allowed}/?relay=ws://${node.relayWsAddress}/`), 'allowed page')
  }, 60_000)

  it('a page from an origin the node does not allow is refused', async () => {
    await startNodes()
    const before = heard.length
    const page = await open(`${refused}/?relay=ws://${node.relayWsAddress}/`)
    expect(await page.evaluate(() => window.app.state)).toBe('error')
    expect(await page.evaluate(() => window.app.error)).toMatch(/RelayUnavailableError: .*--relay-ws-origin/)
    // A hand-written WebSocket from that page fails as well: the node answered 403.
    const raw = await page.evaluate(
      (url) =>
        new Promise<string>((resolve) => {
          const ws = new WebSocket(url)
          ws.onopen = () => resolve('open')
          ws.onclose = (e) => resolve(`closed ${e.code}`)
        }),
      `ws://${node.relayWsAddress}/`,
    )
    expect(raw).toBe('closed 1006')
    expect(heard.length).toBe(before)
    await page.close()
  }, 60_000)
})
