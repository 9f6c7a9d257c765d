import {OpsCommand} from '../../base-command.js'
import {bytesFlag, durationFlag, repoFlags} from '../../flags.js'
import {OpsError} from '../../lib/errors.js'
import {type CheckResult, checkRepository} from '../../lib/repo/check.js'

export default class RepoCheck extends OpsCommand {
  static override summary = 'Preflight a repository: put/get/list/delete permissions, free space, clock skew, lock state.'
  static override description = 'Exits non-zero naming each failed check (13 permission, 14 unavailable/space/clock, 15 integrity).'
  static override examples = ['<%= config.bin %> <%= command.id %> --repo s3://backups/engram?region=eu-west-1']
  static override flags = {
    ...repoFlags,
    'min-free': bytesFlag({summary: 'Fail when less than this is free (filesystem repositories).', default: 1024 * 1024 * 1024}),
    'max-skew': durationFlag({summary: "Fail when this host's clock differs more from the storage server's.", default: 60_000}),
  }

  async run(): Promise<CheckResult> {
    const {flags} = await this.parse(RepoCheck)
    const repo = await this.openRepo(flags)
    const r = await checkRepository(repo.backend, {minFreeBytes: flags['min-free'], maxSkewMs: flags['max-skew']})
    for (const c of r.checks) this.out(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}`)
    if (!r.ok) {
      const failed = r.checks.filter((c) => !c.ok)
      throw new OpsError(`repository check failed: ${failed.map((c) => `${c.name} (${c.detail})`).join('; ')}`, {
        code: 'REPO_CHECK_FAILED',
        exit: failed[0].exitCode ?? 14,
        subject: r.repo,
        suggestion: 'Fix the failed checks above, then run `repo check` again.',
        details: {checks: r.checks},
      })
    }
    return r
  }
}
