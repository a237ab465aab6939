/**
 * The few `Buffer` calls the relay client's shared code makes (allocation, UTF-8 length and
 * encoding, hex and base64url decoding), for the browser bundle: esbuild injects this
 * `Buffer` where the code names the Node global. Results are plain `Uint8Array`s.
 */
const encoder = new TextEncoder()

/** Decodes `s` in `encoding` (utf8 by default; hex; base64 / base64url). */
function fromString(s: string, encoding = 'utf8'): Uint8Array {
  if (encoding === 'hex') {
    const out = new Uint8Array(s.length >>> 1)
    for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(s.slice(2 * i, 2 * i + 2), 16)
    return out
  }
  if (encoding === 'base64' || encoding === 'base64url') {
    const b64 = s.replace(/-/g, '+').replace(/_/g, '/')
    const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4))
    return Uint8Array.from(bin, (c) => c.charCodeAt(0))
  }
  return encoder.encode(s)
}

/** The subset of Node's `Buffer` statics used on the client's code path. */
export const Buffer = {
  allocUnsafe: (n: number): Uint8Array => new Uint8Array(n),
  allocUnsafeSlow: (n: number): Uint8Array => new Uint8Array(n),
  from(value: string | Uint8Array | ArrayBuffer | ArrayLike<number>, encoding?: string): Uint8Array {
    if (typeof value === 'string') return fromString(value, encoding)
    if (value instanceof ArrayBuffer) return new Uint8Array(value)
    return Uint8Array.from(value as ArrayLike<number>)
  },
  byteLength: (s: string): number => encoder.encode(s).length,
  isBuffer: (v: unknown): boolean => v instanceof Uint8Array,
}
