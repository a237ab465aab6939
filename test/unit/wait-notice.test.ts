/**
 * The lines a waiting `plexus consume` prints on a terminal (src/cli/wait-notice.ts) and
 * what `publish --ack` prints (formatAck): reasons from the stream's info, one line per
 * reason, nothing while messages flow.
 */
import { describe, expect, it } from 'vitest'
import { formatAck } from '../../src/cli/commands/pubsub.js'
import { waitReason, watchWaiting } from '../../src/cli/wait-notice.js'
import type { StreamInfo } from '../../src/types.js'

const info = (leaders: Array<string | null>): StreamInfo =>
  ({
    name: 's',
    cluster: 'c',
    subject: 's.>',
    replicas: 1,
    partitions: leaders.map((leader, partition) => ({
      partition,
      leader,
      replicas: [],
      inSync: [],
      firstOffset: 0,
      nextOffset: 0,
    })),
  }) as unknown as StreamInfo

describe('waitReason', () => {
  it('names leaderless partitions, else says it waits for messages', () => {
    expect(waitReason('s', undefined, info(['a', null, null]))).toBe(
      'waiting for a leader of stream s partitions 1, 2',
    )
    expect(waitReason('s', 2, info(['a', null, null]))).toBe('waiting for a leader of stream s partition 2')
    expect(waitReason('s', 0, info(['a', null]))).toBe('waiting for messages on stream s')
    const err = new Error('no metadata leader\nanswered')
    err.name = 'TimeoutError'
    expect(waitReason('s', undefined, err)).toBe(
      'waiting for stream s (its info failed: TimeoutError: no metadata leader answered)',
    )
  })
})

describe('watchWaiting', () => {
  it('prints once per reason while quiet, nothing while messages flow or when disabled', async () => {
    const lines: string[] = []
    let leaders: Array<string | null> = [null]
    const w = watchWaiting(
      { stream: 's', info: async () => info(leaders), write: (l) => lines.push(l), everyMs: 30 },
      true,
    )
    await new Promise((r) => setTimeout(r, 100))
    expect(lines).toEqual(['plexus: waiting for a leader of stream s partition 0 (Ctrl-C to stop)'])
    leaders = ['a']
    await new Promise((r) => setTimeout(r, 100))
    expect(lines.at(-1)).toBe('plexus: waiting for messages on stream s (Ctrl-C to stop)')
    expect(lines).toHaveLength(2)
    w.stop()
    const none: string[] = []
    const busy = watchWaiting(
      { stream: 's', info: async () => info([null]), write: (l) => none.push(l), everyMs: 30 },
      true,
    )
    const feed = setInterval(() => busy.seen(), 5)
    await new Promise((r) => setTimeout(r, 150))
    clearInterval(feed)
    busy.stop()
    expect(none).toEqual([])
    const off = watchWaiting(
      { stream: 's', info: async () => info([null]), write: (l) => none.push(l), everyMs: 10 },
      false,
    )
    await new Promise((r) => setTimeout(r, 50))
    off.stop()
    expect(none).toEqual([])
  })
})

describe('formatAck', () => {
  it('json, terminal and pipe forms', () => {
    const ack = { stream: 'orders', partition: 1, offset: 42 }
    expect(formatAck(ack, { json: false, tty: false })).toBe('42\n')
    expect(formatAck(ack, { json: false, tty: true })).toBe('stream orders partition 1 offset 42\n')
    expect(formatAck({ ...ack, duplicate: true }, { json: false, tty: true })).toBe(
      'stream orders partition 1 offset 42 duplicate\n',
    )
    expect(formatAck({ ...ack, duplicate: true }, { json: true, tty: true })).toBe(
      '{"stream":"orders","partition":1,"offset":42,"duplicate":true}\n',
    )
  })
})
