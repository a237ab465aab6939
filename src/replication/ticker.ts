/**
 * One clock per tick length for every Raft driver of the process. Drivers with the same
 * `tickMs` tick in the same timer callback, so the heartbeats of every group this process
 * leads are queued in one event-loop turn and leave in one link write per peer (the link
 * flushes at the end of the turn), instead of one write per group; an idle process also
 * wakes once per tick, not once per group.
 *
 * Ordering: subscribers are called in subscription order; one that throws does not keep the
 * others from ticking (its error is rethrown in a later turn, as an uncaught timer error
 * would be).
 */

interface Clock {
  timer: NodeJS.Timeout
  subs: Set<() => void>
}

const clocks = new Map<number, Clock>()

function fire(clock: Clock): void {
  for (const fn of clock.subs) {
    try {
      fn()
    } catch (err) {
      queueMicrotask(() => {
        throw err
      })
    }
  }
}

/**
 * Calls `fn` every `ms` milliseconds (a positive integer) until the returned function is
 * called, on a timer shared with every other subscriber of the same `ms`. The timer does not
 * keep the process alive (unref), as the drivers' own timers did not.
 */
export function onTick(ms: number, fn: () => void): () => void {
  let clock = clocks.get(ms)
  if (clock === undefined) {
    const c: Clock = { timer: setInterval(() => fire(c), ms), subs: new Set() }
    c.timer.unref()
    clocks.set(ms, c)
    clock = c
  }
  // A wrapper per subscription: the same function subscribed twice ticks twice.
  const sub = () => fn()
  clock.subs.add(sub)
  const own = clock
  return () => {
    if (!own.subs.delete(sub) || own.subs.size > 0) return
    clearInterval(own.timer)
    if (clocks.get(ms) === own) clocks.delete(ms)
  }
}

/** Number of clocks running (tests). */
export function runningClocks(): number {
  return clocks.size
}
