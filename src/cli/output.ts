/**
 * How the CLI reports failures: exactly one line on stderr (`plexus: <ErrorName>: message`),
 * never a stack trace, and an exit code that tells scripts what kind of failure it was.
 */

/**
 * Exit codes of every `plexus` command. Scripts may rely on them:
 * 0 success; 1 any other failure (including `RemoteError`, `OverloadedError`, `MemberLostError`);
 * 2 bad usage (unknown command or flag, bad flag value, unreadable key file: `InvalidArgumentError`);
 * 3 no local node to attach to (`RelayUnavailableError`); 4 `TimeoutError`; 5 `NoMembersError`;
 * 130 interrupted by Ctrl-C (SIGINT) in a client command.
 */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  relayUnavailable: 3,
  timeout: 4,
  noMembers: 5,
  interrupted: 130,
} as const

/** Longest message printed (characters); longer ones are cut with an ellipsis. */
const MAX_MESSAGE = 2000

/**
 * An error raised by the CLI itself about its input; printed as `InvalidArgumentError`
 * (the library's name for bad input) and exits with `EXIT.usage`.
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'InvalidArgumentError'
  }
}

/** The class name of a thrown value as shown to users (`Error` for non-errors). */
export function errorNameOf(err: unknown): string {
  if (err instanceof Error && typeof err.name === 'string' && err.name !== '') return err.name
  return 'Error'
}

/** The message of any thrown value squeezed onto one bounded line. */
export function oneLine(text: string): string {
  const s = text
    .replace(/\s*\n\s*/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
  return s.length > MAX_MESSAGE ? `${s.slice(0, MAX_MESSAGE)}…` : s
}

/** The one stderr line describing `err` (without the trailing newline). */
export function formatError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  return `plexus: ${errorNameOf(err)}: ${oneLine(message) || '(no message)'}`
}

/** The exit code for a failure, chosen by the error's name. */
export function exitCodeFor(err: unknown): number {
  switch (errorNameOf(err)) {
    case 'InvalidArgumentError':
      return EXIT.usage
    case 'RelayUnavailableError':
      return EXIT.relayUnavailable
    case 'TimeoutError':
      return EXIT.timeout
    case 'NoMembersError':
      return EXIT.noMembers
    default:
      return EXIT.failure
  }
}

/** Writes `text` to a stream and resolves once it is flushed (or the stream is gone). */
export function writeOut(stream: NodeJS.WritableStream, text: string | Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    try {
      stream.write(text, () => resolve())
    } catch {
      resolve()
    }
  })
}

/** Prints `err` as one stderr line and exits with its code, after stderr is flushed. */
export async function fail(err: unknown, code = exitCodeFor(err)): Promise<never> {
  await writeOut(process.stderr, `${formatError(err)}\n`)
  process.exit(code)
}
