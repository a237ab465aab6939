/**
 * The one binary codec of Plexus: a growable writer and a bounds-checked reader of
 * big-endian integers, length-prefixed bytes and UTF-8 strings. Wire frames, the relay
 * protocol and on-disk layouts all use it. A reader that runs past its end throws
 * `DecodeError`, so malformed input is rejected, never misread.
 */

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder('utf-8', { fatal: true })

/**
 * A plain `Uint8Array` of `n` bytes that are not zero-filled: the caller writes every byte
 * before anything reads them. Much cheaper than `new Uint8Array(n)` beyond a few dozen bytes
 * (no zero fill; small sizes come from Node's shared 8 KiB pool). With `own`, the bytes get
 * an ArrayBuffer of their own (for results kept long: a pooled slice keeps its whole pool
 * block alive).
 */
export function uninitializedBytes(n: number, own = false): Uint8Array {
  const b = own ? Buffer.allocUnsafeSlow(n) : Buffer.allocUnsafe(n)
  return new Uint8Array(b.buffer, b.byteOffset, n)
}

/** Thrown when bytes cannot be decoded (truncated, oversized or malformed). */
export class DecodeError extends Error {
  override name = 'DecodeError'
}

/** Growable big-endian writer. */
/** The bytes `write` puts into a fresh writer (a frame encoded once, outside a link). */
export function encoded(write: (w: BinaryWriter) => void): Uint8Array {
  const w = new BinaryWriter()
  write(w)
  return w.finish()
}

export class BinaryWriter {
  private buf: Uint8Array
  private pos = 0

  /** Starts with a zeroed buffer of `initialSize` bytes, or writes into `buffer` as given. */
  constructor(initialSize = 256, buffer?: Uint8Array) {
    this.buf = buffer ?? new Uint8Array(initialSize)
  }

  /** Bytes written so far. */
  get length(): number {
    return this.pos
  }

  /** Size of the underlying buffer. */
  get capacity(): number {
    return this.buf.length
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
  }

  u8(v: number): this {
    if (this.pos + 1 > this.buf.length) this.ensure(1)
    this.buf[this.pos++] = v
    return this
  }

  u16(v: number): this {
    if (this.pos + 2 > this.buf.length) this.ensure(2)
    const b = this.buf
    const p = this.pos
    b[p] = v >>> 8
    b[p + 1] = v
    this.pos = p + 2
    return this
  }

  u32(v: number): this {
    if (this.pos + 4 > this.buf.length) this.ensure(4)
    const b = this.buf
    const p = this.pos
    b[p] = v >>> 24
    b[p + 1] = v >>> 16
    b[p + 2] = v >>> 8
    b[p + 3] = v
    this.pos = p + 4
    return this
  }

