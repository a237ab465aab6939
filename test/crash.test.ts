import { describe, expect, it } from 'vitest'
import { generateKey, MemberLostError, TunnelClosedError } from '../src/index.js'
import { startNode, uniqueNetwork, waitFor, waitForMembers } from './helpers/nodes.js'
import { spawnNode, waitForLine } from './helpers/procs.js'

const dec = (b: Uint8Array) => new TextDecoder().decode(b)

describe('member killed with kill -9', () => {
  it('stops getting work within 5 s while requests keep being answered by the survivor', async () => {
    const network = uniqueNetwork('crash')
    const key = generateKey()
    const p1 = spawnNode(['test/fixtures/member.mjs', network, 'db', key, 'p1'])
    const p2 = spawnNode(['test/fixtures/member.mjs', network, 'db', key, 'p2'])
    const id1 = (await waitForLine(p1, /^ready (\S+)/))[1]
    await waitForLine(p2, /^ready /)
    const client = await startNode({ network })
    await waitForMembers(client, 'db', 2)
    const seen = new Set<string>()
    for (let i = 0; i < 10; i++) seen.add(dec(await client.request('db', 'x')))
    expect(seen).toEqual(new Set(['p1', 'p2']))

    // Keep a steady load running while p1 dies.
    let stop = false
    const answers: string[] = []
    const errors: Error[] = []
    const load = (async () => {
      while (!stop) {
        await Promise.all(
          Array.from({ length: 4 }, () =>
            client.request('db', 'x', { timeout: 3000 }).then(
              (r) => void answers.push(dec(r)),
              (e: Error) => void errors.push(e),
            ),
          ),
        )
      }
    })()
    await waitFor(() => answers.length > 20)
    const killedAt = Date.now()
    p1.kill('SIGKILL')
    await waitFor(
      () => !client.status().clusters[0]!.members.some((m) => m.id === id1 && m.connected),
      5000,
      'killed member dropped',
    )
    const droppedAfter = Date.now() - killedAt
    const before = answers.length
    await waitFor(() => answers.length > before + 40, 5000, 'answers after the kill')
    stop = true
    await load
    expect(droppedAfter).toBeLessThan(5000)
    expect(answers.slice(before)).toEqual(answers.slice(before).map(() => 'p2'))
    // Requests caught in flight at the moment of the kill may fail, and only as MemberLostError.
    for (const e of errors) expect(e).toBeInstanceOf(MemberLostError)
    expect(errors.length).toBeLessThanOrEqual(4)
  })

  it('with retry: true no request is lost when a member dies', async () => {
    const network = uniqueNetwork('crash')
    const key = generateKey()
    const p1 = spawnNode(['test/fixtures/member.mjs', network, 'db', key, 'p1'])
    const p2 = spawnNode(['test/fixtures/member.mjs', network, 'db', key, 'p2'])
    await Promise.all([waitForLine(p1, /^ready /), waitForLine(p2, /^ready /)])
    const client = await startNode({ network })
    await waitForMembers(client, 'db', 2)
    const all: Promise<Uint8Array>[] = []
    for (let i = 0; i < 200; i++) {
      all.push(client.request('db', 'x', { retry: true, timeout: 5000 }))
      if (i === 100) p1.kill('SIGKILL')
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 5))
    }
    const results = await Promise.all(all)
    expect(results.length).toBe(200)
  })

  it('a tunnel to a member killed with kill -9 ends with TunnelClosedError within 5 s', async () => {
    const network = uniqueNetwork('crash')
    const key = generateKey()
    const p1 = spawnNode(['test/fixtures/member.mjs', network, 'db', key, 'p1'])
    await waitForLine(p1, /^ready /)
    const client = await startNode({ network })
    await waitForMembers(client, 'db', 1)
    const t = await client.tunnel('db')
    await t.send('ping')
    const it = t[Symbol.asyncIterator]()
    expect(dec((await it.next()).value)).toBe('ping')
    const killedAt = Date.now()
    p1.kill('SIGKILL')
    const err = await it.next().catch((e) => e)
    expect(err).toBeInstanceOf(TunnelClosedError)
    expect(Date.now() - killedAt).toBeLessThan(5000)
    await expect(t.send('more')).rejects.toBeInstanceOf(TunnelClosedError)
  })
})
