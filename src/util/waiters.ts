/**
 * A set of callers waiting for "something changed" (credit arrived, a queue drained).
 * `wait` resolves at the next `wakeAll`, or rejects with the signal's reason when the
 * signal aborts first. Waiters are woken in the order they started waiting.
 */
export class Waiters {
  private list: Array<() => void> = []

  /** Number of callers waiting. */
  get size(): number {
    return this.list.length
  }

  wait(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason)
      const done = () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      const onAbort = () => {
        this.list = this.list.filter((f) => f !== done)
        reject(signal!.reason)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.list.push(done)
    })
  }

  wakeAll(): void {
    const ws = this.list
    this.list = []
    for (const w of ws) w()
  }
}
