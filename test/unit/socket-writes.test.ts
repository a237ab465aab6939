import type { Connection } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { corkSocketWrites } from '../../src/link/socket-writes.js'

/** Stand-in for @libp2p/tcp's connection class: writes each piece with its own socket.write. */
class FakeTcpConnection {
  readonly events: string[] = []
  readonly socket = {
    cork: () => this.events.push('cork'),
    uncork: () => this.events.push('uncork'),
    write: (piece: string) => this.events.push(`write ${piece}`),
  }
  sendData(data: string[]): { sentBytes: number; canSendMore: boolean } {
    for (const piece of data) this.socket.write(piece)
    return { sentBytes: data.length, canSendMore: true }
  }
}

describe('corkSocketWrites', () => {
  it('corks the socket around each list of pieces, so they leave in one writev', () => {
    const before = new FakeTcpConnection()
    before.sendData(['a', 'b'])
    expect(before.events).toEqual(['write a', 'write b'])

    corkSocketWrites({ maConn: new FakeTcpConnection() } as unknown as Connection)
    const after = new FakeTcpConnection() // the class itself was patched, for every connection
    expect(after.sendData(['len', 'header', 'body', 'tag'])).toEqual({ sentBytes: 4, canSendMore: true })
    expect(after.events).toEqual(['cork', 'write len', 'write header', 'write body', 'write tag', 'uncork'])
  })

  it('leaves connections of another shape alone', () => {
    expect(() => corkSocketWrites({} as unknown as Connection)).not.toThrow()
    expect(() => corkSocketWrites({ maConn: { socket: {} } } as unknown as Connection)).not.toThrow()
  })
})
