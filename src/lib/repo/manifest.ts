/**
 * The backup manifest: the commit marker of a backup (written last; a backup without it does not
 * exist) and everything restore, PITR, verification and retention need without reading data.
 */
import {createHash} from 'node:crypto'

export const MANIFEST_FORMAT = 'engram-ops-backup/1'

export interface DamageNote {
  offset: number
  kind: string
  detail: string
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
  /** sha256 of the captured bytes. */
  sha256: string
  /** sha256 of the first min(4096, end) bytes of the file: identity for incrementals. */
  headSha256: string
  /** sha256 of the last complete record of the capture [tailOffset, end): identity for incrementals. */
  tailOffset: number
  tailSha256: string
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
  archive: {key: string; size: number; sha256: string; uncompressedSize: number} | null
  files: FileCapture[]
  /** Files of the parent's state that no longer exist (incremental). */
  gone: string[]
  /** Files that existed in the parent but were rewritten (shrunk or different bytes): a compaction or restart. */
  rewritten: string[]
  /** Reserved: live memories after replay (not computed at backup time, to keep memory flat). */
  memories: number | null
  /** A few episodes captured by this backup (reservoir sample), checked through the API by level 4. */
  samples: Array<{id: string; file: string; offset: number; payloadSha256: string}>
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT
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
