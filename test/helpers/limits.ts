/**
 * Messages at and over the message limits of src/constants.ts, shared by test/limits.test.ts
 * (library) and test/relay/limits.test.ts (relay), and the check that a call is refused.
 */
import { expect } from 'vitest'
import {
  MAX_HEADER_NAME_BYTES,
  MAX_HEADERS,
  MAX_HEADERS_BYTES,
  MAX_KEY_BYTES,
  MAX_MSG_ID_BYTES,
} from '../../src/constants.js'
import { InvalidArgumentError, type PublishOptions } from '../../src/index.js'

/** `MAX_HEADERS` headers, one name of `MAX_HEADER_NAME_BYTES`, `MAX_HEADERS_BYTES` in all. */
export function headersAtLimit(): Record<string, string> {
  const names = Array.from({ length: MAX_HEADERS }, (_, i) => `h${String(i).padStart(2, '0')}`)
  names[0] = 'n'.repeat(MAX_HEADER_NAME_BYTES)
  const nameBytes = names.reduce((n, k) => n + k.length, 0)
  const room = MAX_HEADERS_BYTES - nameBytes
  const h: Record<string, string> = {}
  names.forEach((k, i) => {
    const size = Math.floor(room / MAX_HEADERS) + (i < room % MAX_HEADERS ? 1 : 0)
    h[k] = 'v'.repeat(size)
  })
  return h
}

/** Publish options breaking one limit each, with the field the error must name. */
export function overLimits(): Array<[string, PublishOptions, RegExp]> {
  const full = headersAtLimit()
  const oneMore = { ...full }
  oneMore.h01 = `${oneMore.h01}v`
  const tooMany: Record<string, string> = {}
  for (let i = 0; i <= MAX_HEADERS; i++) tooMany[`k${i}`] = 'v'
  return [
    ['key one byte over', { key: new Uint8Array(MAX_KEY_BYTES + 1) }, /options\.key.*32768/],
    ['string key over (UTF-8 bytes)', { key: 'é'.repeat(MAX_KEY_BYTES / 2 + 1) }, /options\.key/],
    ['key of 70 KiB', { key: new Uint8Array(70 * 1024) }, /options\.key/],
    ['msgId one byte over', { msgId: 'm'.repeat(MAX_MSG_ID_BYTES + 1) }, /options\.msgId.*256/],
    ['msgId over in UTF-8 bytes', { msgId: 'é'.repeat(MAX_MSG_ID_BYTES / 2 + 1) }, /options\.msgId/],
    ['empty msgId', { msgId: '' }, /options\.msgId/],
    ['empty header name', { headers: { '': 'v' } }, /options\.headers.*empty/],
    [
      'header name over',
      { headers: { ['n'.repeat(MAX_HEADER_NAME_BYTES + 1)]: 'v' } },
      /options\.headers.*257/,
    ],
    ['headers one byte over in all', { headers: oneMore }, /options\.headers.*16385/],
    ['too many headers', { headers: tooMany }, /options\.headers.*64/],
    ['non-string header value', { headers: { a: 1 as unknown as string } }, /options\.headers\.a/],
  ]
}

/** Rejects with InvalidArgumentError whose message matches `re`. */
export async function refused(p: Promise<unknown> | (() => unknown), re: RegExp): Promise<void> {
  const run = typeof p === 'function' ? Promise.resolve().then(p) : p
  const err = await run.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err, `expected a refusal matching ${re}`).toBeInstanceOf(InvalidArgumentError)
  expect((err as Error).message).toMatch(re)
}
