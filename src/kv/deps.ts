/** The stream layer's calls a bucket uses (`KvDeps`), bound to a node's `StreamService`. */
import { STREAM_CALL_TIMEOUT } from '../streams/client.js'
import type { StreamService } from '../streams/service.js'
import type { KvDeps } from './bucket.js'

/** `KvDeps` over `service`, each call with `timeout` (default 10 s) and `capability`. */
export function kvDeps(
  service: StreamService,
  maxMessageSize: number,
  o: { timeout: number | undefined; capability: string | undefined },
): KvDeps {
  const timeout = o.timeout ?? STREAM_CALL_TIMEOUT
  const call = { timeout, capability: o.capability }
  return {
    maxMessageSize,
    publish: async (topic, data, key, headers, expectedRevision) => {
      const r = await service.publish(
        topic,
        data,
        key,
        headers,
        'all',
        timeout,
        undefined,
        o.capability,
        expectedRevision,
      )
      if (r === undefined) throw new Error('unreachable: a publish with ack resolves with an ack')
      return r
    },
    last: (stream, key) => service.last(stream, key, call),
    scan: (stream, onBatch) => service.scan(stream, 0, onBatch, call),
    consume: (stream, offset) => service.consume(stream, { from: { offset }, capability: o.capability }),
  }
}
