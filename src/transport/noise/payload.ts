/**
 * The libp2p noise handshake payload (the `NoiseHandshakePayload` protobuf of the libp2p
 * noise spec), written and read by hand:
 *
 *     message NoiseExtensions { repeated bytes webtransport_certhashes = 1; repeated string stream_muxers = 2; }
 *     message NoiseHandshakePayload { bytes identity_key = 1; bytes identity_sig = 2; optional NoiseExtensions extensions = 4; }
 *
 * Unknown fields are skipped, as protobuf requires. The identity key is the libp2p public key
 * protobuf; the signature covers "noise-libp2p-static-key:" followed by the static X25519 key.
 */
import { HandshakeError } from '../../errors.js'

/** The extensions a payload may carry. */
export interface NoiseExtensions {
  /** WebTransport certificate hashes (never sent by Plexus; kept when received). */
  webtransportCerthashes: Uint8Array[]
  /** Stream muxers offered for early negotiation, most preferred first. */
  streamMuxers: string[]
}

/** A decoded handshake payload. */
export interface HandshakePayload {
  identityKey: Uint8Array
  identitySig: Uint8Array
  extensions?: NoiseExtensions
}

/** Bounds on what a peer may send: far above any real key, signature or list. */
const MAX_FIELD_BYTES = 8192
const MAX_LIST = 64

const SIGNATURE_PREFIX = new TextEncoder().encode('noise-libp2p-static-key:')

/** The bytes an identity key signs: the prefix, then the static X25519 key. */
export function signedStaticKey(staticKey: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIGNATURE_PREFIX.byteLength + staticKey.byteLength)
  out.set(SIGNATURE_PREFIX)
  out.set(staticKey, SIGNATURE_PREFIX.byteLength)
  return out
}

/** Encodes a payload (extensions always present, as stock libp2p nodes send them). */
export function encodePayload(p: HandshakePayload): Uint8Array {
  const ext: number[] = []
  for (const hash of p.extensions?.webtransportCerthashes ?? []) field(ext, 1, hash)
  for (const muxer of p.extensions?.streamMuxers ?? []) field(ext, 2, new TextEncoder().encode(muxer))
  const out: number[] = []
  field(out, 1, p.identityKey)
  field(out, 2, p.identitySig)
  field(out, 4, ext)
  return Uint8Array.from(out)
}

/** Decodes a payload; throws `HandshakeError` naming what is wrong. */
export function decodePayload(bytes: Uint8Array): HandshakePayload {
  let identityKey: Uint8Array | undefined
  let identitySig: Uint8Array | undefined
  let extensions: NoiseExtensions | undefined
  for (const [num, value] of fields(bytes, 'payload')) {
    if (num === 1) identityKey = value
    else if (num === 2) identitySig = value
    else if (num === 4) extensions = decodeExtensions(value)
  }
  if (identityKey === undefined || identityKey.byteLength === 0) {
    throw new HandshakeError('noise payload has no identity_key')
  }
  if (identitySig === undefined || identitySig.byteLength === 0) {
    throw new HandshakeError('noise payload has no identity_sig')
  }
  return { identityKey, identitySig, extensions }
}

function decodeExtensions(bytes: Uint8Array): NoiseExtensions {
  const ext: NoiseExtensions = { webtransportCerthashes: [], streamMuxers: [] }
  const decoder = new TextDecoder('utf-8', { fatal: true })
  for (const [num, value] of fields(bytes, 'extensions')) {
    if (ext.webtransportCerthashes.length + ext.streamMuxers.length >= MAX_LIST) {
      throw new HandshakeError('noise payload extensions: too many entries')
    }
    if (num === 1) ext.webtransportCerthashes.push(value)
    else if (num === 2) {
      try {
        ext.streamMuxers.push(decoder.decode(value))
      } catch {
        throw new HandshakeError('noise payload extensions: stream_muxers entry is not UTF-8')
      }
    }
  }
  return ext
}

/** The length-delimited fields of a message as (field number, bytes); other wire types are skipped. */
function* fields(bytes: Uint8Array, what: string): Generator<[number, Uint8Array]> {
  let at = 0
  const varint = (): number => {
    let value = 0
    for (let shift = 0; shift < 35; shift += 7) {
      if (at >= bytes.byteLength) throw new HandshakeError(`noise ${what}: truncated varint`)
      const b = bytes[at++]!
      value += (b & 0x7f) * 2 ** shift
      if (b < 0x80) return value
    }
    throw new HandshakeError(`noise ${what}: varint too long`)
  }
  while (at < bytes.byteLength) {
    const key = varint()
    const num = Math.floor(key / 8)
    const type = key & 7
    if (type === 2) {
      const len = varint()
      if (len > MAX_FIELD_BYTES || len > bytes.byteLength - at) {
        throw new HandshakeError(`noise ${what}: field ${num} of ${len} bytes is too long`)
      }
      yield [num, bytes.subarray(at, at + len)]
      at += len
    } else if (type === 0) {
      varint()
    } else if (type === 1 || type === 5) {
      at += type === 1 ? 8 : 4
      if (at > bytes.byteLength) throw new HandshakeError(`noise ${what}: truncated field ${num}`)
    } else {
      throw new HandshakeError(`noise ${what}: unsupported wire type ${type}`)
    }
  }
}

function field(out: number[], num: number, value: Uint8Array | number[]): void {
  out.push((num << 3) | 2)
  let len = value.length
  while (len >= 0x80) {
    out.push((len & 0x7f) | 0x80)
    len >>>= 7
  }
  out.push(len)
  for (let i = 0; i < value.length; i++) out.push(value[i]!)
}
