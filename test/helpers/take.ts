/** Taking a bounded number of items from an async iterator in tests. */

/**
 * Takes `n` items from `it` (without ending it) within `ms`; fewer when it ends first.
 * Rejects naming how many of `n` `what` arrived when the time runs out.
 */
export async function take<T>(it: AsyncIterator<T>, n: number, ms = 10_000, what = 'messages'): Promise<T[]> {
  const out: T[] = []
  const deadline = Date.now() + ms
  while (out.length < n) {
    let timer: NodeJS.Timeout | undefined
    const next = await Promise.race([
      it.next(),
      new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), Math.max(1, deadline - Date.now()))
      }),
    ])
    clearTimeout(timer)
    if (next === 'timeout') throw new Error(`only ${out.length} of ${n} ${what} within ${ms} ms`)
    if (next.done) break
    out.push(next.value)
  }
  return out
}
