/**
 * The leader's side of `s.pub` (publish-serve.ts) when a publish's outcome is unknown or
 * certainly negative: a scripted partition replica rejecting each publish with a given error.
 */
import { expect, it } from 'vitest'
import { AbortedError, LeadershipLostError } from '../../src/errors.js'
import { EntryOverwrittenError } from '../../src/replication/index.js'
import { servePublish } from '../../src/streams/host/publish-serve.js'
import type { PartitionReplica } from '../../src/streams/partition/partition.js'
import type { PubMessage } from '../../src/streams/wire.js'

const ref = { stream: 's', createdIndex: 1, partition: 0 }
const msg = (data: string, msgId: string): PubMessage => ({
  topic: 's.x',
  msgId,
  key: undefined,
  headers: undefined,
  data: new TextEncoder().encode(data),
})

it('answers LeadershipLostError by name when the outcome is unknown, "retry" when the entry was overwritten', async () => {
  const errs = [
    new LeadershipLostError('n1 lost leadership; the outcome is unknown'),
    new AbortedError('partition replica stopped'), // it stopped leading with the message pending
    new EntryOverwrittenError('another entry was committed at index 9'), // never committed
  ]
  let i = 0
  const replica = {
    role: 'leader',
    leader: 'n1',
    publish: async () => {
      throw errs[i++]
    },
  } as unknown as PartitionReplica
  const counted: string[] = []
  const messages = ['a', 'b', 'c'].map((d) => msg(d, d))
  const out = await servePublish(replica, { ...ref, ack: 'all', messages }, 1000, (n) => counted.push(n))
  expect(out).toEqual({
    status: 'ok',
    value: [
      { error: { name: 'LeadershipLostError', message: 'n1 lost leadership; the outcome is unknown' } },
      {
        error: {
          name: 'LeadershipLostError',
          message: 'the partition leader stopped leading (partition replica stopped); the outcome is unknown',
        },
      },
      'retry',
    ],
  })
  expect(counted).toEqual(['streams.leadershipLost', 'streams.leadershipLost'])
})
