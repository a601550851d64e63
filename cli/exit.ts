// Exit codes of the crownest client, distinct so scripts can tell what went
// wrong. `run` exits with the command's own code instead (see run.ts).
export const EXIT = {
  ok: 0,
  /** The client itself failed (a local file could not be read or written, a bug). */
  local: 1,
  /** Bad flags or arguments, or no API key to send. */
  usage: 2,
  /** The API answered with an error (`code: message` on stderr). */
  api: 3,
  /** The API could not be reached (connection refused, DNS, reset before an answer). */
  unreachable: 4,
  /** Downloaded bytes do not match the artifact's sha256 or size. */
  integrity: 5,
  /** run: the command hit its timeout (as timeout(1) does). */
  commandTimedOut: 124,
  /** run: the command did not exit normally (killed by a signal, or the agent was lost). */
  commandNoExitCode: 125,
} as const;

/** An error the client reports as `code: message` on stderr, then exits with exitCode. */
export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: number,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export const usageError = (message: string) => new CliError("usage", message, EXIT.usage);
