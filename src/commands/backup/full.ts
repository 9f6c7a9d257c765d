import {BackupCommand, backupFlags} from '../../backup-command.js'
import type {BackupResult} from '../../lib/backup/backup.js'

export default class BackupFull extends BackupCommand {
  static override summary = 'Take a full backup of a data directory (safe while Engram runs).'
  static override description = `Copies every WAL file of the selected spaces into the repository, each cut after its last complete
record whose CRCs pass, plus WAL files a running Engram still holds open after unlinking them.
The manifest is written last: a backup without one does not exist. Damaged records (a bad payload
CRC, a header Engram cannot read) are warned about and the backup exits 3, committed with each
file cut after its last valid record.`
  static override examples = ['<%= config.bin %> <%= command.id %> --data-dir /var/lib/engram --repo /var/backups/engram']
  static override flags = backupFlags

  async run(): Promise<BackupResult> {
    const {flags} = await this.parse(BackupFull)
    return this.backup('full', flags)
  }
}
