/**
 * Plexus's libp2p `ConnectionEncrypter`: the libp2p noise spec (XX handshake, the
 * `NoiseHandshakePayload` carrying the identity key and its signature over the static key,
 * stream-muxer extension for early negotiation, early data ignored) on Node's crypto, with
 * the transport phase of `connection.ts`.
 *
 * A handshake that fails (malformed or truncated message, bad signature, a peer other than
 * the one dialled, the connection closing, the upgrade's signal aborting) aborts the
 * connection and rejects with `HandshakeError`.
 */
import { publicKeyFromProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type {
  ConnectionEncrypter,
  MessageStream,
  PeerId,
  PrivateKey,
  SecureConnectionOptions,
  SecuredConnection,
  StreamMuxerFactory,
} from '@libp2p/interface'
import { serviceCapabilities } from '@libp2p/interface'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { HandshakeError } from '../../errors.js'
import { HandshakeChannel } from './channel.js'
import type { AeadName } from './cipher.js'
import { NoiseConnection } from './connection.js'
import { XXHandshake } from './handshake.js'
import { decodePayload, encodePayload, type NoiseExtensions, signedStaticKey } from './payload.js'
import { type DhKeyPair, dhKeyPair } from './x25519.js'

/** What the encrypter takes from the libp2p node. */
export interface NoiseComponents {
  privateKey: PrivateKey
  upgrader: { getStreamMuxers(): Map<string, StreamMuxerFactory> }
}

/** One noise suite (a protocol id with its AEAD and prologue). */
export interface NoiseSuiteInit {
  /** The multistream-select protocol id, e.g. `/noise`. */
  protocol: string
  /** The AEAD of handshake and transport. */
  aead: AeadName
  /** Bytes hashed into every handshake; both ends must agree (default: none). */
  prologue?: Uint8Array
  /** Seed of the static X25519 key (tests); a fresh key per node when omitted. */
  staticKeySeed?: Uint8Array
}

/** Protocol ids served by our encrypter in this process (see `releasedOnSend`). */
export const ourProtocols = new Set<string>()

/** The libp2p encrypter for one suite (see the module doc). */
export class PlexusNoise implements ConnectionEncrypter<NoiseExtensions> {
  readonly protocol: string
  readonly [Symbol.toStringTag] = 'plexus-noise'
  readonly [serviceCapabilities]: string[] = ['@libp2p/connection-encryption']
  private readonly staticKey: DhKeyPair
  private readonly prologue: Uint8Array
  /** The signature over our static key (it never changes for this node). */
  private signature: Promise<Uint8Array> | undefined

  constructor(
    private readonly components: NoiseComponents,
    private readonly suite: NoiseSuiteInit,
  ) {
    this.protocol = suite.protocol
    this.prologue = suite.prologue ?? new Uint8Array(0)
    this.staticKey = dhKeyPair(suite.staticKeySeed)
    ourProtocols.add(suite.protocol)
  }

  /** Secures a connection we dialled. */
  secureOutbound(
    connection: MessageStream,
    options?: SecureConnectionOptions,
  ): Promise<SecuredConnection<NoiseExtensions>> {
    return this.secure(true, connection, options)
  }

  /** Secures a connection we accepted. */
  secureInbound(
    connection: MessageStream,
    options?: SecureConnectionOptions,
  ): Promise<SecuredConnection<NoiseExtensions>> {
    return this.secure(false, connection, options)
  }

  private async secure(
    initiator: boolean,
    raw: MessageStream,
    options: SecureConnectionOptions | undefined,
  ): Promise<SecuredConnection<NoiseExtensions>> {
    const muxers =
      options?.skipStreamMuxerNegotiation === true
        ? []
        : [...this.components.upgrader.getStreamMuxers().keys()]
    const ourPayload = encodePayload({
      identityKey: publicKeyToProtobuf(this.components.privateKey.publicKey),
      identitySig: await this.sign(),
      extensions: { webtransportCerthashes: [], streamMuxers: muxers },
    })
    const hs = new XXHandshake({
      initiator,
      aead: this.suite.aead,
      prologue: this.prologue,
      staticKey: this.staticKey,
    })
    const channel = new HandshakeChannel(raw, options?.signal)
    let remote: { peer: PeerId; extensions: NoiseExtensions | undefined }
    try {
      if (initiator) {
        channel.write(hs.writeMessage(new Uint8Array(0)))
        remote = await this.verify(hs, hs.readMessage(await channel.read()), options?.remotePeer)
        channel.write(hs.writeMessage(ourPayload))
      } else {
        hs.readMessage(await channel.read()) // early data, if any, is ignored
        channel.write(hs.writeMessage(ourPayload))
        remote = await this.verify(hs, hs.readMessage(await channel.read()), options?.remotePeer)
      }
    } catch (err) {
      channel.release()
      const error =
        err instanceof HandshakeError ? err : new HandshakeError('noise handshake failed', { cause: err })
      // Nothing of this connection is usable: close it here, whoever called us.
      raw.abort(error)
      throw error
    }
    const leftover = channel.release()
    const { send, receive } = hs.split()
    return {
      connection: new NoiseConnection(raw, send, receive, leftover),
      remoteExtensions: remote.extensions,
      remotePeer: remote.peer,
      streamMuxer:
        options?.skipStreamMuxerNegotiation === true
          ? undefined
          : this.pickMuxer(remote.extensions?.streamMuxers),
    }
  }

  private sign(): Promise<Uint8Array> {
    this.signature ??= Promise.resolve(
      this.components.privateKey.sign(signedStaticKey(this.staticKey.publicKey)),
    )
    return this.signature
  }

  /** Checks the peer's payload: its identity signed the static key it used, and it is who we dialled. */
  private async verify(
    hs: XXHandshake,
    payloadBytes: Uint8Array,
    expected: PeerId | undefined,
  ): Promise<{ peer: PeerId; extensions: NoiseExtensions | undefined }> {
    const payload = decodePayload(payloadBytes)
    let key: ReturnType<typeof publicKeyFromProtobuf>
    try {
      key = publicKeyFromProtobuf(payload.identityKey)
    } catch (err) {
      throw new HandshakeError('noise payload identity_key is not a valid libp2p public key', { cause: err })
    }
    const staticKey = hs.remoteStaticKey
    if (staticKey === undefined) throw new HandshakeError('noise handshake: no remote static key')
    let valid: boolean
    try {
      valid = await key.verify(signedStaticKey(staticKey), payload.identitySig)
    } catch (err) {
      throw new HandshakeError('noise payload identity_sig could not be checked', { cause: err })
    }
    if (!valid) throw new HandshakeError('noise payload identity_sig does not verify')
    const peer = peerIdFromPublicKey(key)
    if (expected !== undefined && !expected.equals(peer)) {
      throw new HandshakeError(
        `noise handshake: expected peer ${expected.toString()}, got ${peer.toString()}`,
      )
    }
    return { peer, extensions: payload.extensions }
  }

  /**
   * The muxer for early negotiation: the first the peer offers that we have (as stock libp2p
   * noise picks it, so both ends agree); undefined when the peer offers none (multistream-select
   * then negotiates it). Throws when the peer offers muxers and we have none of them.
   */
  private pickMuxer(offered: string[] | undefined): StreamMuxerFactory | undefined {
    if (offered === undefined || offered.length === 0) return undefined
    const ours = this.components.upgrader.getStreamMuxers()
    for (const protocol of offered) {
      const muxer = ours.get(protocol)
      if (muxer !== undefined) return muxer
    }
    throw new HandshakeError(`noise handshake: no stream muxer in common (peer offers ${offered.join(', ')})`)
  }
}
