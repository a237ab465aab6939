/**
 * Yamux receive windows: full size at once, updated in batches.
 *
 * `@libp2p/yamux` answers every data frame it receives with a window update (a 12-byte
 * frame, encrypted and written on its own: about 61 extra socket writes per MB received on
 * our links). Like go-yamux, we send the update only once at least half of the receive
 * window has been consumed.
 *
 * It also starts every stream at the protocol's initial 256 KiB window and doubles it only
 * when an update comes within four ping round trips of the previous one; on loopback the
 * measured round trip is 0–1 ms, so the window mostly stays at 256 KiB: a sender may have
 * only that much in flight, and a receiver that waits a few milliseconds for a CPU (several
 * processes on few cores) stalls it. We grow the window to the configured
 * `maxStreamWindowSize` (2 MiB, see `libp2p.ts`) with the first update instead; the read
 * buffer bound (`maxReadBufferLength`, 4 MiB) stays above it.
 *
 * Flow control stays correct: the window only grows through window-update frames, as the
 * protocol allows, and the sender can never stall, because by the time its window is used
 * up the receiver's unacknowledged half has triggered an update. Handshake (SYN/ACK) and
 * resume-after-pause updates take the original path.
 *
 * Applied once per process, on import, to the stream class `@libp2p/yamux/stream` exports.
 */
import { StreamState, YamuxStream } from '@libp2p/yamux/stream'

interface WindowFields {
  state: number
  recvWindow: number
  recvWindowCapacity: number
  maxStreamWindowSize: number
  sendWindowUpdate(): void
}

const proto = YamuxStream.prototype as unknown as WindowFields & { __plexusBatchedUpdates?: boolean }

if (!proto.__plexusBatchedUpdates) {
  const original = proto.sendWindowUpdate
  proto.sendWindowUpdate = function (this: WindowFields): void {
    if (this.state === StreamState.Established) {
      // Grow to the full window with this update; else wait until half of it is used.
      if (this.recvWindow < this.maxStreamWindowSize) this.recvWindow = this.maxStreamWindowSize
      else if (this.recvWindowCapacity > this.recvWindow / 2) return
    }
    original.call(this)
  }
  proto.__plexusBatchedUpdates = true
}
