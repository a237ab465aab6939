import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { BinaryReader, BinaryWriter, DecodeError, RepeatedString } from '../../src/util/binary.js'

describe('binary codec', () => {
  it('round-trips every field type in sequence (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ t: fc.constant('u8' as const), v: fc.nat(255) }),
            fc.record({ t: fc.constant('u16' as const), v: fc.nat(0xffff) }),
            fc.record({ t: fc.constant('u32' as const), v: fc.nat(0xffffffff) }),
            fc.record({ t: fc.constant('u64' as const), v: fc.maxSafeNat() }),
            fc.record({ t: fc.constant('str' as const), v: fc.string({ maxLength: 200, unit: 'grapheme' }) }),
            fc.record({ t: fc.constant('bytes' as const), v: fc.uint8Array({ maxLength: 300 }) }),
          ),
          { maxLength: 40 },
        ),
        (fields) => {
          const w = new BinaryWriter(1)
          for (const f of fields) (w[f.t] as (v: unknown) => BinaryWriter)(f.v)
          const r = new BinaryReader(w.finish())
          for (const f of fields) expect(r[f.t]()).toEqual(f.v)
          r.end()
        },
      ),
    )
  })

  it('patchU32 overwrites a length written earlier', () => {
    const w = new BinaryWriter(2)
    w.u32(0).str('hello')
    w.patchU32(0, 0xdeadbeef)
    const r = new BinaryReader(w.finish())
    expect(r.u32()).toBe(0xdeadbeef)
    expect(r.str()).toBe('hello')
  })

  it('throws DecodeError on truncation, oversize and bad UTF-8, never misreads', () => {
    expect(() => new BinaryReader(new Uint8Array([0, 0, 0])).u32()).toThrow(DecodeError)
    expect(() => new BinaryReader(new Uint8Array([0, 5, 65])).str()).toThrow(DecodeError)
    expect(() => new BinaryReader(new Uint8Array([0, 2, 0xff, 0xfe])).str()).toThrow(DecodeError)
    expect(() => new BinaryReader(new Uint8Array([0, 0, 0, 9, 1])).bytes('x', 4)).toThrow(DecodeError)
    expect(() => new BinaryReader(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])).u64()).toThrow(
      DecodeError,
    )
    expect(() => new BinaryReader(new Uint8Array([1])).end()).toThrow(DecodeError)
  })

  it('reads a frame inside a larger buffer exactly as its own copy, bounded by its end', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 20 }),
        fc.string({ maxLength: 30 }),
        fc.nat(),
        fc.uint8Array({ maxLength: 20 }),
        fc.uint8Array({ maxLength: 20 }),
        (before, str, n, bytes, after) => {
          const w = new BinaryWriter()
          w.str(str)
            .u32(n >>> 0)
            .bytes(bytes)
          const frame = w.finish().slice()
          const whole = new Uint8Array([...before, ...frame, ...after])
          const r = new BinaryReader(whole, before.length, before.length + frame.length)
          expect(r.remaining).toBe(frame.length)
          expect(r.str()).toBe(str)
          expect(r.u32()).toBe(n >>> 0)
          expect([...r.bytes()]).toEqual([...bytes])
          r.end()
          // The bytes after the frame are never read, and truncation is reported from its start.
          expect(() => r.u8('next')).toThrow(`truncated: need 1 bytes for next at ${frame.length}, have 0`)
        },
      ),
    )
  })

  it('skipIfEqual skips only equal bytes and reads nothing otherwise', () => {
    const r = new BinaryReader(new Uint8Array([9, 1, 2, 3, 4]), 1, 4)
    expect(r.skipIfEqual(3, new Uint8Array([1, 2, 4]))).toBe(false)
    expect(r.skipIfEqual(2, new Uint8Array([1, 2, 3]))).toBe(false) // length differs
    expect(r.skipIfEqual(4, new Uint8Array([1, 2, 3, 4]))).toBe(false) // past the end
    expect(r.remaining).toBe(3)
    expect(r.skipIfEqual(2, new Uint8Array([1, 2]))).toBe(true)
    expect(r.u8()).toBe(3)
    r.end()
  })

  it('RepeatedString reads what str reads, for repeated and changing strings alike', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ maxLength: 300, unit: 'grapheme' }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (pool, picks) => {
          const rs = new RepeatedString('topic')
          for (const p of picks) {
            const want = pool[p % pool.length]!
            const w = new BinaryWriter()
            w.u8(7)
              .str(want)
              .u32(p >>> 0)
            const r = new BinaryReader(w.finish())
            expect(r.u8()).toBe(7)
            expect(rs.read(r)).toBe(want)
            expect(r.u32()).toBe(p >>> 0) // positioned right after the string either way
            r.end()
          }
        },
      ),
    )
  })

  it('RepeatedString fails like str on a truncated or invalid string, also after a hit', () => {
    const rs = new RepeatedString('topic')
    const w = new BinaryWriter()
    w.str('orders.eu')
    const frame = w.finish().slice()
    expect(rs.read(new BinaryReader(frame))).toBe('orders.eu')
    expect(rs.read(new BinaryReader(frame))).toBe('orders.eu')
    expect(() => rs.read(new BinaryReader(frame.subarray(0, 5)))).toThrow(DecodeError)
    expect(() => rs.read(new BinaryReader(new Uint8Array([0, 2, 0xff, 0xfe])))).toThrow(DecodeError)
    expect(() => rs.read(new BinaryReader(new Uint8Array([0])))).toThrow(/topic length/)
  })
})
