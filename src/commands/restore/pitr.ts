import {Flags} from '@oclif/core'

import {timeFlag} from '../../flags.js'
import {UsageError} from '../../lib/errors.js'
import type {PitrTarget} from '../../lib/restore/pitr.js'
import {type RestoreResult, runPitr} from '../../lib/restore/restore.js'
import {RestoreCommand, restoreFlags} from '../../restore-command.js'

export default class RestorePitr extends RestoreCommand {
  static override summary = 'Restore the state at a point in time (or a WAL position), to the record.'
  static override description = `Picks the backup to start from automatically, restores it, and keeps exactly the WAL records with a
timestamp at or before --target-time (before it with --target-exclusive), in every space; or, with
--target-seq FILE:SEQ, every record up to that position of one space. A target before the first
backed-up record, after the last backup, or across a compaction that rewrote timestamps exits 16 and
names the nearest recoverable points.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> --target-time 2026-11-28T14:01:59Z --repo /var/backups/engram --to /var/lib/engram-1401',
    '<%= config.bin %> <%= command.id %> --target-seq wal-0000000065edbce0.log:1200 --space default --repo /var/backups/engram --to /tmp/x',
  ]
  static override flags = {
    ...restoreFlags,
    'target-time': timeFlag({summary: 'Keep records with a timestamp at or before this time.', exclusive: ['target-seq']}),
    'target-seq': Flags.string({summary: 'Keep records up to this position: WAL file name and sequence, FILE:SEQ.', exclusive: ['target-time'], helpValue: 'FILE:SEQ'}),
    'target-exclusive': Flags.boolean({summary: 'Stop just before the target instead of at it.'}),
  }

  async run(): Promise<RestoreResult> {
    const {flags} = await this.parse(RestorePitr)
    let target: PitrTarget
    if (flags['target-time'] !== undefined) target = {kind: 'time', ns: flags['target-time'], exclusive: flags['target-exclusive'] === true}
    else if (flags['target-seq']) {
      const m = /^(wal-[0-9a-f]{16}\.log):(\d+)$/.exec(flags['target-seq'])
      if (!m) throw new UsageError(`not a WAL position: ${JSON.stringify(flags['target-seq'])}`, {code: 'BAD_TARGET', suggestion: 'Write it as wal-<16 hex>.log:SEQUENCE, as `engine waldump` prints them.'})
      target = {kind: 'seq', file: m[1], sequence: BigInt(m[2]), exclusive: flags['target-exclusive'] === true}
    } else {
      throw new UsageError('say which point to recover to', {code: 'NO_TARGET', suggestion: 'Pass --target-time or --target-seq.'})
    }
    const repo = await this.openRepo(flags)
    const r = await runPitr(repo, {target, spaces: flags.space ?? [], to: flags.to, yes: flags.yes, dryRun: flags['dry-run'], sync: !flags['no-sync'], reporter: this.reporter, signal: this.signal})
    return this.report(r)
  }
}
