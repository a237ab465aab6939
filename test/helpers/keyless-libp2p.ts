/**
 * A keyless libp2p node for hostile-peer tests: a plain libp2p node on a target's network
 * (fresh Ed25519 identity, loopback TCP, no bootstrap, mDNS or DHT) that holds no cluster
 * key and speaks whatever a test writes by hand.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { CipherChoice } from '../../src/transport/encrypters.js'
import { buildLibp2p, type PlexusLibp2p } from '../../src/transport/libp2p.js'

/**
 * Starts a keyless libp2p node on `network`, listening on a loopback TCP port (`cipher`: the
 * AEAD it prefers, as `NodeOptions.cipher`).
 */
export async function keylessLibp2p(network: string, cipher?: CipherChoice): Promise<PlexusLibp2p> {
  return buildLibp2p({
    network,
    cipher,
    privateKey: await generateKeyPair('Ed25519'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: [],
    mdns: false,
    dht: false,
  })
}
