import {Args, Flags} from '@oclif/core'

import {OpsCommand} from '../../base-command.js'
import {repoFlags} from '../../flags.js'
import {UsageError, IntegrityError} from '../../lib/errors.js'
import {type VerifyResult, verifyBackup} from '../../lib/restore/verify.js'
import {formatDuration} from '../../lib/ui/format.js'

export default class BackupVerify extends OpsCommand {
  static override summary = 'Verify backups at level 1 (manifest and objects) to 4 (restore, open and serve).'
  static override description = `L1: manifests and their checksums; every object present with its size (no data read).
L2: every object's hash, in the algorithm its backup recorded (BLAKE3, or sha256).
L3: decompress and unpack; every entry's hash; every WAL record's CRCs and payload; counts against the manifest.
L4: restore into a scratch directory, open it with the engine and serve it on a free port; compare
    record and memory counts and sampled memories. Exit 15 when a check fails.`
  static override examples = ['<%= config.bin %> <%= command.id %> --latest --level 4 --repo /var/backups/engram', '<%= config.bin %> <%= command.id %> --all --level 2 --repo /var/backups/engram']
  static override args = {id: Args.string({description: 'Backup id.'})}
  static override flags = {
    ...repoFlags,
    latest: Flags.boolean({summary: 'Verify the newest backup.', exclusive: ['all']}),
    all: Flags.boolean({summary: 'Verify every complete backup.', exclusive: ['latest']}),
    level: Flags.integer({char: 'l', summary: 'Verification level, 1-4.', default: 2, min: 1, max: 4}),
  }

  async run(): Promise<{ok: boolean; results: VerifyResult[]}> {
    const {args, flags} = await this.parse(BackupVerify)
    if ([args.id !== undefined, flags.latest, flags.all].filter(Boolean).length !== 1) {
      throw new UsageError('say which backup to verify: a backup id, --latest or --all (one of them)', {code: 'NO_BACKUP_SELECTED', suggestion: 'Pass a backup id, --latest or --all.'})
    }
    const repo = await this.openRepo(flags)
    const listed = await repo.backups()
    let ids: string[]
    if (flags.all || flags.latest) {
      const selectable = await repo.requireBackups(listed) // none at all: exit 2
      ids = flags.all ? selectable.map((m) => m.id) : [selectable.at(-1)!.id]
    } else {
      // An id the repository has never seen (a typo) is a usage error (exit 2), and nothing is written
      // for it: a verification record would make it show up as an incomplete backup.
      if (!listed.some((e) => e.id === args.id)) await repo.manifest(args.id!) // throws BACKUP_NOT_FOUND
      ids = [args.id!]
    }
    const results: VerifyResult[] = []
    for (const id of ids) {
      const r = await verifyBackup(repo, id, flags.level, this.reporter, this.signal)
      results.push(r)
      // Recorded only for backups that exist (have a manifest); `backup list` shows it.
      if (listed.some((e) => e.id === id && e.complete)) {
        await repo.recordVerification(id, {level: flags.level, ok: r.ok, at: new Date().toISOString(), detail: r.findings.map((f) => f.problem).join('; ')}).catch(() => {})
      }
      this.out(`${id}: level ${flags.level} ${r.ok ? 'OK' : 'FAILED'} (${r.checked.objects} objects, ${r.checked.records} records${r.checked.memories === null ? '' : `, ${r.checked.memories} memories, ${r.checked.samples} sampled`}) in ${formatDuration(r.durationMs)}`)
      for (const f of r.findings) this.out(`  L${f.level} ${f.object ? `${f.object}: ` : ''}${f.problem}`)
    }
    const ok = results.every((r) => r.ok)
    if (!ok) {
      const bad = results.filter((r) => !r.ok)
      const err = new IntegrityError(`${bad.length} of ${results.length} backups failed verification: ${bad.map((r) => r.backup).join(', ')}`, {
        code: 'VERIFY_FAILED',
        subject: bad[0].findings[0]?.object ?? bad[0].backup,
        suggestion: 'Take a new full backup now, then prune the damaged ones.',
        details: {results},
      })
      throw err
    }
    return {ok, results}
  }
}
