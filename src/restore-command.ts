import {Flags} from '@oclif/core'

import {OpsCommand} from './base-command.js'
import {repoFlags} from './flags.js'
import type {RestoreResult} from './lib/restore/restore.js'
import {formatBytes, formatDuration, formatRate} from './lib/ui/format.js'

export const restoreFlags = {
  ...repoFlags,
  to: Flags.string({summary: 'Directory to restore into (created if missing).', required: true, helpValue: 'DIR'}),
  space: Flags.string({char: 's', summary: 'Restore only this memory space (repeatable).', multiple: true}),
  yes: Flags.boolean({char: 'y', summary: 'Replace a non-empty target (its contents are moved aside, not deleted).'}),
  'dry-run': Flags.boolean({summary: 'Print the plan (chain, objects, bytes) and change nothing.'}),
  'no-sync': Flags.boolean({
    summary: 'Do not wait for the restored files to reach the disk (faster; not for production data).',
    description: 'By default every restored file is fsynced before the restore reports success. With --no-sync the restore returns as soon as the files are written, which is faster, but a crash or power loss soon after can leave them incomplete. Meant for tests and scratch restores.',
  }),
}

/** Rendering shared by `restore` and `restore pitr`. */
export abstract class RestoreCommand extends OpsCommand {
  protected report(r: RestoreResult): RestoreResult {
    this.out(`${r.dryRun ? 'plan: restore' : 'restored'} backup ${r.backup} (chain ${r.chain.map((c) => `${c.id} ${c.type}`).join(' -> ')})`)
    this.out(`  spaces ${r.spaces.join(', ')} into ${r.target} (target ${r.targetState})`)
    for (const o of r.objects) this.out(`  ${o.key} ${formatBytes(o.bytes)}`)
    this.out(`  ${r.objects.length} objects, ${formatBytes(r.bytes)} to read`)
    if (r.pitr) this.out(`  point in time: records at or ${r.pitr.exclusive ? 'strictly ' : ''}before ${r.pitr.target}${r.pitrResult ? ` (${r.pitrResult.kept} records kept, ${r.pitrResult.dropped} dropped)` : ''}`)
    if (!r.dryRun) this.out(`  ${formatBytes(r.restoredBytes)} written in ${formatDuration(r.durationMs)} (${formatRate(r.restoredBytes, r.durationMs)}); WAL files are mode 0600${r.synced ? '' : '; not fsynced (--no-sync)'}`)
    if (r.replacedMovedTo) this.out(`  the previous contents of the target are in ${r.replacedMovedTo}`)
    return r
  }
}
