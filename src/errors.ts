/**
 * Error classes of the public API. Tell them apart by `err.name` (the relay carries the
 * name across the wire, so a thin client throws the same class). Each carries a clear
 * message and, where one exists, the underlying `cause`.
 */

/** Base class of every error Plexus throws on purpose. */
export class PlexusError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
  }
}

/** An argument (or CLI flag, or relay field) is missing or malformed; the message names it. */
export class InvalidArgumentError extends PlexusError {}

/** The operation did not complete before its deadline. */
export class TimeoutError extends PlexusError {}

/** No proven, reachable member of the addressed cluster exists right now. */
export class NoMembersError extends PlexusError {}

/** The member's handler threw or rejected; `message` carries its message. */
export class RemoteError extends PlexusError {}

/** The member's limits (concurrent requests, queued bytes) are full; nothing was run. */
export class OverloadedError extends PlexusError {}

/** The caller lacks a key it needs (cluster key, network key, relay permission). */
export class UnauthorizedError extends PlexusError {}

/** The named durable stream does not exist. */
export class StreamNotFoundError extends PlexusError {}

/**
 * The named durable consumer of a stream does not exist (never committed a position and not
 * running), or was deleted (`streams.deleteConsumer`) while this consumer ran under its name.
 */
export class ConsumerNotFoundError extends PlexusError {}

/** The tunnel was closed, by either side or by the death of its peer. */
export class TunnelClosedError extends PlexusError {}

/** The cluster has fewer proven members than the stream's `replicas`. */
export class NotEnoughReplicasError extends PlexusError {}

/**
 * The member died or its connection closed after the request was written to it, so the
 * request may or may not have run (at-most-once). Pass `retry: true` to resend it.
 */
export class MemberLostError extends PlexusError {}

/**
 * The outcome is unknown: the leader of the stream partition a publish went to lost its
 * leadership (or stopped leading it) after the message was appended and before it was
 * committed, so the message may or may not be stored; a later leader decides. A publish with
 * a `msgId` is retried automatically in that case (the stream's duplicate window makes it
 * safe) and fails with this class only when it has none; the caller may publish it again if
 * a duplicate is acceptable. Not `RemoteError`: no handler threw.
 */
export class LeadershipLostError extends PlexusError {}

/** The node (or relay client) was stopped or the call was aborted by its `signal`. */
export class AbortedError extends PlexusError {}

/**
 * The node's `dataDir` is in use by another running node (in another process, or in this
 * one); the message names the directory and the holder's pid. Not sent over the wire.
 */
export class DataDirInUseError extends PlexusError {}

/**
 * A conditional write (`expectedRevision`, `kv.update`) was refused: the key's latest revision
 * is not the one expected. Nothing was stored. `current` is the revision the leader found
 * (-1: the key has none), read from the message, so it survives the wire; undefined when the
 * leader could not tell (its key index dropped keys for its bound).
 */
export class WrongRevisionError extends PlexusError {
  /** The key's revision when the write was refused (-1: absent; undefined: unknown). */
  get current(): number | undefined {
    const m = /current revision (absent|\d+)/.exec(this.message)
    if (m === null) return undefined
    return m[1] === 'absent' ? -1 : Number(m[1])
  }
}

/** `kv.create` was refused: the key has a value. Nothing was stored. */
export class KeyExistsError extends PlexusError {}

/**
 * No such message: `streams.get` at an offset not stored (never written, trimmed by
 * retention or a purge, or dropped by compaction), `streams.last` of a key without a live
 * message.
 */
export class MessageNotFoundError extends PlexusError {}

/**
 * A noise handshake or an encrypted connection failed: a malformed, truncated or oversized
 * message, a payload whose signature does not verify, a peer other than the one dialled, or
 * a message that does not decrypt. The connection is closed; nothing of it was used.
 */
export class HandshakeError extends PlexusError {}

/** Every error class by name, to rebuild an error that crossed the wire. */
export const errorClasses = {
  PlexusError,
  InvalidArgumentError,
  TimeoutError,
  NoMembersError,
  RemoteError,
  OverloadedError,
  UnauthorizedError,
  StreamNotFoundError,
  ConsumerNotFoundError,
  TunnelClosedError,
  NotEnoughReplicasError,
  MemberLostError,
  LeadershipLostError,
  AbortedError,
  WrongRevisionError,
  KeyExistsError,
  MessageNotFoundError,
} as const

/** Name of an error class that may cross the wire. */
export type ErrorName = keyof typeof errorClasses

/**
 * Rebuilds an error received from a peer or the relay: the class named by `name` when
 * known, else a `RemoteError`. Never throws.
 */
export function errorFromWire(name: string, message: string): PlexusError {
  const Cls = (errorClasses as Record<string, typeof PlexusError>)[name] ?? RemoteError
  return new Cls(message)
}

/** The wire name of an error: its class name when it is one of ours, else `RemoteError`. */
export function errorName(err: unknown): ErrorName {
  if (err instanceof PlexusError && err.name in errorClasses) return err.name as ErrorName
  return 'RemoteError'
}

/** A human message for any thrown value. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}
