/**
 * Byte credit on the relay hop: the one flow-control mechanism of the relay protocol,
 * shared by tunnels (TUNNEL_DATA / TUNNEL_CREDIT) and stream consumers (CONSUME_MESSAGE /
 * CONSUME_CREDIT). See docs/relay-protocol.md, "Tunnels" → "Flow control".
 *
 * - The receiver grants the sender a window of bytes when the flow opens.
 * - The sender sends a unit of `n` bytes only while its credit covers `n` and subtracts
 *   `n` (`SendCredit`).
 * - The receiver returns credit as its application consumes units, in batches: when a
 *   quarter of the window is pending, or when nothing else waits to be consumed
 *   (`CreditReturn`).
 */

/** Credit the other side granted us: send only within it. */
export class SendCredit {
  private wake: (() => void) | undefined

  constructor(
    /** Bytes we may still send. */
    public available: number,
  ) {}

  /** The other side returned `bytes` of credit. */
  grant(bytes: number): void {
    this.available += bytes
    this.kick()
  }

  /** Subtracts what a unit just sent used. */
  take(bytes: number): void {
    this.available -= bytes
  }

  /**
   * Resolves true once the credit covers `bytes` (at least one byte of credit is needed even
   * for `bytes` ≤ 0 when `atLeastOne`), or false as soon as `stopped()` is true. Wakes on
   * `grant` and `kick`; one waiter at a time.
   */
  async acquire(bytes: number, stopped: () => boolean, atLeastOne = false): Promise<boolean> {
    const need = atLeastOne ? Math.max(1, bytes) : bytes
    while (this.available < need && !stopped()) {
      await new Promise<void>((resolve) => {
        this.wake = resolve
      })
    }
    return !stopped()
  }

  /** Wakes the waiter (after `stopped()` became true, so it returns). */
  kick(): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }
}

/** Credit we owe the other side for units our application consumed, returned in batches. */
export class CreditReturn {
  private owed = 0

  constructor(
    /** The window we granted. */
    private readonly window: number,
    /** Sends a credit frame returning `bytes`. */
    private readonly send: (bytes: number) => void,
  ) {}

  /** Bytes consumed but not yet returned. */
  get pending(): number {
    return this.owed
  }

  /**
   * `bytes` more were consumed; `idle` is true when nothing else waits to be consumed.
   * Returns the credit when a quarter of the window is owed or when idle.
   */
  consumed(bytes: number, idle: boolean): void {
    this.owed += bytes
    if (this.owed > 0 && (this.owed >= this.window / 4 || idle)) {
      const n = this.owed
      this.owed = 0
      this.send(n)
    }
  }
}
