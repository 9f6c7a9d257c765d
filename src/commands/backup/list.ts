import {OpsCommand} from '../../base-command.js'
import {repoFlags} from '../../flags.js'
import type {Verification} from '../../lib/repo/repository.js'
import {formatBytes} from '../../lib/ui/format.js'
import {renderTable} from '../../lib/ui/table.js'

export interface BackupListRow {
  id: string
  type: string
  parent: string | null
  spaces: string[]
  startedAt: string
  finishedAt: string
  records: number
  bytes: number
  storedBytes: number
  label: string | null
  lastVerification: Verification | null
}

export default class BackupList extends OpsCommand {
  static override summary = 'List the complete backups of a repository, oldest first.'
  static override examples = ['<%= config.bin %> <%= command.id %> --repo /var/backups/engram', '<%= config.bin %> <%= command.id %> --repo /var/backups/engram --json']
  static override flags = {...repoFlags}

  async run(): Promise<{backups: BackupListRow[]; incomplete: string[]}> {
    const {flags} = await this.parse(BackupList)
    const repo = await this.openRepo(flags)
    const all = await repo.backups()
    const verifications = await repo.lastVerifications(all.filter((b) => b.manifest))
    const rows: BackupListRow[] = []
    for (const m of await repo.completeBackups(all)) {
      rows.push({
        id: m.id,
        type: m.type,
        parent: m.parent,
        spaces: m.spaces.map((s) => s.space),
        startedAt: m.startedAt,
        finishedAt: m.finishedAt,
        records: m.totals.records,
        bytes: m.totals.bytes,
        storedBytes: m.totals.archiveBytes,
        label: m.label,
        lastVerification: verifications.get(m.id) ?? null,
      })
    }
    const incomplete = all.filter((b) => !b.complete).map((b) => b.id)
    this.out(
      renderTable(
        ['id', 'type', 'parent', 'spaces', 'started', 'finished', 'records', 'captured', 'stored', 'verified'],
        rows.map((r) => [
          r.id,
          r.type,
          r.parent ?? '-',
          r.spaces.join('\n'),
          r.startedAt,
          r.finishedAt,
          r.records,
          formatBytes(r.bytes),
          formatBytes(r.storedBytes),
          r.lastVerification ? `L${r.lastVerification.level} ${r.lastVerification.ok ? 'ok' : 'FAILED'} ${r.lastVerification.at.slice(0, 16)}` : 'never',
        ]),
      ),
    )
    if (incomplete.length > 0) this.out(`${incomplete.length} incomplete backups (not restorable; removed by the next backup or prune): ${incomplete.join(', ')}`)
    return {backups: rows, incomplete}
  }
}
