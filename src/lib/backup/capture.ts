/**
 * Capturing WAL files for a backup, in two passes over one open descriptor per file:
 *  1. walk the records from `start` up to the size seen at open time, checking both CRCs, and cut
 *     after the last record whose header and payload are whole and valid (a live file only grows, so
 *     this is a valid prefix; an in-flight record at the edge is left for the next backup);
 *  2. stream exactly [start, cut) into the space's tar archive, hashing it.
 * Holding the descriptor across both passes means a file unlinked in between is still read whole.
 */
import {createHash} from 'node:crypto'
import type {FileHandle} from 'node:fs/promises'

import {decodeEpisodeId} from '../engine/payload.js'
import {WalFileReader} from '../engine/reader.js'
import {EntryType} from '../engine/record.js'
import type {DamageNote, FileCapture} from '../repo/manifest.js'

export interface OpenSource {
  space: string
  name: string
  handle: FileHandle
  size: number
  inode: number
  source: 'path' | 'unlinked'
  pid?: number
  mtime: Date
}

export interface Sample {
  id: string
  file: string
  offset: number
  payloadSha256: string
}

export interface ScanResult {
  start: number
  cut: number
  records: number
  validRecords: number
  episodes: number
  deletes: number
  firstSequence: bigint | null
  lastSequence: bigint | null
  firstTimestampNs: bigint | null
  lastTimestampNs: bigint | null
  tailOffset: number
  damage: DamageNote[]
}

const HEAD_BYTES = 4096

export async function hashRange(handle: FileHandle, offset: number, length: number): Promise<string> {
  const h = createHash('sha256')
  const buf = Buffer.allocUnsafe(Math.min(length, 1024 * 1024) || 1)
  let done = 0
  while (done < length) {
    const {bytesRead} = await handle.read(buf, 0, Math.min(buf.length, length - done), offset + done)
    if (bytesRead === 0) throw new Error(`short read at ${offset + done}`)
    h.update(buf.subarray(0, bytesRead))
    done += bytesRead
  }
  return h.digest('hex')
}

export function headLength(end: number): number {
  return Math.min(HEAD_BYTES, end)
}

/** Pass 1: where to cut, and what the captured records are. Keeps up to `sampleSize` episode samples. */
export async function scanCapture(src: OpenSource, start: number, samples: Sample[], sampleSize: number, seen: {n: number}, signal?: AbortSignal): Promise<ScanResult> {
  const reader = new WalFileReader(src.name, {handle: src.handle, start, limit: src.size, signal})
  const r: ScanResult = {
    start,
    cut: start,
    records: 0,
    validRecords: 0,
    episodes: 0,
    deletes: 0,
    firstSequence: null,
    lastSequence: null,
    firstTimestampNs: null,
    lastTimestampNs: null,
    tailOffset: start,
    damage: [],
  }
  // Counters as of the last valid record: records past the cut are not part of the capture.
  let atCut = {...r}
  for await (const rec of reader.records()) {
    r.records++
    if (rec.validity !== 'ok') {
      r.damage.push({offset: rec.offset, kind: 'bad_payload_crc', detail: 'payload CRC mismatch; Engram skips this record'})
      continue
    }
    r.validRecords++
    const {entryType, sequence, timestampNs} = rec.header
    const isStore = entryType === EntryType.EpisodeStore || entryType === 0 || entryType > EntryType.CompactionMarker
    if (isStore) r.episodes++
    if (entryType === EntryType.MemoryDelete) r.deletes++
    r.firstSequence ??= sequence
    r.lastSequence = sequence
    if (r.firstTimestampNs === null || timestampNs < r.firstTimestampNs) r.firstTimestampNs = timestampNs
    if (r.lastTimestampNs === null || timestampNs > r.lastTimestampNs) r.lastTimestampNs = timestampNs
    r.tailOffset = rec.offset
    r.cut = rec.offset + rec.recordSize
    // Reservoir sampling of episodes, for level-4 verification (bounded memory).
    if (isStore && rec.payload && rec.header.entryType === EntryType.EpisodeStore) {
      seen.n++
      const slot = samples.length < sampleSize ? samples.length : Math.floor(Math.random() * seen.n)
      if (slot < sampleSize) {
        try {
          samples[slot] = {id: decodeEpisodeId(rec.payload), file: src.name, offset: rec.offset, payloadSha256: createHash('sha256').update(rec.payload).digest('hex')}
        } catch {
          // an undecodable id is not a useful sample
        }
      }
    }
    atCut = {...r, damage: [...r.damage]}
  }
  const end = reader.end!
  const result = {...atCut}
  if (r.records > atCut.records) result.damage.push({offset: atCut.cut, kind: 'bad_payload_crc', detail: `${r.records - atCut.records} records after the last valid one were left out`})
  switch (end.kind) {
    case 'bad_header':
      result.damage.push({offset: end.offset, kind: 'bad_header', detail: `${end.error}; ${end.bytesDiscarded} bytes Engram cannot read were left out`})
      break
    case 'torn_payload':
      result.damage.push({offset: end.offset, kind: 'torn_tail', detail: `a record still being written (${end.payloadBytesPresent} of ${end.header.payloadSize} payload bytes) was left for the next backup`})
      break
    case 'partial_header':
      if (end.bytes > 0) result.damage.push({offset: end.offset, kind: 'partial_header', detail: `${end.bytes} bytes of a header still being written were left for the next backup`})
      break
  }
  return result
}

export function captureRecord(
  src: OpenSource,
  scan: ScanResult,
  entry: string,
  sha256: string,
  headSha256: string,
  tailSha256: string,
): FileCapture {
  const s = (v: bigint | null) => (v === null ? null : String(v))
  return {
    name: src.name,
    entry,
    offset: scan.start,
    length: scan.cut - scan.start,
    end: scan.cut,
    sha256,
    headSha256,
    tailOffset: scan.tailOffset,
    tailSha256,
    observedSize: src.size,
    inode: src.inode,
    source: src.source,
    ...(src.pid === undefined ? {} : {pid: src.pid}),
    records: scan.records,
    validRecords: scan.validRecords,
    episodes: scan.episodes,
    deletes: scan.deletes,
    firstSequence: s(scan.firstSequence),
    lastSequence: s(scan.lastSequence),
    firstTimestampNs: s(scan.firstTimestampNs),
    lastTimestampNs: s(scan.lastTimestampNs),
    damage: scan.damage,
  }
}
