/**
 * One error hierarchy for the whole toolkit. Every error a user can see is an OpsError: it names what
 * failed and on which object, carries one concrete next step, and maps to a documented exit code
 * (docs/exit-codes.md). Anything else that escapes is a bug and exits 1.
 */

export const ExitCode = {
  ok: 0,
  unexpected: 1,
  usage: 2,
  partial: 3,
  configInvalid: 10,
  repositoryMissing: 11,
  locked: 12,
  permission: 13,
  unavailable: 14,
  integrity: 15,
  targetNotAvailable: 16,
  interrupted: 130,
} as const
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

export interface OpsErrorOptions {
  /** Stable machine-readable code, e.g. `ENGINE_NOT_A_WAL`. */
  code: string
  exit: ExitCodeValue
  /** The file, object, URL or space the error is about. */
  subject?: string
  /** One concrete next step (printed as "Try this:"). */
  suggestion?: string
  cause?: unknown
  /** Extra structured facts for --json output. */
  details?: Record<string, unknown>
}

/**
 * Not a subclass of oclif's CLIError, so that lib code (and `backup full|incremental`, which run
 * without oclif: src/backup-fast-path.ts) does not load @oclif/core, about 60 ms of start-up. oclif
 * reads what it needs by duck typing: the exit code from `oclif.exit`, and `skipOclifErrorHandling`.
 */
export class OpsError extends Error {
  readonly code: string
  readonly exitCode: ExitCodeValue
  readonly suggestions?: string[]
  readonly subject?: string
  readonly details?: Record<string, unknown>
  /** Where oclif's error handler looks for the exit code. */
  readonly oclif: {exit: ExitCodeValue}
  /** Set once the error has been printed, so that oclif does not print it again. */
  skipOclifErrorHandling?: boolean

  constructor(message: string, options: OpsErrorOptions) {
    super(message)
    this.name = new.target.name
    this.code = options.code
    this.exitCode = options.exit
    this.oclif = {exit: options.exit}
    this.suggestions = options.suggestion ? [options.suggestion] : undefined
    this.subject = options.subject
    this.details = options.details
    if (options.cause !== undefined) this.cause = options.cause
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      exitCode: this.exitCode,
      subject: this.subject,
      suggestions: this.suggestions ?? [],
      ...(this.details ? {details: this.details} : {}),
    }
  }
}

type Sub = Omit<OpsErrorOptions, 'exit'> & {exit?: ExitCodeValue}

/** Wrong flags, arguments or combinations of them. */
export class UsageError extends OpsError {
  constructor(message: string, o: Sub) {
    super(message, {exit: ExitCode.usage, ...o})
  }
}

/** A data directory, WAL file or space that cannot be read or is not what it should be. */
export class EngineError extends OpsError {
  constructor(message: string, o: Sub) {
    super(message, {exit: ExitCode.configInvalid, ...o})
  }
}

/** Something is held by someone else (a data-directory lock, a repository lock). */
export class LockedError extends OpsError {
  constructor(message: string, o: Sub) {
    super(message, {exit: ExitCode.locked, ...o})
  }
}

/** The HTTP admin API answered with an error, or could not be reached. */
export class AdminApiError extends OpsError {
  readonly status?: number
  readonly apiCode?: string
  constructor(message: string, o: Sub & {status?: number; apiCode?: string}) {
    super(message, {exit: ExitCode.unavailable, ...o})
    this.status = o.status
    this.apiCode = o.apiCode
  }

  override toJSON(): Record<string, unknown> {
    return {...super.toJSON(), status: this.status, apiCode: this.apiCode}
  }
}

/** Bytes are not what a checksum or manifest says they should be. */
export class IntegrityError extends OpsError {
  constructor(message: string, o: Sub) {
    super(message, {exit: ExitCode.integrity, ...o})
  }
}

/** Interrupted by SIGINT/SIGTERM or an abort signal. */
export class InterruptedError extends OpsError {
  constructor(message = 'interrupted') {
    super(message, {code: 'INTERRUPTED', exit: ExitCode.interrupted})
  }
}

