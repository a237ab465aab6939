/**
 * The connection encrypters a node offers, in order of preference.
 *
 * Both are Plexus's own noise (`transport/noise/`: the XX handshake over X25519 and SHA-256,
 * each side's libp2p identity signed into it), differing only in the AEAD:
 *
 * - `/plexus/noise-aes256gcm/1.0.0`: AES-256-GCM. Offered first when the CPU has AES
 *   instructions, where it is about twice as fast as ChaCha20-Poly1305 (every link block is
 *   encrypted once per receiving peer, so a publisher fanning out to five subscribers spends
 *   a fifth of its CPU here). Its handshake hashes a prologue naming the suite, so the two
 *   ends of a handshake agree on it or the handshake fails; it never mixes with `/noise`.
 *   Bytes on the wire are those of earlier Plexus nodes (built on `@chainsafe/libp2p-noise`).
 * - `/noise`: ChaCha20-Poly1305, the libp2p noise spec. Always offered, so any libp2p node,
 *   and a Plexus node without AES instructions, still connects.
 *
 * multistream-select takes the first protocol the dialer proposes that the listener has.
 * A node without AES instructions does not register the AES protocol at all (software AES
 * is slower than ChaCha20 and harder to make constant-time), so its peers fall back.
 */
import { readFileSync } from 'node:fs'
import type { ConnectionEncrypter } from '@libp2p/interface'
import { NOISE_AES_GCM_PROTOCOL, NOISE_PROTOCOL } from '../constants.js'
import { type NoiseComponents, plexusNoise } from './noise/index.js'

/** Which AEAD a node prefers for its connections (`NodeOptions.cipher`). */
export type CipherChoice = 'auto' | 'aes-256-gcm' | 'chacha20-poly1305'
/** Accepted values of `NodeOptions.cipher`, the first being the default. */
export const CIPHER_CHOICES: readonly CipherChoice[] = ['auto', 'aes-256-gcm', 'chacha20-poly1305']

/** Hashed into every AES-256-GCM handshake: binds the suite to the session keys. */
const AES_GCM_PROLOGUE = new TextEncoder().encode('plexus noise XX 25519 AES-256-GCM SHA256')

type EncrypterFactory = (components: NoiseComponents) => ConnectionEncrypter

/** The encrypters to register, most preferred first (see the module doc). */
export function connectionEncrypters(choice: CipherChoice): EncrypterFactory[] {
  const standard = plexusNoise({ protocol: NOISE_PROTOCOL, aead: 'chacha20-poly1305' })
  const aes = choice === 'aes-256-gcm' || (choice === 'auto' && hasAesInstructions())
  if (!aes) return [standard]
  return [
    plexusNoise({ protocol: NOISE_AES_GCM_PROTOCOL, aead: 'aes-256-gcm', prologue: AES_GCM_PROLOGUE }),
    standard,
  ]
}

let aesInstructions: boolean | undefined

/** Whether this machine's CPU has AES instructions (read once). */
export function hasAesInstructions(): boolean {
  if (aesInstructions === undefined) {
    let cpuinfo: string | undefined
    if (process.platform === 'linux') {
      try {
        cpuinfo = readFileSync('/proc/cpuinfo', 'latin1')
      } catch {
        // Unreadable (sandboxes): decide by architecture alone.
      }
    }
    aesInstructions = aesFromCpu(process.arch, cpuinfo)
  }
  return aesInstructions
}

/**
 * Decides from the architecture and, on Linux, `/proc/cpuinfo` (its `flags` line on x86,
 * `Features` on Arm) whether the CPU has AES instructions. Without `cpuinfo`: x64 and arm64
 * machines that run Node 22 have them in practice (all x64 since ~2011, Apple silicon,
 * server Arm); other architectures are assumed not to. Exported for tests.
 */
export function aesFromCpu(arch: string, cpuinfo: string | undefined): boolean {
  if (cpuinfo !== undefined) {
    const line = /^(?:flags|Features)\s*:(.*)$/m.exec(cpuinfo)
    if (line !== null) return line[1]!.split(/\s+/).includes('aes')
  }
  return arch === 'x64' || arch === 'arm64'
}
