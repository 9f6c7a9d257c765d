/**
 * Replays a memory space exactly as Engram's recover_from_wal does (storage format §6.1 and the
 * fixtures' README): files in name order, only records whose CRCs pass, merged with a stable sort by
 * sequence; EpisodeStore and unknown types are decoded as Episodes and inserted unless the id is
 * already live (first wins since the last delete); MemoryDelete removes; other types are ignored.
 *
 * Memory: one small entry per valid record (needed for the global sort) plus the live index; record
 * payloads are decoded while streaming and never kept.
 */
import {decodePayloadMeta} from './decode.js'
import {listWalFiles, type SpaceDir} from './layout.js'
import {type FileEnd, WalFileReader} from './reader.js'
import {entryTypeName, EntryType} from './record.js'

export interface Damage {
  file: string
  offset: number
  kind: 'bad_payload_crc' | 'bad_header' | 'torn_payload' | 'partial_header' | 'undecodable'
  detail: string
}

export interface FileSummary {
  name: string
  path: string
  size: number
  recordsRead: number
  validRecords: number
  end: FileEnd
  recordsByType: Record<string, number>
  firstTimestampNs: bigint | null
  lastTimestampNs: bigint | null
  firstSequence: bigint | null
  lastSequence: bigint | null
}

export interface ReplayCounters {
  entriesScanned: number
  recovered: number
  skipped: number
  failed: number
  episodesStored: number
  duplicatesSkipped: number
  deletesApplied: number
  deletesThatRemoved: number
  ignoredEntryTypes: number
  liveCount: number
}

/** Where the record that produced a live episode lives. */
export interface LiveEntry {
  id: string
  file: string
  fileIndex: number
  offset: number
  sequence: bigint
  timestampNs: bigint
  payloadSize: number
}

export type ApplyAction = 'store' | 'duplicate_skipped' | 'delete' | 'ignored' | 'failed'

export interface ApplyLogEntry {
  file: string
  offset: number
  sequence: bigint
  entryType: number
  action: ApplyAction
  id?: string
  removed?: boolean
  error?: string
}

export type EngramOutcome =
  | {outcome: 'ok'}
  | {outcome: 'error'; reason: 'torn_payload'; file: string; offset: number; truncateTo: number}

export interface SpaceReplay {
  space: string
  files: FileSummary[]
  counters: ReplayCounters
  /** Live episodes in replay order of the record that produced each. */
  live: Map<string, LiveEntry>
  /** What Engram itself would do on open: fail on a torn payload. */
  engram: EngramOutcome
  /** 'engram', or 'after_truncating_torn_tails' when Engram would refuse to open the space. */
  basis: 'engram' | 'after_truncating_torn_tails'
  damage: Damage[]
  applyLog?: ApplyLogEntry[]
}

export interface ReplayOptions {
  /** Keep the per-record apply log (tests and diagnostics; memory grows with records). */
  applyLog?: boolean
  /** Stop after records with a timestamp above this (PITR previews). */
  signal?: AbortSignal
}

interface Pending {
  fileIndex: number
  offset: number
  sequence: bigint
  timestampNs: bigint
  entryType: number
  payloadSize: number
  /** Decoded id for stores/deletes; error text for undecodable payloads; null for ignored types. */
  id: string | null
  error: string | null
}

function endDamage(file: string, end: FileEnd): Damage | null {
  switch (end.kind) {
    case 'bad_header':
      return {file, offset: end.offset, kind: 'bad_header', detail: `${end.error}; ${end.bytesDiscarded} bytes after it are unreadable`}
    case 'torn_payload':
      return {
        file,
        offset: end.offset,
        kind: 'torn_payload',
        detail: `payload has ${end.payloadBytesPresent} of ${end.header.payloadSize} bytes; Engram refuses to open the space (truncate to ${end.truncateTo})`,
      }
    case 'partial_header':
      return {file, offset: end.offset, kind: 'partial_header', detail: `${end.bytes} trailing bytes, less than a header (a clean end for Engram)`}
    default:
      return null
  }
}

