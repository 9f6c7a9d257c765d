import {Flags} from '@oclif/core'

import {OpsCommand} from './base-command.js'
import {type BackupFlagValues, takeBackup} from './backup-run.js'
import {bytesFlag, dataDirFlag, lockWaitFlag, repoFlags} from './flags.js'
import type {BackupResult} from './lib/backup/backup.js'
import {DEFAULT_HASH_ALGORITHM, HASH_ALGORITHMS} from './lib/digest.js'
import {SSE_MODES} from './lib/repo/url.js'

export const backupFlags = {
  'data-dir': dataDirFlag,
  ...repoFlags,
  space: Flags.string({char: 's', summary: 'Back up only this memory space (repeatable; default: all).', multiple: true}),
  compression: Flags.string({summary: "zstd, zstd:LEVEL or none (default: the repository's)."}),
  hash: Flags.string({
    summary: `Hash recorded of every captured file and object: blake3 (fast) or sha256 (what sha256sum prints for whole-file captures and, in unencrypted repositories, for objects). Default: an incremental keeps its parent's, a full backup uses ${DEFAULT_HASH_ALGORITHM}.`,
    options: [...HASH_ALGORITHMS],
  }),
  label: Flags.string({summary: 'A free-text label stored in the manifest.'}),
  'lock-wait': lockWaitFlag,
  'part-size': bytesFlag({summary: 'S3 multipart part size (min 5MiB; default 8MiB). Memory in flight is part size x upload concurrency.', helpGroup: 'S3'}),
  'upload-concurrency': Flags.integer({summary: 'S3 parts uploaded at once (default 4).', min: 1, max: 64, helpGroup: 'S3'}),
  'storage-class': Flags.string({summary: 'S3 storage class of the objects written, e.g. STANDARD_IA.', helpGroup: 'S3'}),
  sse: Flags.string({summary: 'S3 server-side encryption: AES256 or aws:kms.', options: [...SSE_MODES], helpGroup: 'S3'}),
  'sse-kms-key-id': Flags.string({summary: 'KMS key for --sse aws:kms.', helpGroup: 'S3'}),
}

/** What `backup full` and `backup incremental` share (the work itself is in src/backup-run.ts). */
export abstract class BackupCommand extends OpsCommand {
  protected async backup(type: 'full' | 'incremental', flags: BackupFlagValues): Promise<BackupResult> {
    return takeBackup(type, flags, {reporter: this.reporter, signal: this.signal, out: (line) => this.out(line)})
  }
}
