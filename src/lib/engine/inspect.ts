/**
 * What `engine waldump` and `engine stats` need: resolving a target (data root, WAL directory or one
 * file), walking records with filters, and per-space statistics after replay.
 */
import {stat} from 'node:fs/promises'
import {basename, dirname, resolve} from 'node:path'

import {IntegrityError, fsError} from '../errors.js'
import {decodePayloadMeta} from './decode.js'
import {discoverSpaces, isWalFileName, listWalFiles, selectSpaces, type SkippedEntry} from './layout.js'
import {type FileEnd, WalFileReader} from './reader.js'
import {entryTypeName, type RecordHeader} from './record.js'
import {type Damage, replaySpace, type ReplayCounters} from './replay.js'

export interface DumpSource {
  space: string
  file: string
  path: string
}

export interface DumpTarget {
  kind: 'data-dir' | 'wal-dir' | 'file'
  path: string
  sources: DumpSource[]
  skipped: SkippedEntry[]
}

export async function resolveDumpTarget(target: string, spaces: string[] = []): Promise<DumpTarget> {
  const path = resolve(target)
  let st
  try {
    st = await stat(path)
  } catch (error) {
    throw fsError(error, 'open', path)
  }
  if (st.isFile()) {
    const walDir = dirname(path)
    const space = basename(walDir) === 'wal' ? basename(dirname(walDir)) : '-'
    return {kind: 'file', path, sources: [{space, file: basename(path), path}], skipped: []}
  }
  const direct = await listWalFiles(path)
  if (direct.length > 0) {
    const space = basename(path) === 'wal' ? basename(dirname(path)) : '-'
    return {kind: 'wal-dir', path, sources: direct.map((f) => ({space, file: f.name, path: f.path})), skipped: []}
  }
  const d = await discoverSpaces(path)
  const sources: DumpSource[] = []
  for (const sp of selectSpaces(d, spaces)) {
    for (const f of await listWalFiles(sp.walDir)) sources.push({space: sp.id, file: f.name, path: f.path})
  }
  return {kind: 'data-dir', path, sources, skipped: d.skipped}
}

export interface DumpFilter {
  fromNs?: bigint
  toNs?: bigint
  types?: number[]
}

export interface DumpRecord {
  space: string
  file: string
  offset: number
  sequence: string
  timestampNs: string
  entryType: number
  type: string
  size: number
  crc: 'ok' | 'bad'
  id?: string
  decode: 'ok' | 'error' | 'not_applicable' | 'skipped'
  error?: string
}

/** A record header with its u64 fields as decimal strings, like DumpRecord's (JSON has no u64). */
export type DumpHeader = Omit<RecordHeader, 'sequence' | 'timestampNs'> & {sequence: string; timestampNs: string}

/** A FileEnd whose header (bad_header, torn_payload) is a DumpHeader, so that it serialises to JSON. */
export type DumpEnd = FileEnd extends infer E ? (E extends {header: RecordHeader} ? Omit<E, 'header'> & {header: DumpHeader} : E) : never

export interface DumpFileEnd {
  space: string
  file: string
  end: DumpEnd
}

function dumpEnd(end: FileEnd): DumpEnd {
  if (end.kind !== 'bad_header' && end.kind !== 'torn_payload') return end
  const {header} = end
  return {...end, header: {...header, sequence: String(header.sequence), timestampNs: String(header.timestampNs)}}
}

export interface DumpStats {
  files: number
  bytes: number
  records: number
  shown: number
  byType: Record<string, number>
  badPayloadCrc: number
  undecodable: number
  damagedFiles: number
}

/**
 * Walks every record of the target in Engram's read order, calling `onRecord` for those that pass
 * the filter and `onEnd` for every file whose walk ended on damage.
 */
