/**
 * The Noise XX handshake as a pure state machine: messages in, messages out, and at the end
 * two cipher states. No I/O, no clock, no signatures (the libp2p payload is opaque here; see
 * `payload.ts` and `encrypter.ts`).
 *
 * Pattern (Noise_XX_25519_<AEAD>_SHA256):
 *
 *     -> e
 *     <- e, ee, s, es
 *     -> s, se
 *
 * The protocol name hashed in is always `Noise_XX_25519_ChaChaPoly_SHA256`, also for the
 * AES-256-GCM suite: Plexus nodes built on `@chainsafe/libp2p-noise` did the same (that
 * library fixes the name) and told the suites apart by the prologue, which stays so the two
 * generations connect. The initiator writes message 1 and 3, the responder message 2; each
 * message carries a payload (empty in message 1; libp2p puts its identity in 2 and 3).
 */
import crypto from 'node:crypto'
import { HandshakeError } from '../../errors.js'
import { type AeadName, CipherState, MAX_MESSAGE, TAG_BYTES } from './cipher.js'
import { DH_BYTES, type DhKeyPair, dh, dhKeyPair } from './x25519.js'

/** The protocol name of every Plexus noise handshake (see the module doc). */
export const NOISE_PROTOCOL_NAME = 'Noise_XX_25519_ChaChaPoly_SHA256'
const HASH_BYTES = 32

/** How one handshake is set up. */
export interface HandshakeInit {
  /** True on the side that dialled (it writes message 1). */
  initiator: boolean
  /** The AEAD of the handshake and of the transport phase. */
  aead: AeadName
  /** Bytes both sides hash in first; a difference fails the handshake at message 2. */
  prologue: Uint8Array
  /** Our long-lived X25519 key pair (signed by the libp2p identity in the payload). */
  staticKey: DhKeyPair
  /** Our ephemeral key pair; fresh when omitted (given only by tests and vectors). */
  ephemeralKey?: DhKeyPair
}

/** The transport phase's two cipher states, from our side. */
export interface SplitResult {
  send: CipherState
  receive: CipherState
  /** The final handshake hash (channel binding; same on both sides). */
  handshakeHash: Uint8Array
}

function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = crypto.createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest()
}

function hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = crypto.createHmac('sha256', key)
  for (const p of parts) h.update(p)
  return h.digest()
}

/** Noise's HKDF with two outputs (RFC 5869 with an empty info). */
function hkdf2(chainingKey: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array] {
  const temp = hmac(chainingKey, ikm)
  const one = hmac(temp, Uint8Array.of(1))
  return [one, hmac(temp, one, Uint8Array.of(2))]
}

/**
 * The XX state machine. Call, in order, for the initiator: `writeMessage` (1),
 * `readMessage` (2), `writeMessage` (3); for the responder: `readMessage` (1),
 * `writeMessage` (2), `readMessage` (3). Then `split()`. A call out of turn, or a malformed
 * message, throws `HandshakeError`; after a throw the state is unusable.
 */
export class XXHandshake {
  private h: Uint8Array
  private ck: Uint8Array
  private k: CipherState | undefined
  private step = 0
  private failed = false
  private readonly e: DhKeyPair
  private re: Uint8Array | undefined
  private rs: Uint8Array | undefined

  constructor(private readonly init: HandshakeInit) {
    const name = new TextEncoder().encode(NOISE_PROTOCOL_NAME)
    this.h = name.byteLength === HASH_BYTES ? name : sha256(name)
    this.ck = this.h
    this.e = init.ephemeralKey ?? dhKeyPair()
    this.mixHash(init.prologue)
  }

  /** The peer's static X25519 key, known once message 2 (initiator) or 3 (responder) is read. */
  get remoteStaticKey(): Uint8Array | undefined {
    return this.rs
  }

  /** True once all three messages are written or read. */
  get complete(): boolean {
    return this.step === 3
  }