export async function replaySpace(space: SpaceDir, options: ReplayOptions = {}): Promise<SpaceReplay> {
  const walFiles = await listWalFiles(space.walDir)
  const files: FileSummary[] = []
  const pending: Pending[] = []
  const damage: Damage[] = []
  let engram: EngramOutcome = {outcome: 'ok'}

  for (const [fileIndex, f] of walFiles.entries()) {
    const reader = new WalFileReader(f.path, {signal: options.signal})
    const summary: FileSummary = {
      name: f.name,
      path: f.path,
      size: 0,
      recordsRead: 0,
      validRecords: 0,
      end: {kind: 'eof', offset: 0},
      recordsByType: {},
      firstTimestampNs: null,
      lastTimestampNs: null,
      firstSequence: null,
      lastSequence: null,
    }
    for await (const rec of reader.records()) {
      const typeName = entryTypeName(rec.header.entryType)
      summary.recordsByType[typeName] = (summary.recordsByType[typeName] ?? 0) + 1
      if (rec.validity !== 'ok') {
        damage.push({
          file: f.name,
          offset: rec.offset,
          kind: 'bad_payload_crc',
          detail: `payload_crc stored 0x${rec.header.payloadCrc.toString(16).padStart(8, '0')}, computed 0x${rec.computedPayloadCrc.toString(16).padStart(8, '0')}; record skipped`,
        })
        continue
      }
      summary.validRecords++
      const {timestampNs, sequence} = rec.header
      if (summary.firstTimestampNs === null || timestampNs < summary.firstTimestampNs) summary.firstTimestampNs = timestampNs
      if (summary.lastTimestampNs === null || timestampNs > summary.lastTimestampNs) summary.lastTimestampNs = timestampNs
      summary.firstSequence ??= sequence
      summary.lastSequence = sequence
      let id: string | null = null
      let error: string | null = null
      const type = rec.header.entryType
      const ignored =
        type === EntryType.MemoryUpdate ||
        type === EntryType.Consolidation ||
        type === EntryType.Checkpoint ||
        type === EntryType.CompactionMarker
      if (!ignored) {
        if (rec.payload) {
          const decoded = decodePayloadMeta(type, rec.payload)
          if (decoded.kind === 'episode') id = decoded.episode.id
          else if (decoded.kind === 'delete') id = decoded.id
          else if (decoded.kind === 'error') error = decoded.error
        } else {
          error = 'payload too large to decode'
        }
        if (error) damage.push({file: f.name, offset: rec.offset, kind: 'undecodable', detail: error})
      }
      pending.push({fileIndex, offset: rec.offset, sequence, timestampNs, entryType: type, payloadSize: rec.header.payloadSize, id, error})
    }
    summary.size = reader.size
    summary.recordsRead = reader.recordsRead
    summary.end = reader.end!
    const d = endDamage(f.name, summary.end)
    if (d) damage.push(d)
    if (summary.end.kind === 'torn_payload' && engram.outcome === 'ok') {
      engram = {outcome: 'error', reason: 'torn_payload', file: f.name, offset: summary.end.offset, truncateTo: summary.end.truncateTo}
    }
    files.push(summary)
  }

  // Array.prototype.sort is stable, as Rust's sort_by_key is.
  pending.sort((a, b) => (a.sequence < b.sequence ? -1 : a.sequence > b.sequence ? 1 : 0))

  const counters: ReplayCounters = {
    entriesScanned: pending.length,
    recovered: 0,
    skipped: 0,
    failed: 0,
    episodesStored: 0,
    duplicatesSkipped: 0,
    deletesApplied: 0,
    deletesThatRemoved: 0,
    ignoredEntryTypes: 0,
    liveCount: 0,
  }
  const live = new Map<string, LiveEntry>()
  const log: ApplyLogEntry[] | undefined = options.applyLog ? [] : undefined
  for (const p of pending) {
    const file = files[p.fileIndex].name
    const base = {file, offset: p.offset, sequence: p.sequence, entryType: p.entryType}
    if (p.error !== null) {
      counters.failed++
      log?.push({...base, action: 'failed', error: p.error})
    } else if (p.id === null) {
      counters.ignoredEntryTypes++
      counters.skipped++
      log?.push({...base, action: 'ignored'})
    } else if (p.entryType === EntryType.MemoryDelete) {
      const removed = live.delete(p.id)
      counters.deletesApplied++
      counters.recovered++
      if (removed) counters.deletesThatRemoved++
      log?.push({...base, action: 'delete', id: p.id, removed})
    } else if (live.has(p.id)) {
      counters.duplicatesSkipped++
      counters.skipped++
      log?.push({...base, action: 'duplicate_skipped', id: p.id})
    } else {
      live.set(p.id, {
        id: p.id,
        file,
        fileIndex: p.fileIndex,
        offset: p.offset,
        sequence: p.sequence,
        timestampNs: p.timestampNs,
        payloadSize: p.payloadSize,
      })
      counters.episodesStored++
      counters.recovered++
      log?.push({...base, action: 'store', id: p.id})
    }
  }
  counters.liveCount = live.size
  return {
    space: space.id,
    files,
    counters,
    live,
    engram,
    basis: engram.outcome === 'ok' ? 'engram' : 'after_truncating_torn_tails',
    damage,
    applyLog: log,
  }
}
