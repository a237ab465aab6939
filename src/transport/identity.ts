/**
 * Node identity: an Ed25519 key kept in `<dataDir>/identity.key` (libp2p protobuf form),
 * written atomically (temp file, fsync, rename) so a crash never leaves a torn key. The
 * same dataDir gives the same peer id after a restart.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { InvalidArgumentError } from '../errors.js'
import { atomicWriteFile } from '../log/fsutil.js'

/** File name of the identity inside dataDir. */
export const IDENTITY_FILE = 'identity.key'

/** Loads the identity from `dataDir`, creating it on first use; a fresh key when no dataDir. */
export async function loadIdentity(dataDir: string | undefined): Promise<PrivateKey> {
  if (dataDir === undefined) return generateKeyPair('Ed25519')
  await mkdir(dataDir, { recursive: true })
  const file = join(dataDir, IDENTITY_FILE)
  try {
    const bytes = await readFile(file)
    try {
      return privateKeyFromProtobuf(new Uint8Array(bytes))
    } catch (err) {
      throw new InvalidArgumentError(`dataDir: ${file} is not a valid identity key`, { cause: err })
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const key = await generateKeyPair('Ed25519')
  await atomicWriteFile(dataDir, IDENTITY_FILE, privateKeyToProtobuf(key))
  return key
}