  /** Unsigned 64-bit from a non-negative safe integer. */
  u64(v: number): this {
    this.ensure(8)
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`u64 value out of range: ${v}`)
    const hi = Math.floor(v / 0x100000000)
    const lo = v >>> 0
    const b = this.buf
    const p = this.pos
    b[p] = hi >>> 24
    b[p + 1] = hi >>> 16
    b[p + 2] = hi >>> 8
    b[p + 3] = hi
    b[p + 4] = lo >>> 24
    b[p + 5] = lo >>> 16
    b[p + 6] = lo >>> 8
    b[p + 7] = lo
    this.pos = p + 8
    return this
  }

  raw(bytes: Uint8Array): this {
    if (this.pos + bytes.length > this.buf.length) this.ensure(bytes.length)
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
    const n = s.length
    if (n < 128) {
      // Fast path for short ASCII strings (topics, cluster names, peer ids).
      if (this.pos + 2 + n > this.buf.length) this.ensure(2 + n)
      const b = this.buf
      const start = this.pos + 2
      let i = 0
      for (; i < n; i++) {
        const c = s.charCodeAt(i)
        if (c >= 0x80) break
        b[start + i] = c
      }
      if (i === n) {
        b[this.pos] = n >>> 8
        b[this.pos + 1] = n
        this.pos = start + n
        return this
      }
    }
    const enc = textEncoder.encode(s)
    if (enc.length > 0xffff) throw new RangeError('string longer than 65535 bytes')
    return this.u16(enc.length).raw(enc)
  }

  /** Overwrites a u32 at `offset` (for length prefixes written after the body). */
  patchU32(offset: number, v: number): void {
    const b = this.buf
    b[offset] = v >>> 24
    b[offset + 1] = v >>> 16
    b[offset + 2] = v >>> 8
    b[offset + 3] = v
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

/**
 * Bounds-checked big-endian reader over one buffer, or over `buf[start, end)` (a frame inside
 * a received chunk, read without making a view of it first). `pos` is an index into `buf`.
 */
export class BinaryReader {
  pos: number

  constructor(
    private readonly buf: Uint8Array,
    private readonly start = 0,
    private readonly limit = buf.length,
  ) {
    this.pos = start
  }

  /** Bytes not yet read. */
  get remaining(): number {
    return this.limit - this.pos
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.limit) {
      throw new DecodeError(
        `truncated: need ${n} bytes for ${what} at ${this.pos - this.start}, have ${this.remaining}`,
      )
    }
  }

  u8(what = 'u8'): number {
    if (this.pos + 1 > this.limit) this.need(1, what)
    return this.buf[this.pos++]!
  }

  /**
   * When the next `n` bytes equal `bytes` (which has length `n`), skips them and returns
   * true; otherwise reads nothing. Compares in place (no view is made).
   */
  skipIfEqual(n: number, bytes: Uint8Array): boolean {
    if (n !== bytes.length || this.pos + n > this.limit) return false
    const b = this.buf
    const p = this.pos
    for (let i = 0; i < n; i++) if (b[p + i] !== bytes[i]) return false
    this.pos = p + n
    return true
  }

  u16(what = 'u16'): number {
    this.need(2, what)
    const v = (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!
    this.pos += 2
    return v
  }

  u32(what = 'u32'): number {
    if (this.pos + 4 > this.limit) this.need(4, what)
    const b = this.buf
    const p = this.pos
    this.pos = p + 4
    return ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0
  }

  u64(what = 'u64'): number {
    this.need(8, what)
    const b = this.buf
    const p = this.pos
    const hi = ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0
    const lo = ((b[p + 4]! << 24) | (b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!) >>> 0
    this.pos = p + 8
    if (hi > 0x1fffff) throw new DecodeError(`${what} too large`)
    return hi * 0x100000000 + lo
  }

  raw(n: number, what = 'bytes'): Uint8Array {
    this.need(n, what)
    const v = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return v
  }

  /** Bytes with a u32 length prefix; `max` bounds the length. */
  bytes(what = 'bytes', max = Number.MAX_SAFE_INTEGER): Uint8Array {
    if (this.pos + 4 > this.limit) this.need(4, `${what} length`)
    const n = this.u32()
    if (n > max) throw new DecodeError(`${what} of ${n} bytes exceeds ${max}`)
    return this.raw(n, what)
  }

  str(what = 'string'): string {
    if (this.pos + 2 > this.limit) this.need(2, `${what} length`)
    const n = this.u16()
    if (n <= 64 && this.pos + n <= this.limit) {
      // Fast path for short ASCII strings.
      const b = this.buf
      const start = this.pos
      let ascii = true
      for (let i = start; i < start + n; i++) {
        if (b[i]! >= 0x80) {
          ascii = false
          break
        }
      }
      if (ascii) {
        this.pos += n
        return String.fromCharCode.apply(null, b.subarray(start, start + n) as unknown as number[])
      }
    }
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

const NO_BYTES = new Uint8Array(0)

/**
 * Reads one u16-length string field of a frame, returning the previous read's string when
 * the bytes are the same: frames from one sender usually repeat their origin, cluster or
 * topic, and the same string needs no decoding (and its hash is already computed for map
 * lookups). Otherwise it is read by `BinaryReader.str`, with the same checks and errors.
 * Strings over `maxBytes` are not remembered.
 */
export class RepeatedString {
  private bytes: Uint8Array = NO_BYTES
  private value = ''
  private readonly lengthWhat: string

  constructor(
    private readonly what: string,
    private readonly maxBytes = 256,
  ) {
    this.lengthWhat = `${what} length`
  }

  read(r: BinaryReader): string {
    const start = r.pos
    const n = r.u16(this.lengthWhat)
    if (n > 0 && r.skipIfEqual(n, this.bytes)) return this.value
    r.pos = start
    const s = r.str(this.what)
    // Encoded anew (never a view into the frame, whose buffer must not be kept alive); a
    // decoded string encodes back to the same bytes.
    this.bytes = n <= this.maxBytes ? Buffer.from(s) : NO_BYTES
    this.value = s
    return s
  }
}
