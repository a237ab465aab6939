import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { BinaryReader, BinaryWriter, DecodeError } from '../../src/util/binary.js'

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
})