export async function dumpWal(
  target: DumpTarget,
  filter: DumpFilter,
  onRecord: (r: DumpRecord) => void,
  onEnd: (e: DumpFileEnd) => void,
  signal?: AbortSignal,
): Promise<DumpStats> {
  const stats: DumpStats = {files: 0, bytes: 0, records: 0, shown: 0, byType: {}, badPayloadCrc: 0, undecodable: 0, damagedFiles: 0}
  for (const src of target.sources) {
    const reader = new WalFileReader(src.path, {signal})
    stats.files++
    for await (const rec of reader.records()) {
      stats.records++
      const type = entryTypeName(rec.header.entryType)
      stats.byType[type] = (stats.byType[type] ?? 0) + 1
      const crcOk = rec.validity === 'ok'
      if (!crcOk) stats.badPayloadCrc++
      let id: string | undefined
      let decode: DumpRecord['decode'] = 'skipped'
      let error: string | undefined
      if (crcOk && rec.payload) {
        const d = decodePayloadMeta(rec.header.entryType, rec.payload)
        decode = d.kind === 'error' ? 'error' : d.kind === 'not_applicable' ? 'not_applicable' : 'ok'
        if (d.kind === 'episode') id = d.episode.id
        else if (d.kind === 'memory') id = d.memory.id
        else if (d.kind === 'delete') id = d.id
        else if (d.kind === 'error') {
          error = d.error
          stats.undecodable++
        }
      }
      const ts = rec.header.timestampNs
      if (filter.fromNs !== undefined && ts < filter.fromNs) continue
      if (filter.toNs !== undefined && ts > filter.toNs) continue
      if (filter.types && !filter.types.includes(rec.header.entryType)) continue
      stats.shown++
      onRecord({
        space: src.space,
        file: src.file,
        offset: rec.offset,
        sequence: String(rec.header.sequence),
        timestampNs: String(ts),
        entryType: rec.header.entryType,
        type,
        size: rec.recordSize,
        crc: crcOk ? 'ok' : 'bad',
        ...(id === undefined ? {} : {id}),
        decode,
        ...(error === undefined ? {} : {error}),
      })
    }
    stats.bytes += reader.size
    const end = reader.end!
    if (end.kind !== 'eof') {
      stats.damagedFiles++
      onEnd({space: src.space, file: src.file, end: dumpEnd(end)})
    }
    if (target.kind === 'file' && end.offset === 0 && (end.kind === 'bad_header' || end.kind === 'partial_header') && reader.size > 0) {
      throw new IntegrityError(
        `${src.path} is not an Engram WAL: ${end.kind === 'bad_header' ? end.error : `only ${end.bytes} bytes`} at offset 0`,
        {
          code: 'NOT_A_WAL',
          subject: src.path,
          suggestion: isWalFileName(src.file)
            ? 'The file is damaged from its first byte; restore it from a backup.'
            : 'Pass a wal-<hex>.log file or an Engram data directory.',
        },
      )
    }
  }
  return stats
}

export interface SpaceStats {
  space: string
  files: Array<{name: string; bytes: number; records: number; end: string; endOffset: number}>
  bytes: number
  records: number
  validRecords: number
  recordsByType: Record<string, number>
  firstTimestampNs: string | null
  lastTimestampNs: string | null
  replay: ReplayCounters
  memories: number
  engramOpens: boolean
  damage: Damage[]
}

export interface DataDirStats {
  root: string
  spaces: SpaceStats[]
  skipped: SkippedEntry[]
  totals: {spaces: number; files: number; bytes: number; records: number; memories: number; damage: number}
}

export async function collectStats(root: string, only: string[] = [], signal?: AbortSignal): Promise<DataDirStats> {
  const path = resolve(root)
  const d = await discoverSpaces(path)
  const spaces: SpaceStats[] = []
  for (const sp of selectSpaces(d, only)) {
    const r = await replaySpace(sp, {signal})
    const byType: Record<string, number> = {}
    let first: bigint | null = null
    let last: bigint | null = null
    for (const f of r.files) {
      for (const [k, v] of Object.entries(f.recordsByType)) byType[k] = (byType[k] ?? 0) + v
      if (f.firstTimestampNs !== null && (first === null || f.firstTimestampNs < first)) first = f.firstTimestampNs
      if (f.lastTimestampNs !== null && (last === null || f.lastTimestampNs > last)) last = f.lastTimestampNs
    }
    spaces.push({
      space: sp.id,
      files: r.files.map((f) => ({name: f.name, bytes: f.size, records: f.recordsRead, end: f.end.kind, endOffset: f.end.offset})),
      bytes: r.files.reduce((a, f) => a + f.size, 0),
      records: Object.values(byType).reduce((a, v) => a + v, 0),
      validRecords: r.files.reduce((a, f) => a + f.validRecords, 0),
      recordsByType: byType,
      firstTimestampNs: first === null ? null : String(first),
      lastTimestampNs: last === null ? null : String(last),
      replay: r.counters,
      memories: r.counters.liveCount,
      engramOpens: r.engram.outcome === 'ok',
      damage: r.damage,
    })
  }
  return {
    root: path,
    spaces,
    skipped: d.skipped,
    totals: {
      spaces: spaces.length,
      files: spaces.reduce((a, s) => a + s.files.length, 0),
      bytes: spaces.reduce((a, s) => a + s.bytes, 0),
      records: spaces.reduce((a, s) => a + s.records, 0),
      memories: spaces.reduce((a, s) => a + s.memories, 0),
      damage: spaces.reduce((a, s) => a + s.damage.length, 0),
    },
  }
}
