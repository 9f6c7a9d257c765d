/**
 * One error hierarchy for the whole toolkit. Every error a user can see is an OpsError: it names what
 * failed and on which object, carries one concrete next step, and maps to a documented exit code
 * (docs/exit-codes.md). Anything else that escapes is a bug and exits 1.
 */
import {Errors} from '@oclif/core'

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

export class OpsError extends Errors.CLIError {
  readonly exitCode: ExitCodeValue
  readonly subject?: string
  readonly details?: Record<string, unknown>

  constructor(message: string, options: OpsErrorOptions) {
    super(message, {
      code: options.code,
      exit: options.exit,
      suggestions: options.suggestion ? [options.suggestion] : undefined,
    })
    this.name = new.target.name
    this.exitCode = options.exit
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
  if (err instanceof Errors.CLIError) {
    // oclif's own parse errors (unknown flag, missing argument): usage errors.
    const exit = (err.oclif?.exit ?? ExitCode.usage) as ExitCodeValue
    return new OpsError(err.message, {code: 'USAGE', exit, cause: err, suggestion: 'See --help for the flags this command takes.'})
  }
  if ((err as Error)?.name === 'AbortError') return new InterruptedError()
  const message = err instanceof Error ? err.message : String(err)
  return new OpsError(`unexpected error: ${message}`, {
    code: 'UNEXPECTED',
    exit: ExitCode.unexpected,
    cause: err,
    suggestion: 'Rerun with --verbose and report the stack trace.',
  })
}
