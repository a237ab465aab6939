/**
 * Validation of the consumer options and `fetch` options that the library and the relay's
 * thin client share (no I/O, so the browser bundle can use it). Errors are
 * `InvalidArgumentError` naming the field.
 */
import { CONSUMER } from '../../constants.js'
import { InvalidArgumentError } from '../../errors.js'
import { checkPattern } from '../../pubsub/subject.js'
import type { ConsumeOptions, FetchOptions } from '../../types.js'
import { checkDelay, checkOptions, describe } from '../../util/validate.js'

/** `filter`, `maxDeliver`, `backoff` and `ackPolicy`, validated. */
export interface AckOptions {
  filter?: string
  maxDeliver?: number
  backoff?: number[]
  /** `ackPolicy: 'none'`. */
  ackNone: boolean
}

/**
 * Validates `filter`, `maxDeliver`, `backoff` and `ackPolicy` (and what `'none'` excludes; the
 * ack options need `durable`).
 */
export function checkAckOptions(o: ConsumeOptions): AckOptions {
  const { maxDeliver, backoff, ackPolicy, maxAckPending } = o
  if (maxAckPending !== undefined && (!Number.isSafeInteger(maxAckPending) || maxAckPending < 1))
    throw new InvalidArgumentError(
      `options.maxAckPending must be a positive integer, got ${describe(maxAckPending)}`,
    )
  const filter = o.filter === undefined ? undefined : checkPattern(o.filter, 'options.filter')
  if (o.durable === undefined) {
    const given = (['ackWait', 'maxAckPending', 'maxDeliver', 'backoff', 'ackPolicy'] as const).filter(
      (k) => o[k] !== undefined,
    )
    if (given.length > 0)
      throw new InvalidArgumentError(`options.${given.join(', options.')} need options.durable`)
  }
  if (maxDeliver !== undefined && (!Number.isSafeInteger(maxDeliver) || maxDeliver < 1))
    throw new InvalidArgumentError(
      `options.maxDeliver must be a positive integer, got ${describe(maxDeliver)}`,
    )
  if (backoff !== undefined) {
    const most = Math.min(CONSUMER.maxBackoff, maxDeliver ?? CONSUMER.maxBackoff)
    if (!Array.isArray(backoff) || backoff.length === 0 || backoff.length > most)
      throw new InvalidArgumentError(
        `options.backoff must be an array of 1 to ${most} delays (at most 64${maxDeliver === undefined ? '' : ' and at most options.maxDeliver'}), got ${describe(backoff)}`,
      )
    for (const [i, d] of backoff.entries()) checkDelay(d, `options.backoff[${i}]`)
  }
  if (ackPolicy !== undefined && ackPolicy !== 'explicit' && ackPolicy !== 'none')
    throw new InvalidArgumentError(
      `options.ackPolicy must be 'explicit' or 'none', got ${describe(ackPolicy)}`,
    )
  if (ackPolicy === 'none') {
    const given = (['ackWait', 'maxAckPending', 'maxDeliver', 'backoff'] as const).filter(
      (k) => o[k] !== undefined,
    )
    if (given.length > 0)
      throw new InvalidArgumentError(
        `options.${given.join(', options.')} mean nothing with options.ackPolicy 'none'`,
      )
  }
  return { filter, maxDeliver, backoff: backoff && [...backoff], ackNone: ackPolicy === 'none' }
}

/** Validates `fetch` options; the defaults filled in. */
export function checkFetchOptions(options: FetchOptions | undefined): { max: number; expires: number } {
  const o = checkOptions<FetchOptions>(options ?? {}, 'options')
  const max = o.max ?? CONSUMER.fetchDefaultMessages
  if (!Number.isSafeInteger(max) || max < 1 || max > CONSUMER.fetchMaxMessages)
    throw new InvalidArgumentError(
      `options.max must be an integer from 1 to ${CONSUMER.fetchMaxMessages}, got ${describe(o.max)}`,
    )
  const expires = o.expires ?? CONSUMER.fetchDefaultExpires
  if (
    typeof expires !== 'number' ||
    !Number.isFinite(expires) ||
    expires < 0 ||
    expires > CONSUMER.fetchMaxExpires
  )
    throw new InvalidArgumentError(
      `options.expires must be 0 to ${CONSUMER.fetchMaxExpires} ms, got ${describe(o.expires)}`,
    )
  return { max, expires }
}
