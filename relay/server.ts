/**
 * Placeholder relay server; the real one is being written. (Lead: replaced by relay helper.)
 */
import type { PlexusNode } from '../src/types.js'

export interface RelayServer {
  address: string
  close(): Promise<void>
}

export async function startRelay(_node: PlexusNode, opts: { host: string; port: number }): Promise<RelayServer> {
  return { address: `${opts.host}:${opts.port}`, close: async () => {} }
}
