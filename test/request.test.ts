import { describe, expect, it } from 'vitest'
import { generateKey } from '../src/index.js'
import { startNodes, waitForMembers } from './helpers/nodes.js'

describe('request-reply', () => {
  it('reaches a member found by same-host discovery and returns its reply', async () => {
    const [a, b] = await startNodes(2)
    const key = generateKey()
    await b.join('echo', { key, onRequest: (d) => new Uint8Array([...d, 1]) })
    await waitForMembers(a, 'echo', 1)
    const reply = await a.request('echo', new Uint8Array([7, 8]))
    expect([...reply]).toEqual([7, 8, 1])
  })
})
