/**
 * Progress lines (src/cli/progress.ts): drawn on a terminal only. `plexus consume` through a
 * real pseudo-terminal (`script`) shows the count and rate of `--count N`, and of a catch-up
 * read from earliest until it reaches the partition end; run with stderr on a pipe (as
 * here), the same commands print nothing on stderr. The bar's format is checked with an
 * injected terminal stream.
 */
import { spawn, spawnSync } from 'node:child_process'
import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { connectRelay } from '../../relay/client/client.js'
import { catchUpTotal } from '../../src/cli/commands/streams.js'
import { createProgress } from '../../src/cli/progress.js'
import type { StreamInfo } from '../../src/types.js'
import { CLI, runCli, startNode, tempDir, tempFile, uniqueNetwork } from './helpers.js'

const MESSAGES = 500
const hasScript = spawnSync('script', ['--version']).status === 0

/** A fake terminal: collects what is drawn. */
function terminal(): { stream: NodeJS.WriteStream; text: () => string } {
  let out = ''
  const w = new Writable({
    write(chunk, _enc, cb) {
      out += chunk.toString()
      cb()
    },
  }) as unknown as NodeJS.WriteStream
  Object.assign(w, { isTTY: true, columns: 120 })
  return { stream: w, text: () => out }
}

/**
 * Runs `plexus args...` under a pseudo-terminal with stdout to /dev/null: resolves with what
 * the terminal showed once `until` matches it (then the process group is killed), or at exit.
 */
function onTerminal(args: string[], env: Record<string, string>, until?: RegExp): Promise<string> {
  const quoted = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
  const child = spawn('script', ['-qfec', `stty cols 200; ${quoted} > /dev/null`, '/dev/null'], {
    env: { ...process.env, ...env, COLUMNS: '150' },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  })
  let out = ''
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      process.kill(-child.pid!, 'SIGKILL')
      reject(new Error(`no ${until} on the terminal within 20 s: ${JSON.stringify(out)}`))
    }, 20_000)
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (until?.test(out)) {
        clearTimeout(timer)
        process.kill(-child.pid!, 'SIGKILL')
        resolve(out)
      }
    })
    child.on('exit', () => {
      clearTimeout(timer)
      resolve(out)
    })
  })
}

describe('progress on a terminal', () => {
  it('draws counts, rate and detail on a terminal stream, and nothing when it is not one', () => {
    const tty = terminal()
    const bar = createProgress({ label: 'consume orders', unit: 'messages', rate: true, stream: tty.stream })
    expect(bar.shown).toBe(true)
    bar.start(10, 'catching up')
    bar.increment(4)
    bar.stop()
    expect(tty.text()).toMatch(/consume orders \S+ 4\/10 messages · [\d,]+\/s · 0:0\d · catching up/)
    const pipe = terminal()
    Object.assign(pipe.stream, { isTTY: false })
    const none = createProgress({ label: 'x', unit: 'parts', stream: pipe.stream })
    none.start(3)
    none.increment()
    none.stop()
    expect(none.shown).toBe(false)
    expect(none.value).toBe(1)
    expect(pipe.text()).toBe('')
  })

  it('catchUpTotal counts what a read from earliest or an offset has to reach', () => {
    const info = {
      partitions: [
        { partition: 0, firstOffset: 10, nextOffset: 110 },
        { partition: 1, firstOffset: 0, nextOffset: 50 },
      ],
    } as StreamInfo
    expect(catchUpTotal(info, undefined)).toBe(150)
    expect(catchUpTotal(info, 'earliest', 1)).toBe(50)
    expect(catchUpTotal(info, { offset: 100 })).toBe(10)
    expect(catchUpTotal(info, 'latest')).toBeUndefined()
    expect(catchUpTotal(info, { time: new Date() })).toBeUndefined()
    expect(catchUpTotal(info, { offset: 500 })).toBeUndefined()
  })

  it('plexus consume: nothing on stderr off a terminal; --count N and a catch-up read on one', async () => {
    const key = tempFile('db.key', `${'cd'.repeat(32)}\n`)
    // (startNode's nodes are killed after each test: one test holds the whole story.)
    const node = await startNode(uniqueNetwork(), [
      '--data-dir',
      tempDir(),
      '--join',
      'db',
      '--cluster-key-file',
      key,
    ])
    const env = { PLEXUS_RELAY: node.relay }
    const created = await runCli(
      ['stream', 'create', 'orders', '--cluster', 'db', '--subject', 'orders.>', '--replicas', '1'],
      { env, timeout: 20_000 },
    )
    expect(created.code, created.stderr).toBe(0)
    const client = await connectRelay({ address: node.relay })
    try {
      await Promise.all(
        Array.from({ length: MESSAGES }, (_, i) => client.publish(`orders.${i}`, `m${i}`, { ack: 'leader' })),
      )
    } finally {
      await client.close()
    }

    const r = await runCli(['consume', 'orders', '--count', String(MESSAGES)], { env })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.split('\n')).toHaveLength(MESSAGES + 1)
    expect(r.stderr).toBe('')
    if (!hasScript) return // no pseudo-terminal to draw on

    const counted = await onTerminal(['consume', 'orders', '--count', '200'], env)
    expect(counted).toMatch(/consume orders \S* ?200\/200 messages · [\d,]+\/s/)
    const caughtUp = await onTerminal(['consume', 'orders'], env, /caught up/)
    expect(caughtUp).toMatch(
      new RegExp(`${MESSAGES}/${MESSAGES} messages · [\\d,]+/s · \\d+:\\d\\d · caught up`),
    )
  }, 60_000)
})