  /** Writes our next message with `payload`; throws when it is not our turn. */
  writeMessage(payload: Uint8Array): Uint8Array {
    this.turn(true)
    const parts: Uint8Array[] = []
    try {
      if (this.step === 0) {
        parts.push(this.e.publicKey)
        this.mixHash(this.e.publicKey)
      } else if (this.step === 1) {
        parts.push(this.e.publicKey)
        this.mixHash(this.e.publicKey)
        this.mixKey(dh(this.e.privateKey, this.re!))
        parts.push(this.encryptAndHash(this.init.staticKey.publicKey))
        this.mixKey(dh(this.init.staticKey.privateKey, this.re!))
      } else {
        parts.push(this.encryptAndHash(this.init.staticKey.publicKey))
        this.mixKey(dh(this.init.staticKey.privateKey, this.re!))
      }
      parts.push(this.encryptAndHash(payload))
    } catch (err) {
      this.failed = true
      throw err
    }
    this.step++
    const message = Buffer.concat(parts)
    if (message.byteLength > MAX_MESSAGE) {
      this.failed = true
      throw new HandshakeError(`noise handshake payload too large (${message.byteLength} bytes)`)
    }
    return message
  }

  /** Reads the peer's next message and returns its payload; throws `HandshakeError` when malformed. */
  readMessage(message: Uint8Array): Uint8Array {
    this.turn(false)
    try {
      let at = 0
      const take = (n: number, what: string): Uint8Array => {
        if (message.byteLength - at < n) {
          throw new HandshakeError(`noise handshake message ${this.step + 1} truncated (no room for ${what})`)
        }
        const out = message.subarray(at, at + n)
        at += n
        return out
      }
      if (this.step === 0) {
        this.re = new Uint8Array(take(DH_BYTES, 'ephemeral key'))
        this.mixHash(this.re)
      } else if (this.step === 1) {
        this.re = new Uint8Array(take(DH_BYTES, 'ephemeral key'))
        this.mixHash(this.re)
        this.mixKey(dh(this.e.privateKey, this.re))
        this.rs = this.decryptAndHash(take(DH_BYTES + TAG_BYTES, 'static key'))
        this.mixKey(dh(this.e.privateKey, this.rs))
      } else {
        this.rs = this.decryptAndHash(take(DH_BYTES + TAG_BYTES, 'static key'))
        this.mixKey(dh(this.e.privateKey, this.rs))
      }
      const payload = this.decryptAndHash(message.subarray(at))
      this.step++
      return payload
    } catch (err) {
      this.failed = true
      throw err instanceof HandshakeError ? err : new HandshakeError('noise handshake failed', { cause: err })
    }
  }

  /** The transport cipher states; only once the handshake is complete. */
  split(): SplitResult {
    if (!this.complete || this.failed) throw new HandshakeError('noise handshake not complete')
    const [k1, k2] = hkdf2(this.ck, new Uint8Array(0))
    const c1 = new CipherState(this.init.aead, k1)
    const c2 = new CipherState(this.init.aead, k2)
    return this.init.initiator
      ? { send: c1, receive: c2, handshakeHash: this.h }
      : { send: c2, receive: c1, handshakeHash: this.h }
  }

  private turn(writing: boolean): void {
    if (this.failed) throw new HandshakeError('noise handshake already failed')
    if (this.step >= 3) throw new HandshakeError('noise handshake already complete')
    // The initiator writes at steps 0 and 2, the responder at step 1.
    const ours = (this.step % 2 === 0) === this.init.initiator
    if (ours !== writing) {
      throw new HandshakeError(
        `noise handshake: not our turn to ${writing ? 'write' : 'read'} (message ${this.step + 1})`,
      )
    }
  }

  private mixHash(data: Uint8Array): void {
    this.h = sha256(this.h, data)
  }

  private mixKey(ikm: Uint8Array): void {
    const [ck, k] = hkdf2(this.ck, ikm)
    this.ck = ck
    this.k = new CipherState(this.init.aead, k)
  }

  private encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const out = this.k === undefined ? plaintext : this.k.encrypt(plaintext, this.h)
    this.mixHash(out)
    return out
  }

  private decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    let out: Uint8Array
    if (this.k === undefined) {
      out = new Uint8Array(ciphertext)
    } else {
      const pieces = this.k.decrypt(ciphertext, ciphertext.byteLength, this.h)
      out = pieces.length === 1 ? new Uint8Array(pieces[0]!) : Buffer.concat(pieces)
    }
    this.mixHash(ciphertext)
    return out
  }
}
