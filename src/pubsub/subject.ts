/**
 * Topics and patterns, as in NATS: dot-separated non-empty tokens; in patterns `*` matches
 * exactly one token and `>` (last token only) matches one or more trailing tokens.
 * Publishing to a pattern is refused. `SubjectIndex` finds every pattern matching a topic
 * in time proportional to the topic's length, not the number of patterns.
 */
import { MAX_TOPIC_LENGTH } from '../constants.js'
import { InvalidArgumentError } from '../errors.js'
import { describe } from '../util/validate.js'

/** Longest topic or pattern accepted (characters; `constants.ts`). */
export { MAX_TOPIC_LENGTH }

const BAD_CHARS = /[\s\0]/

function tokens(value: unknown, field: string, allowWildcards: boolean): string[] {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_TOPIC_LENGTH) {
    throw new InvalidArgumentError(
      `${field} must be a non-empty string of at most ${MAX_TOPIC_LENGTH} characters, got ${describe(value)}`,
    )
  }
  if (BAD_CHARS.test(value))
    throw new InvalidArgumentError(`${field} must not contain whitespace: ${describe(value)}`)
  const toks = value.split('.')
  toks.forEach((t, i) => {
    if (t === '') throw new InvalidArgumentError(`${field} has an empty token: ${describe(value)}`)
    if (t === '*' || t === '>') {
      if (!allowWildcards) {
        throw new InvalidArgumentError(
          `${field} must not contain wildcards (* or >) when publishing: ${describe(value)}`,
        )
      }
      if (t === '>' && i !== toks.length - 1) {
        throw new InvalidArgumentError(`${field}: '>' may only be the last token: ${describe(value)}`)
      }
    } else if (t.includes('*') || t.includes('>')) {
      throw new InvalidArgumentError(`${field}: wildcards must be whole tokens: ${describe(value)}`)
    }
  })
  return toks
}

/** Recently validated topics (publishers reuse a few topics at high rates). */
let validTopics = new Set<string>()

/** Validates a topic to publish to (no wildcards); returns it. */
export function checkTopic(value: unknown, field = 'topic'): string {
  if (typeof value === 'string' && validTopics.has(value)) return value
  tokens(value, field, false)
  if (validTopics.size >= 1024) validTopics = new Set()
  validTopics.add(value as string)
  return value as string
}

/** Validates a subscription pattern; returns it. */
export function checkPattern(value: unknown, field = 'pattern'): string {
  tokens(value, field, true)
  return value as string
}

/** True when `pattern` matches `topic` (both assumed valid). */
export function matches(pattern: string, topic: string): boolean {
  const p = pattern.split('.')
  const t = topic.split('.')
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return t.length > i
    if (i >= t.length) return false
    if (p[i] !== '*' && p[i] !== t[i]) return false
  }
  return p.length === t.length
}

/**
 * True when every topic `inner` matches is matched by `outer` too (both valid patterns): the
 * pattern `outer` covers the pattern `inner`.
 */
export function patternCovers(outer: string, inner: string): boolean {
  const p = outer.split('.')
  const s = inner.split('.')
  for (let i = 0; ; i++) {
    const a = p[i]
    const b = s[i]
    if (a === undefined || b === undefined) return a === b
    if (a === '>') return true
    if (b === '>') return false
    if (a === '*') continue
    if (b === '*' || a !== b) return false
  }
}

/** True when some topic matches both patterns (both valid). */
export function patternsOverlap(a: string, b: string): boolean {
  const p = a.split('.')
  const q = b.split('.')
  for (let i = 0; ; i++) {
    const x = p[i]
    const y = q[i]
    if (x === undefined || y === undefined) return x === y
    if (x === '>' || y === '>') return true
    if (x !== '*' && y !== '*' && x !== y) return false
  }
}

interface TrieNode<T> {
  children: Map<string, TrieNode<T>>
  star: TrieNode<T> | undefined
  /** Values whose pattern ends here. */
  here: Set<T>
  /** Values whose pattern ends with `>` here. */
  rest: Set<T>
}

function node<T>(): TrieNode<T> {
  return { children: new Map(), star: undefined, here: new Set(), rest: new Set() }
}

/** Patterns → values, with lookup of every value whose pattern matches a topic. */
export class SubjectIndex<T> {
  private readonly root = node<T>()
  private count = 0

  get size(): number {
    return this.count
  }

  add(pattern: string, value: T): void {
    let n = this.root
    const toks = pattern.split('.')
    for (let i = 0; i < toks.length; i++) {
      const t = toks[i]!
      if (t === '>') {
        if (!n.rest.has(value)) this.count++
        n.rest.add(value)
        return
      }
      if (t === '*') n = n.star ??= node()
      else {
        let c = n.children.get(t)
        if (!c) n.children.set(t, (c = node()))
        n = c
      }
    }
    if (!n.here.has(value)) this.count++
    n.here.add(value)
  }

  delete(pattern: string, value: T): void {
    const path: Array<[TrieNode<T>, string]> = []
    let n: TrieNode<T> | undefined = this.root
    const toks = pattern.split('.')
    for (const t of toks) {
      if (t === '>') {
        if (n.rest.delete(value)) this.count--
        this.prune(path, n)
        return
      }
      path.push([n, t])
      n = t === '*' ? n.star : n.children.get(t)
      if (!n) return
    }
    if (n.here.delete(value)) this.count--
    this.prune(path, n)
  }

  private prune(path: Array<[TrieNode<T>, string]>, leaf: TrieNode<T>): void {
    let n = leaf
    for (let i = path.length - 1; i >= 0; i--) {
      if (n.here.size || n.rest.size || n.children.size || n.star) return
      const [parent, t] = path[i]!
      if (t === '*') parent.star = undefined
      else parent.children.delete(t)
      n = parent
    }
  }

  /** Every value with a pattern matching `topic` (each once). */
  match(topic: string, out: Set<T> = new Set()): Set<T> {
    // An empty index (e.g. no durable stream on a publish) matches nothing: skip the split.
    if (this.count === 0) return out
    this.walk(this.root, topic.split('.'), 0, out)
    return out
  }

  private walk(n: TrieNode<T>, toks: string[], i: number, out: Set<T>): void {
    if (i < toks.length) for (const v of n.rest) out.add(v)
    if (i === toks.length) {
      for (const v of n.here) out.add(v)
      return
    }
    const c = n.children.get(toks[i]!)
    if (c) this.walk(c, toks, i + 1, out)
    if (n.star) this.walk(n.star, toks, i + 1, out)
  }
}
