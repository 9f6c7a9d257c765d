import {Args, Flags} from '@oclif/core'

import {RestoreCommand, restoreFlags} from '../../restore-command.js'
import {type RestoreResult, runRestore} from '../../lib/restore/restore.js'
import {UsageError} from '../../lib/errors.js'

export default class Restore extends RestoreCommand {
  static override summary = 'Restore a backup (with its chain) into a directory.'
  static override description = `Every object is verified while it streams; the data lands in a staging directory beside the target and
replaces it only when everything checked out, so a failed restore leaves the target as it was. A
non-empty target needs --yes. Stop Engram before restoring into its live data directory.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --latest --repo /var/backups/engram --to /var/lib/engram-restored',
    '<%= config.bin %> <%= command.id %> 20261128T061700Z-full-3fa9c1 --repo /var/backups/engram --to /var/lib/engram --yes',
    '<%= config.bin %> <%= command.id %> --latest --repo /var/backups/engram --to /tmp/x --dry-run',
  ]
  static override args = {id: Args.string({description: 'Backup id (see `backup list`).'})}
  static override flags = {...restoreFlags, latest: Flags.boolean({summary: 'Restore the newest backup.'})}

  async run(): Promise<RestoreResult> {
    const {args, flags} = await this.parse(Restore)
    if (Boolean(args.id) === Boolean(flags.latest)) throw new UsageError('say which backup to restore: a backup id or --latest (one of them)', {code: 'NO_BACKUP_SELECTED', suggestion: 'Pass a backup id or --latest.'})
    const repo = await this.openRepo(flags)
    const r = await runRestore(repo, {id: args.id, latest: flags.latest, spaces: flags.space ?? [], to: flags.to, yes: flags.yes, dryRun: flags['dry-run'], sync: !flags['no-sync'], reporter: this.reporter, signal: this.signal})
    return this.report(r)
  }
}
