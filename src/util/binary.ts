/**
 * The one binary codec of Plexus: a growable writer and a bounds-checked reader of
 * big-endian integers, length-prefixed bytes and UTF-8 strings. Wire frames, the relay
 * protocol and on-disk layouts all use it. A reader that runs past its end throws
 * `DecodeError`, so malformed input is rejected, never misread.
 */

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder('utf-8', { fatal: true })

/** Thrown when bytes cannot be decoded (truncated, oversized or malformed). */
export class DecodeError extends Error {
  override name = 'DecodeError'
}

/** Growable big-endian writer. */
export class BinaryWriter {
  private buf: Uint8Array
  private view: DataView
  private pos = 0

  constructor(initialSize = 256) {
    this.buf = new Uint8Array(initialSize)
    this.view = new DataView(this.buf.buffer)
  }

  /** Bytes written so far. */
  get length(): number {
    return this.pos
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
    this.view = new DataView(next.buffer)
  }

  u8(v: number): this {
    this.ensure(1)
    this.view.setUint8(this.pos, v)
    this.pos += 1
    return this
  }

  u16(v: number): this {
    this.ensure(2)
    this.view.setUint16(this.pos, v)
    this.pos += 2
    return this
  }

  u32(v: number): this {
    this.ensure(4)
    this.view.setUint32(this.pos, v)
    this.pos += 4
    return this
  }

  /** Unsigned 64-bit from a non-negative safe integer. */
  u64(v: number): this {
    this.ensure(8)
    this.view.setBigUint64(this.pos, BigInt(v))
    this.pos += 8
    return this
  }

  raw(bytes: Uint8Array): this {
    this.ensure(bytes.length)
    this.buf.set(bytes, this.pos)
    this.pos += bytes.length
    return this
  }

  /** Bytes with a u32 length prefix. */
  bytes(bytes: Uint8Array): this {
    return this.u32(bytes.length).raw(bytes)
  }

  /** UTF-8 string with a u16 length prefix (at most 65535 bytes). */
  str(s: string): this {
    const b = textEncoder.encode(s)
    if (b.length > 0xffff) throw new RangeError('string longer than 65535 bytes')
    return this.u16(b.length).raw(b)
  }

  /** Overwrites a u32 at `offset` (for length prefixes written after the body). */
  patchU32(offset: number, v: number): void {
    this.view.setUint32(offset, v)
  }

  /** Forgets everything written; keeps the buffer. */
  reset(): void {
    this.pos = 0
  }

  /** The written bytes (a view, valid until the next write). */
  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos)
  }
}

/** Bounds-checked big-endian reader over one buffer. */
export class BinaryReader {
  private readonly view: DataView
  pos = 0

  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  }

  /** Bytes not yet read. */
  get remaining(): number {
    return this.buf.length - this.pos
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) {
      throw new DecodeError(`truncated: need ${n} bytes for ${what} at ${this.pos}, have ${this.remaining}`)
    }
  }

  u8(what = 'u8'): number {
    this.need(1, what)
    return this.view.getUint8(this.pos++)
  }

  u16(what = 'u16'): number {
    this.need(2, what)
    const v = this.view.getUint16(this.pos)
    this.pos += 2
    return v
  }

  u32(what = 'u32'): number {
    this.need(4, what)
    const v = this.view.getUint32(this.pos)
    this.pos += 4
    return v
  }

  u64(what = 'u64'): number {
    this.need(8, what)
    const v = this.view.getBigUint64(this.pos)
    this.pos += 8
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new DecodeError(`${what} too large`)
    return Number(v)
  }

  raw(n: number, what = 'bytes'): Uint8Array {
    this.need(n, what)
    const v = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return v
  }

  /** Bytes with a u32 length prefix; `max` bounds the length. */
  bytes(what = 'bytes', max = Number.MAX_SAFE_INTEGER): Uint8Array {
    const n = this.u32(`${what} length`)
    if (n > max) throw new DecodeError(`${what} of ${n} bytes exceeds ${max}`)
    return this.raw(n, what)
  }

  str(what = 'string'): string {
    const n = this.u16(`${what} length`)
    try {
      return textDecoder.decode(this.raw(n, what))
    } catch (err) {
      if (err instanceof DecodeError) throw err
      throw new DecodeError(`${what} is not valid UTF-8`)
    }
  }

  /** Throws unless every byte was consumed. */
  end(what = 'frame'): void {
    if (this.remaining !== 0) throw new DecodeError(`${this.remaining} trailing bytes after ${what}`)
  }
}
