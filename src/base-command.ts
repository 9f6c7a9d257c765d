/**
 * The base of every engram-ops command: `--json` (oclif's enableJsonFlag), `--verbose`, `--quiet`,
 * one mapping from any error to an OpsError with a documented exit code, and a Reporter on stderr.
 */
import {Command, Flags, settings} from '@oclif/core'

import {ExitCode, type OpsError, toOpsError} from './lib/errors.js'
import {createReporter, type Reporter} from './lib/ui/reporter.js'

export abstract class OpsCommand extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    verbose: Flags.boolean({description: 'Show stack traces and extra detail on errors.', helpGroup: 'GLOBAL'}),
    quiet: Flags.boolean({description: 'Print only warnings, errors and the result.', helpGroup: 'GLOBAL'}),
  }

  private _reporter?: Reporter
  private readonly abort = new AbortController()

  /** Aborted on SIGINT/SIGTERM; pass it to lib code so work stops cleanly (exit 130). */
  protected get signal(): AbortSignal {
    return this.abort.signal
  }

  override async init(): Promise<void> {
    await super.init()
    const stop = (sig: NodeJS.Signals) => {
      if (this.abort.signal.aborted) process.exit(130) // second signal: give up on cleanup
      this.abort.abort(new Error(`interrupted by ${sig}`))
    }
    process.once('SIGINT', () => stop('SIGINT'))
    process.once('SIGTERM', () => stop('SIGTERM'))
  }

  /** Progress and notices on stderr; silent under --json. */
  protected get reporter(): Reporter {
    this._reporter ??= createReporter({json: this.jsonEnabled(), quiet: this.argv.includes('--quiet')})
    return this._reporter
  }

  /** Marks a run that completed but found problems (damage, skipped input): exit 3 unless already failing. */
  protected markPartial(): void {
    if (!process.exitCode) process.exitCode = ExitCode.partial
  }

  protected override async catch(err: Error & {exitCode?: number}): Promise<unknown> {
    const e: OpsError = toOpsError(err)
    if (this.argv.includes('--verbose')) settings.debug = true
    return super.catch(e)
  }

  protected override toErrorJson(err: unknown): unknown {
    return {error: (err as OpsError).toJSON ? (err as OpsError).toJSON() : toOpsError(err).toJSON()}
  }

  /** Writes a line to stdout unless --json is on. */
  protected out(text = ''): void {
    this.log(text)
  }
}
