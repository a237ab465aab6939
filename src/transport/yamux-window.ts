/**
 * Yamux window updates in batches. `@libp2p/yamux` answers every data frame it receives
 * with a window update (a 12-byte frame, encrypted and written on its own: about 61 extra
 * socket writes per MB received on our links). Like go-yamux, we send the update only once
 * at least half of the receive window has been consumed. Flow control is unchanged: the
 * sender can still use whatever the receiver advertised, and it can never stall, because
 * by the time its window is used up the receiver's unacknowledged half has triggered an
 * update. Handshake (SYN/ACK) and resume-after-pause updates take the original path.
 *
 * Applied once per process, on import, to the stream class `@libp2p/yamux/stream` exports.
 */
import { StreamState, YamuxStream } from '@libp2p/yamux/stream'

interface WindowFields {
  state: number
  recvWindow: number
  recvWindowCapacity: number
  sendWindowUpdate(): void
}

const proto = YamuxStream.prototype as unknown as WindowFields & { __plexusBatchedUpdates?: boolean }

if (!proto.__plexusBatchedUpdates) {
  const original = proto.sendWindowUpdate
  proto.sendWindowUpdate = function (this: WindowFields): void {
    if (this.state === StreamState.Established && this.recvWindowCapacity > this.recvWindow / 2) return
    original.call(this)
  }
  proto.__plexusBatchedUpdates = true
}
