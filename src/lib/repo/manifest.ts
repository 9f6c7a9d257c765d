/**
 * The backup manifest: the commit marker of a backup (written last; a backup without it does not
 * exist) and everything restore, PITR, verification and retention need without reading data.
 */
import {createHash} from 'node:crypto'

import type {HashAlgorithm} from '../digest.js'
import {IntegrityError} from '../errors.js'

/**
 * Format 2 names its hash algorithm (`hashAlgorithm`) and calls its digests `hash`, `headHash`,
 * `tailHash` and `payloadHash`. Format 1 had sha256 only, in fields named `sha256`, `headSha256`,
 * `tailSha256` and `payloadSha256`; it is read (upgraded in memory by `upgradeManifest`), not written.
 */
export const MANIFEST_FORMAT = 'engram-ops-backup/2'
export const MANIFEST_FORMAT_1 = 'engram-ops-backup/1'

export interface DamageNote {
  offset: number
  kind: string
  detail: string
}

/** Oldest first: by the manifests' start times, then by id. Never by names or file times alone. */
export function byStartTime(a: Pick<Manifest, 'startedAt' | 'id'>, b: Pick<Manifest, 'startedAt' | 'id'>): number {
  return a.startedAt < b.startedAt ? -1 : a.startedAt > b.startedAt ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

/**
 * Damage that is corruption: records Engram skips or cannot read (`bad_payload_crc`, `bad_header`).
 * The other kinds (`torn_tail`, `partial_header`) are a record still being written when the file was
 * sized, left for the next backup: normal in a hot backup.
 */
export function isCorruption(note: DamageNote): boolean {
  return note.kind === 'bad_payload_crc' || note.kind === 'bad_header'
}

/** One captured byte range of one WAL file. */
export interface FileCapture {
  name: string
  /** Tar entry path inside the space archive. */
  entry: string
  /** Captured bytes are [offset, offset + length) of the file. Full captures start at 0. */
  offset: number
  length: number
  /** Size of the file (as captured) after this backup: offset + length. */
  end: number
  /** Hash (the manifest's algorithm) of the captured bytes. */
  hash: string
  /** Hash of the first min(4096, end) bytes of the file: identity for incrementals. */
  headHash: string
  /** Hash of the last complete record of the capture [tailOffset, end): identity for incrementals. */
  tailOffset: number
  tailHash: string
  /** Bytes the file had when it was captured; more than `end` when a torn or damaged tail was cut. */
  observedSize: number
  inode: number
  /** 'path', or 'unlinked' for a deleted file still held open by a process (from /proc/PID/fd). */
  source: 'path' | 'unlinked'
  pid?: number
  records: number
  validRecords: number
  episodes: number
  deletes: number
  firstSequence: string | null
  lastSequence: string | null
  firstTimestampNs: string | null
  lastTimestampNs: string | null
  damage: DamageNote[]
}

export interface SpaceCapture {
  space: string
  /** Archive object key, or null when nothing changed in the space (incremental). */
  archive: {key: string; size: number; hash: string; uncompressedSize: number} | null
  files: FileCapture[]
  /** Files of the parent's state that no longer exist (incremental). */
  gone: string[]
  /** Files that existed in the parent but were rewritten (shrunk or different bytes): a compaction or restart. */
  rewritten: string[]
  /** Reserved: live memories after replay (not computed at backup time, to keep memory flat). */
  memories: number | null
  /** A few episodes captured by this backup (reservoir sample), checked through the API by level 4. */
  samples: Array<{id: string; file: string; offset: number; payloadHash: string}>
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT | typeof MANIFEST_FORMAT_1
  /** The algorithm of every hash in this manifest but its own checksum (always sha256). */
  hashAlgorithm: HashAlgorithm
  tool: {name: 'engram-ops'; version: string}
  id: string
  type: 'full' | 'incremental'
  parent: string | null
  /** Ids from the full backup to this one. */
  chain: string[]
  label: string | null
  host: string
  dataRoot: string
  startedAt: string
  finishedAt: string
  /** ns since the epoch when the data was snapshotted (all acknowledged records before it are in). */
  snapshotNs: string
  compression: {codec: 'zstd'; level: number} | {codec: 'none'}
  spaces: SpaceCapture[]
  /** Set when an incremental found files of its parent rewritten or gone. */
  compaction: {detected: true; spaces: string[]; rewriteTimeNs: string | null} | null
  notes: string[]
  totals: {files: number; bytes: number; archiveBytes: number; records: number; unlinkedFiles: number}
  /** sha256 of this JSON with `checksum` set to "". */
  checksum: string
}

/** The checksum a self-describing JSON document (a manifest, the repository config) carries of itself: sha256 of its JSON with `checksum` set to "". */
export function selfChecksum(doc: {checksum: string}): string {
  return createHash('sha256')
    .update(JSON.stringify({...doc, checksum: ''}))
    .digest('hex')
}

/**
 * A manifest as read, in the current shape: format 1 (sha256, `sha256`-named fields) gets
 * `hashAlgorithm: 'sha256'` and the field names of format 2. Its `format` and `checksum` stay as
 * stored (the checksum is of the stored text, which the caller has verified). Idempotent: a manifest
 * that already names its algorithm is returned as it is.
 */
export function upgradeManifest(m: Manifest): Manifest {
  if (m.format !== MANIFEST_FORMAT_1 || m.hashAlgorithm !== undefined) return m
  const need = (value: unknown, what: string): string => {
    if (typeof value !== 'string') {
      throw new IntegrityError(`manifest of backup ${m.id} (format 1) has no ${what}`, {code: 'MANIFEST_CORRUPT', subject: m.id, suggestion: 'The backup cannot be trusted; take a new full backup.'})
    }
    return value
  }
  type V1File = FileCapture & {sha256?: string; headSha256?: string; tailSha256?: string}
  type V1Space = Omit<SpaceCapture, 'archive' | 'samples'> & {archive: (NonNullable<SpaceCapture['archive']> & {sha256?: string}) | null; samples: Array<SpaceCapture['samples'][number] & {payloadSha256?: string}>}
  const spaces = (m.spaces as unknown as V1Space[]).map((sp) => ({
    ...sp,
    archive: sp.archive ? {key: sp.archive.key, size: sp.archive.size, hash: need(sp.archive.sha256, `sha256 for ${sp.archive.key}`), uncompressedSize: sp.archive.uncompressedSize} : null,
    files: (sp.files as V1File[]).map(({sha256, headSha256, tailSha256, ...f}) => ({
      ...f,
      hash: need(sha256, `sha256 for ${f.entry}`),
      headHash: need(headSha256, `headSha256 for ${f.entry}`),
      tailHash: need(tailSha256, `tailSha256 for ${f.entry}`),
    })),
    samples: sp.samples.map(({payloadSha256, ...s}) => ({...s, payloadHash: need(payloadSha256, `payloadSha256 for sample ${s.id}`)})),
  }))
  return {...m, hashAlgorithm: 'sha256', spaces}
}

export function sealManifest(m: Omit<Manifest, 'checksum'>): Manifest {
  const full = {...m, checksum: ''} as Manifest
  full.checksum = selfChecksum(full)
  return full
}

export function backupId(type: 'full' | 'incremental', at: Date, rand: string): string {
  const stamp = at.toISOString().replaceAll('-', '').replaceAll(':', '').replace(/\.\d+Z$/, 'Z')
  return `${stamp}-${type === 'full' ? 'full' : 'incr'}-${rand}`
}

export const BACKUP_ID_PATTERN = /^\d{8}T\d{6}Z-(full|incr)-[0-9a-f]{6}$/
