/**
 * Key-value buckets (`node.kv`, docs/kv.md): `openBucket` finds or creates the bucket's
 * stream and returns the bucket (bucket.ts); names and their mapping onto a stream in keys.ts.
 */
import { InvalidArgumentError, StreamNotFoundError } from '../errors.js'
import type { KvBucket, KvOptions, StreamInfo, Streams } from '../types.js'
import { checkClusterName, checkOptions, checkPositiveInt, checkTimeout } from '../util/validate.js'
import { Bucket, type KvDeps } from './bucket.js'
import { bucketStream, bucketSubject, checkBucket } from './keys.js'

export { Bucket, type KvDeps } from './bucket.js'

const KNOWN = ['cluster', 'replicas', 'timeout', 'clusterKey', 'capability']

/**
 * Opens bucket `bucket`: its stream when it exists (it must be one partition and compacted),
 * else creates it in `options.cluster` (admin `create` on that cluster). `deps` is built per
 * bucket by the node with the options' timeout and capability.
 */
export async function openBucket(
  streams: Streams,
  bucket: string,
  options: KvOptions,
  deps: (o: { timeout: number | undefined; capability: string | undefined }) => KvDeps,
): Promise<KvBucket> {
  checkBucket(bucket)
  const o = checkOptions<KvOptions>(options, 'options')
  for (const k of Object.keys(o))
    if (!KNOWN.includes(k)) throw new InvalidArgumentError(`options has an unknown option "${k}"`)
  const cluster = checkClusterName(o.cluster, 'options.cluster')
  const replicas = checkPositiveInt(o.replicas, 'options.replicas')
  const timeout = checkTimeout(o.timeout, 'options.timeout')
  const name = bucketStream(bucket)
  const call = { timeout, clusterKey: o.clusterKey, capability: o.capability }
  let info: StreamInfo
  try {
    info = await streams.info(name, { timeout })
  } catch (err) {
    if (!(err instanceof StreamNotFoundError)) throw err
    const config = { cluster, subject: bucketSubject(bucket), partitions: 1, compact: true }
    info = await streams.create(name, replicas === undefined ? config : { ...config, replicas }, call)
  }
  if (info.cluster !== cluster)
    throw new InvalidArgumentError(`options.cluster: bucket ${bucket} is stored by cluster ${info.cluster}`)
  if (info.partitions.length !== 1 || !info.compact || info.subject !== bucketSubject(bucket))
    throw new InvalidArgumentError(`bucket: stream ${name} exists and is not a key-value bucket`)
  return new Bucket(bucket, deps({ timeout, capability: o.capability }))
}
