import {Args} from '@oclif/core'

import {OpsCommand} from '../../base-command.js'
import {repoFlags} from '../../flags.js'
import {formatNs} from '../../lib/ui/format.js'
import type {Manifest} from '../../lib/repo/manifest.js'
import {formatBytes} from '../../lib/ui/format.js'

export default class BackupShow extends OpsCommand {
  static override summary = 'Show a backup: its manifest and the chain it belongs to.'
  static override examples = ['<%= config.bin %> <%= command.id %> 20261128T061700Z-full-3fa9c1 --repo /var/backups/engram']
  static override args = {id: Args.string({description: 'Backup id (see `backup list`).', required: true})}
  static override flags = {...repoFlags}

  async run(): Promise<{manifest: Manifest; chain: string[]}> {
    const {args, flags} = await this.parse(BackupShow)
    const repo = await this.openRepo(flags)
    const chain = await repo.chain(args.id)
    const m = chain.at(-1)!
    this.out(`backup ${m.id} (${m.type})${m.label ? ` "${m.label}"` : ''}`)
    this.out(`  chain: ${chain.map((c) => c.id).join(' -> ')}`)
    this.out(`  ${m.host}:${m.dataRoot}, ${m.startedAt} .. ${m.finishedAt}, snapshot ${formatNs(BigInt(m.snapshotNs))}`)
    this.out(`  ${m.totals.files} files, ${formatBytes(m.totals.bytes)} captured, ${formatBytes(m.totals.archiveBytes)} stored, ${m.totals.records} records, ${m.totals.unlinkedFiles} unlinked files`)
    for (const sp of m.spaces) {
      this.out(`  space ${sp.space}: ${sp.archive ? `${sp.archive.key} ${formatBytes(sp.archive.size)} ${m.hashAlgorithm} ${sp.archive.hash}` : 'no changes'}`)
      for (const f of sp.files) {
        this.out(
          `    ${f.name} [${f.offset}, ${f.end}) ${f.records} records seq ${f.firstSequence ?? '-'}..${f.lastSequence ?? '-'} ${formatNs(f.firstTimestampNs === null ? null : BigInt(f.firstTimestampNs))} .. ${formatNs(f.lastTimestampNs === null ? null : BigInt(f.lastTimestampNs))}${f.source === 'unlinked' ? ` (unlinked, pid ${f.pid})` : ''}`,
        )
        for (const d of f.damage) this.out(`      off=${d.offset} ${d.kind}: ${d.detail}`)
      }
      if (sp.gone.length) this.out(`    gone since the parent: ${sp.gone.join(', ')}`)
      if (sp.rewritten.length) this.out(`    rewritten since the parent: ${sp.rewritten.join(', ')}`)
    }
    return {manifest: m, chain: chain.map((c) => c.id)}
  }
}
