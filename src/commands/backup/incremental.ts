import {BackupCommand, backupFlags} from '../../backup-command.js'
import type {BackupResult} from '../../lib/backup/backup.js'

export default class BackupIncremental extends BackupCommand {
  static override summary = 'Back up only what changed since the last backup (a full one if there is none).'
  static override description = `Stores, per WAL file, only the bytes appended since the parent backup captured it; new files whole;
vanished files as gone. A compaction by Engram (files rewritten) is detected and reported. With no
usable parent it takes a full backup and says so. Damaged records past the parent's capture are
warned about and the backup exits 3, as with a full backup.`
  static override examples = ['<%= config.bin %> <%= command.id %> --data-dir /var/lib/engram --repo /var/backups/engram --lock-wait 5m']
  static override flags = backupFlags

  async run(): Promise<BackupResult> {
    const {flags} = await this.parse(BackupIncremental)
    return this.backup('incremental', flags)
  }
}
