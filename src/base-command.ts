/**
 * The base of every engram-ops command: `--json` (oclif's enableJsonFlag), `--verbose`, `--quiet`,
 * one mapping from any error to an OpsError with a documented exit code, and a Reporter on stderr.
 */
import {Command, Flags, settings} from '@oclif/core'

import {errorJson, errorText, markPartial, type OpsError, toOpsError} from './lib/errors.js'
import {abortOnSignals} from './lib/process.js'
import {openRepositoryFromFlags, readPassphrase} from './lib/repo/open.js'
import type {Repository} from './lib/repo/repository.js'
import type {S3Overrides} from './lib/repo/url.js'
import {createReporter, type Reporter, withWarnings} from './lib/ui/reporter.js'

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
    abortOnSignals(this.abort)
  }

  /** Progress and notices on stderr; silent under --json. */
  protected get reporter(): Reporter {
    this._reporter ??= createReporter({json: this.jsonEnabled(), quiet: this.argv.includes('--quiet')})
    return this._reporter
  }

  /** Marks a run that completed but found problems (damage, skipped input): exit 3 unless already failing. */
  protected markPartial(): void {
    markPartial()
  }

  protected override async catch(err: Error & {exitCode?: number}): Promise<unknown> {
    const e: OpsError = toOpsError(err)
    // The error's code wins over an earlier markPartial() (oclif keeps an exit code already set).
    process.exitCode = e.exitCode
    if (this.jsonEnabled()) return super.catch(e)
    // Our own rendering (oclif wraps at 80 columns without a TTY, which breaks grep in cron mail),
    // then let oclif exit with the code without printing again.
    const verbose = this.argv.includes('--verbose')
    if (verbose) settings.debug = true
    process.stderr.write(errorText(e, verbose))
    e.skipOclifErrorHandling = true
    return super.catch(e)
  }

  /** Under --json, the warnings given on the way are part of the result (withWarnings). */
  protected override toSuccessJson(result: unknown): unknown {
    return withWarnings(result, this._reporter)
  }

  protected override toErrorJson(err: unknown): unknown {
    return errorJson(toOpsError(err))
  }

  /** The passphrase of an encrypted repository: from a file, else $ENGRAM_OPS_PASSPHRASE. Never printed. */
  protected async passphrase(file: string | undefined, env = 'ENGRAM_OPS_PASSPHRASE'): Promise<string | undefined> {
    return readPassphrase(file, env)
  }

  protected async openRepo(flags: {repo: string; 'passphrase-file'?: string}, s3?: S3Overrides): Promise<Repository> {
    return openRepositoryFromFlags(flags, s3)
  }

  /** Writes a line to stdout unless --json is on. */
  protected out(text = ''): void {
    this.log(text)
  }
}
