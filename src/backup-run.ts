/**
 * What `backup full` and `backup incremental` do once their flags are parsed, shared by the oclif
 * commands and the path that runs them without oclif (src/backup-fast-path.ts). No oclif here.
 */
import {type BackupResult, runBackup} from './lib/backup/backup.js'
import type {HashAlgorithm} from './lib/digest.js'
import {resolveDataDir} from './lib/engine/layout.js'
import {markPartial} from './lib/errors.js'
import {parseCompression} from './lib/repo/compression.js'
import {isCorruption} from './lib/repo/manifest.js'
import {openRepositoryFromFlags} from './lib/repo/open.js'
import {formatBytes, formatDuration, formatRate} from './lib/ui/format.js'
import type {Reporter} from './lib/ui/reporter.js'

/** The parsed flags of `backup full|incremental` (names as on the command line). */
export interface BackupFlagValues {
  'data-dir'?: string
  repo: string
  'passphrase-file'?: string
  space?: string[]
  compression?: string
  hash?: string
  label?: string
  'lock-wait': number
  'part-size'?: number
  'upload-concurrency'?: number
  'storage-class'?: string
  sse?: string
  'sse-kms-key-id'?: string
}

export interface BackupIo {
  reporter: Reporter
  signal: AbortSignal
  /** Prints one line of the human result (nothing under --json). */
  out(line: string): void
}

export async function takeBackup(type: 'full' | 'incremental', flags: BackupFlagValues, io: BackupIo): Promise<BackupResult> {
  const repo = await openRepositoryFromFlags(flags, {
    partSize: flags['part-size'],
    queueSize: flags['upload-concurrency'],
    storageClass: flags['storage-class'],
    sse: flags.sse,
    sseKmsKeyId: flags['sse-kms-key-id'],
  })
  const result = await runBackup({
    repo,
    dataDir: resolveDataDir(flags['data-dir']),
    type,
    spaces: flags.space ?? [],
    compression: flags.compression ? parseCompression(flags.compression) : repo.config.compression,
    hashAlgorithm: flags.hash as HashAlgorithm | undefined,
    label: flags.label,
    lockWaitMs: flags['lock-wait'],
    reporter: io.reporter,
    signal: io.signal,
  })
  io.out(
    `backup ${result.id} (${result.type}${result.parent ? ` on ${result.parent}` : ''}) complete: ${result.totals.files} files, ${formatBytes(result.totals.bytes)} captured, ${formatBytes(result.totals.archiveBytes)} stored, ${result.totals.records} records in ${formatDuration(result.durationMs)} (${formatRate(result.totals.bytes, result.durationMs)})`,
  )
  if (result.note) io.out(`note: ${result.note}`)
  for (const u of result.unlinked) io.out(`captured unlinked WAL ${u.space}/wal/${u.name} from pid ${u.pid}`)
  if (result.compaction) io.out(`compaction detected in ${result.compaction.spaces.join(', ')}: rewritten files captured whole`)
  // The backup is committed either way; damaged records make it exit 3, so that cron tells someone.
  // A record still being written is normal while Engram runs, and only noted.
  for (const d of result.damage) {
    const where = `${d.space}/wal/${d.file} at offset ${d.offset}`
    if (isCorruption(d)) io.reporter.warn(`damaged WAL ${where} (${d.kind}): ${d.detail}`)
    else io.reporter.info(`${where}: ${d.detail}`)
  }
  if (result.damage.some(isCorruption)) markPartial()
  for (const s of result.skipped) io.reporter.info(`skipped ${s.path}: ${s.reason}; Engram does not load it either`)
  return result
}
