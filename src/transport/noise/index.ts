/**
 * Plexus's noise: a libp2p connection encrypter of our own (the libp2p noise spec on Node's
 * crypto) and what links need to know about it.
 *
 * | file | concern |
 * |---|---|
 * | `x25519.ts` | key pairs and Diffie-Hellman (Node KeyObjects) |
 * | `cipher.ts` | cipher states: AEAD, nonces |
 * | `handshake.ts` | the XX handshake, a pure state machine |
 * | `payload.ts` | the libp2p handshake payload (protobuf) and the signed bytes |
 * | `channel.ts` | handshake messages over the raw connection |
 * | `reader.ts` | transport messages out of socket chunks, decrypted |
 * | `connection.ts` | the encrypted connection (transport phase) |
 * | `encrypter.ts` | `secureInbound`/`secureOutbound` |
 */
import type { Connection, ConnectionEncrypter, Stream } from '@libp2p/interface'
import { type NoiseComponents, type NoiseSuiteInit, ourProtocols, PlexusNoise } from './encrypter.js'

export type { AeadName } from './cipher.js'
export type { NoiseComponents, NoiseSuiteInit } from './encrypter.js'
export { PlexusNoise } from './encrypter.js'

/** A libp2p `connectionEncrypters` entry for one noise suite. */
export function plexusNoise(suite: NoiseSuiteInit): (components: NoiseComponents) => ConnectionEncrypter {
  return (components) => new PlexusNoise(components, suite)
}

/** True when nothing handed to the stream is still referenced by the layers below it. */
export type ReleasedCheck = () => boolean

/**
 * The release check for a stream on a connection our encrypter secured, else undefined.
 *
 * Our connection encrypts in `send()` and keeps no reference to what it was given, and the
 * yamux muxer hands a stream's frames to it synchronously, so the bytes a link wrote are
 * released once the stream's own write buffer is empty. On another encrypter nothing is known.
 */
export function releasedOnSend(
  stream: Stream,
  connection: Connection | undefined,
): ReleasedCheck | undefined {
  const encryption = connection?.encryption
  if (encryption === undefined || !ourProtocols.has(encryption)) return undefined
  return () => stream.writeBufferLength === 0
}
