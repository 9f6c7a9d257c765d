import {Flags} from '@oclif/core'

import {OpsCommand} from '../../base-command.js'
import {durationFlag, lockWaitFlag, repoFlags} from '../../flags.js'
import {type PruneResult, runPrune} from '../../lib/retention/prune.js'
import {formatBytes} from '../../lib/ui/format.js'
import {renderTable} from '../../lib/ui/table.js'

export default class BackupPrune extends OpsCommand {
  static override summary = 'Apply a GFS retention policy; prints the plan unless --yes.'
  static override description = `Keeps the newest --keep-last backups, the newest of each of the last --keep-daily days, --keep-weekly
ISO weeks and --keep-monthly months (UTC), everything within --keep-within of the newest backup, and
at least --min-full full backups. Ordered by manifest times. An incremental is never kept without the
backups it depends on. Objects of backups that never completed are removed too.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --repo /var/backups/engram',
    '<%= config.bin %> <%= command.id %> --repo /var/backups/engram --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --yes',
  ]
  static override flags = {
    ...repoFlags,
    'keep-last': Flags.integer({summary: 'Keep the newest N backups.', default: 0, min: 0}),
    'keep-daily': Flags.integer({summary: 'Keep the newest backup of each of the last N days.', default: 7, min: 0}),
    'keep-weekly': Flags.integer({summary: 'Keep the newest backup of each of the last N ISO weeks.', default: 4, min: 0}),
    'keep-monthly': Flags.integer({summary: 'Keep the newest backup of each of the last N months.', default: 12, min: 0}),
    'keep-within': durationFlag({summary: 'Keep every backup within this duration of the newest one (e.g. 48h).'}),
    'min-full': Flags.integer({summary: 'Always keep at least N full backups.', default: 2, min: 0}),
    'dry-run': Flags.boolean({summary: 'Print the plan and change nothing (the default without --yes).', exclusive: ['yes']}),
    yes: Flags.boolean({char: 'y', summary: 'Delete what the plan says.'}),
    'lock-wait': lockWaitFlag,
  }

  async run(): Promise<PruneResult> {
    const {flags} = await this.parse(BackupPrune)
    const repo = await this.openRepo(flags)
    const result = await runPrune(
      repo,
      {
        keepLast: flags['keep-last'],
        keepDaily: flags['keep-daily'],
        keepWeekly: flags['keep-weekly'],
        keepMonthly: flags['keep-monthly'],
        keepWithinMs: flags['keep-within'] ?? 0,
        minFull: flags['min-full'],
      },
      {apply: flags.yes, lockWaitMs: flags['lock-wait'], reporter: this.reporter, signal: this.signal},
    )
    this.out(renderTable(['backup', 'type', 'started', 'decision', 'why'], result.decisions.map((d) => [d.id, d.type, d.startedAt, d.keep ? 'keep' : result.dryRun ? 'would delete' : 'deleted', d.reasons.join(', ') || 'no rule keeps it'])))
    const verb = result.dryRun ? 'would delete' : 'deleted'
    this.out(`${result.kept} kept, ${verb} ${result.deleted.length} backups and ${result.incomplete.length} incomplete ones, ${formatBytes(result.freedBytes)}${result.dryRun ? '; pass --yes to apply' : ''}`)
    return result
  }
}
