import {Flags} from '@oclif/core'

import {OpsCommand} from './base-command.js'
import {bytesFlag, dataDirFlag, lockWaitFlag, repoFlags, resolveDataDir} from './flags.js'
import {type BackupResult, runBackup} from './lib/backup/backup.js'
import {DEFAULT_HASH_ALGORITHM, HASH_ALGORITHMS, type HashAlgorithm} from './lib/digest.js'
import {parseCompression} from './lib/repo/compression.js'
import {formatBytes, formatDuration, formatRate} from './lib/ui/format.js'

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
  sse: Flags.string({summary: 'S3 server-side encryption: AES256 or aws:kms.', options: ['AES256', 'aws:kms'], helpGroup: 'S3'}),
  'sse-kms-key-id': Flags.string({summary: 'KMS key for --sse aws:kms.', helpGroup: 'S3'}),
}

/** What `backup full` and `backup incremental` share. */
export abstract class BackupCommand extends OpsCommand {
  protected async backup(type: 'full' | 'incremental', flags: {[k: string]: unknown}): Promise<BackupResult> {
    const repo = await this.openRepo(flags as {repo: string}, {
      partSize: flags['part-size'] as number | undefined,
      queueSize: flags['upload-concurrency'] as number | undefined,
      storageClass: flags['storage-class'] as string | undefined,
      sse: flags.sse as string | undefined,
      sseKmsKeyId: flags['sse-kms-key-id'] as string | undefined,
    })
    const result = await runBackup({
      repo,
      dataDir: resolveDataDir(flags['data-dir'] as string | undefined),
      type,
      spaces: (flags.space as string[] | undefined) ?? [],
      compression: flags.compression ? parseCompression(flags.compression as string) : repo.config.compression,
      hashAlgorithm: flags.hash as HashAlgorithm | undefined,
      label: flags.label as string | undefined,
      lockWaitMs: flags['lock-wait'] as number,
      reporter: this.reporter,
      signal: this.signal,
    })
    this.out(
      `backup ${result.id} (${result.type}${result.parent ? ` on ${result.parent}` : ''}) complete: ${result.totals.files} files, ${formatBytes(result.totals.bytes)} captured, ${formatBytes(result.totals.archiveBytes)} stored, ${result.totals.records} records in ${formatDuration(result.durationMs)} (${formatRate(result.totals.bytes, result.durationMs)})`,
    )
    if (result.note) this.out(`note: ${result.note}`)
    for (const u of result.unlinked) this.out(`captured unlinked WAL ${u.space}/wal/${u.name} from pid ${u.pid}`)
    if (result.compaction) this.out(`compaction detected in ${result.compaction.spaces.join(', ')}: rewritten files captured whole`)
    return result
  }
}