/** Describes a Node.js system error (ENOENT, EACCES, ...) on a path as an OpsError. */
export function fsError(err: unknown, action: string, path: string): OpsError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOENT') {
    return new EngineError(`${action}: ${path} does not exist`, {
      code: 'PATH_NOT_FOUND',
      subject: path,
      suggestion: 'Check the path (or ENGRAM_DATA_DIR) and try again.',
      cause: err,
    })
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new OpsError(`${action}: permission denied on ${path}`, {
      code: 'PERMISSION_DENIED',
      exit: ExitCode.permission,
      subject: path,
      suggestion: 'Run as the user that owns the data (often `engram`), or fix the permissions.',
      cause: err,
    })
  }
  if (code === 'ENOTDIR') {
    return new EngineError(`${action}: ${path} is not a directory`, {
      code: 'NOT_A_DIRECTORY',
      subject: path,
      suggestion: 'Pass the Engram data root (the directory holding one folder per memory space).',
      cause: err,
    })
  }
  return new OpsError(`${action}: ${path}: ${(err as Error)?.message ?? String(err)}`, {
    code: 'IO_ERROR',
    exit: ExitCode.unexpected,
    subject: path,
    suggestion: 'Check the disk and the path, then retry; rerun with --verbose for details.',
    cause: err,
  })
}

/** The one place where an unknown thrown value becomes an OpsError. */
export function toOpsError(err: unknown): OpsError {
  if (err instanceof OpsError) return err
  const oclif = (err as {oclif?: {exit?: number}} | undefined)?.oclif
  if (err instanceof Error && oclif && typeof oclif === 'object') {
    // oclif's own parse errors (unknown flag, missing or repeated value, a value not among the
    // options), recognised by the `oclif` property that all of oclif's errors carry: usage errors,
    // exit 2. Their own `oclif.exit` is not used: oclif fills it from package.json's exitCodes, whose
    // `default` (1) it gives to several of them. Only oclif's exit() (EEXIT) keeps its code.
    const exit = ((err as {code?: string}).code === 'EEXIT' ? (oclif.exit ?? ExitCode.unexpected) : ExitCode.usage) as ExitCodeValue
    return new OpsError(err.message, {code: 'USAGE', exit, cause: err, suggestion: 'See --help for the flags this command takes.'})
  }
  // An abort rejects some of Node's APIs (timers/promises, streams) with an AbortError whose cause is
  // the abort's reason: the InterruptedError naming the signal, or the failure that stopped the other
  // work (a backup's failed archive stops the rest), whose exit code is then the one that counts.
  if ((err as Error)?.name === 'AbortError') return (err as Error).cause instanceof OpsError ? ((err as Error).cause as OpsError) : new InterruptedError()
  const message = err instanceof Error ? err.message : String(err)
  return new OpsError(`unexpected error: ${message}`, {
    code: 'UNEXPECTED',
    exit: ExitCode.unexpected,
    cause: err,
    suggestion: 'Rerun with --verbose and report the stack trace.',
  })
}

/**
 * How an error reads on stderr without --json: one unwrapped line per fact (grep in cron mail), the
 * next step, and with --verbose the stack of every cause.
 */
export function errorText(e: OpsError, verbose: boolean): string {
  const lines = [`Error: ${e.message} [${e.code}]`]
  if (e.suggestions?.length) lines.push(`Try this: ${e.suggestions[0]}`)
  if (verbose) for (let c: unknown = e; c; c = (c as Error).cause) lines.push((c as Error).stack ?? String(c))
  return `${lines.join('\n')}\n`
}

/** The JSON printed for an error under --json. */
export const errorJson = (e: OpsError): {error: Record<string, unknown>} => ({error: e.toJSON()})

/** Marks a run that completed but found problems (damage, skipped input): exit 3, unless already failing. */
export function markPartial(): void {
  if (!process.exitCode) process.exitCode = ExitCode.partial
}
