/**
 * Capturing WAL files for a backup, in two passes over one open descriptor per file:
 *  1. walk the records from `start` up to the size seen at open time, checking both CRCs, and cut
 *     after the last record whose header and payload are whole and valid (a live file only grows, so
 *     this is a valid prefix; an in-flight record at the edge is left for the next backup);
 *     hashing the captured bytes record by record as they pass;
 *  2. stream exactly [start, cut) into the space's tar archive.
 * Holding the descriptor across both passes means a file unlinked in between is still read whole.
 * Pass 1 runs in a worker thread (scan-worker.ts) so it overlaps the main thread's pass 2.
 */
import type {FileHandle} from 'node:fs/promises'

import {createHasher, type HashAlgorithm, hashOf} from '../digest.js'
import {decodeEpisodeId} from '../engine/payload.js'
import {type ReadHandle, WalFileReader} from '../engine/reader.js'
import {EntryType, isEpisodeType} from '../engine/record.js'
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
  payloadHash: string
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

/** A scan plus the hashes the manifest keeps of the capture: all of [start, cut), the file's head, its last record. */
export interface CaptureScan extends ScanResult {
  hash: string
  headHash: string
  tailHash: string
}

/** The file a scan reads: name for messages, size snapshot, and an open descriptor. */
export interface ScanSource {
  name: string
  size: number
  handle: ReadHandle
}

const HEAD_BYTES = 4096

export async function hashRange(handle: ReadHandle, offset: number, length: number, algorithm: HashAlgorithm): Promise<string> {
  const h = createHasher(algorithm)
  const buf = Buffer.allocUnsafe(Math.min(length, 1024 * 1024) || 1)
  let done = 0
  while (done < length) {
    const {bytesRead} = await handle.read(buf, 0, Math.min(buf.length, length - done), offset + done)
    if (bytesRead === 0) throw new Error(`short read at ${offset + done}`)
    h.update(buf.subarray(0, bytesRead))
    done += bytesRead
  }
  return h.digest()
}

export function headLength(end: number): number {
  return Math.min(HEAD_BYTES, end)
}

/** Pass 1: where to cut, what the captured records are, and their hashes. Keeps up to `sampleSize` episode samples. */
export async function scanCapture(src: ScanSource, start: number, algorithm: HashAlgorithm, samples: Sample[], sampleSize: number, seen: {n: number}, signal?: AbortSignal): Promise<CaptureScan> {
  // A 1 MiB window: the scan is CPU-bound, and a backup's memory is counted against every byte.
  const reader = new WalFileReader(src.name, {handle: src.handle, start, limit: src.size, signal, windowSize: 1024 * 1024})
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
  // Counters as of the last valid record: records past the cut are not part of the capture. Only
  // `records` and `damage` can move past it (every other field changes only at a valid record).
  let recordsAtCut = 0
  let damageAtCut = 0
  // The captured bytes are hashed from the reader's window, one update per batch of adjacent records;
  // `hashedTo` says how far. Should that not end exactly at the cut (records past the last valid one,
  // a payload too large to be held whole), the range is hashed again from the file.
  const hash = createHasher(algorithm)
  let hashedTo = start
  for await (const batch of reader.batches()) {
    // Records of a batch that follow each other in the file follow each other in the window: the
    // span from the first one's start to the last one's end is hashed at once.
    let window: ArrayBufferLike | undefined
    let spanStart = 0
    let spanEnd = 0
    for (const rec of batch) {
      if (rec.bytes && rec.offset === hashedTo) {
        if (!window) {
          window = rec.bytes.buffer
          spanStart = rec.bytes.byteOffset
        }
        spanEnd = rec.bytes.byteOffset + rec.bytes.length
        hashedTo += rec.recordSize
      }
      r.records++
      if (rec.validity !== 'ok') {
        r.damage.push({offset: rec.offset, kind: 'bad_payload_crc', detail: 'payload CRC mismatch; Engram skips this record'})
        continue
      }
      r.validRecords++
      const {entryType, sequence, timestampNs} = rec.header
      const isStore = isEpisodeType(entryType)
      if (isStore) r.episodes++
      if (entryType === EntryType.MemoryDelete) r.deletes++
      r.firstSequence ??= sequence
      r.lastSequence = sequence
      if (r.firstTimestampNs === null || timestampNs < r.firstTimestampNs) r.firstTimestampNs = timestampNs
      if (r.lastTimestampNs === null || timestampNs > r.lastTimestampNs) r.lastTimestampNs = timestampNs
      r.tailOffset = rec.offset
      r.cut = rec.offset + rec.recordSize
      // Reservoir sampling of episodes, for level-4 verification (bounded memory).
      if (rec.payload && entryType === EntryType.EpisodeStore) {
        seen.n++
        const slot = samples.length < sampleSize ? samples.length : Math.floor(Math.random() * seen.n)
        if (slot < sampleSize) {
          try {
            samples[slot] = {id: decodeEpisodeId(rec.payload), file: src.name, offset: rec.offset, payloadHash: hashOf(algorithm, rec.payload)}
          } catch {
            // an undecodable id is not a useful sample
          }
        }
      }
      recordsAtCut = r.records
      damageAtCut = r.damage.length
    }
    if (window) hash.update(new Uint8Array(window, spanStart, spanEnd - spanStart))
  }
  const end = reader.end!
  const result: ScanResult = {...r, records: recordsAtCut, damage: r.damage.slice(0, damageAtCut)}
  const leftOut = r.records - recordsAtCut
  if (leftOut > 0) result.damage.push({offset: r.cut, kind: 'bad_payload_crc', detail: `${leftOut} ${leftOut === 1 ? 'record after the last valid one was' : 'records after the last valid one were'} left out (payload CRC mismatch)`})
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
  const capturedHash = hashedTo === result.cut ? hash.digest() : await hashRange(src.handle, start, result.cut - start, algorithm)
  const headHash = await hashRange(src.handle, 0, headLength(result.cut), algorithm)
  const tailHash = await hashRange(src.handle, result.tailOffset, result.cut - result.tailOffset, algorithm)
  return {...result, hash: capturedHash, headHash, tailHash}
}

export function captureRecord(src: OpenSource, scan: CaptureScan, entry: string): FileCapture {
  const s = (v: bigint | null) => (v === null ? null : String(v))
  return {
    name: src.name,
    entry,
    offset: scan.start,
    length: scan.cut - scan.start,
    end: scan.cut,
    hash: scan.hash,
    headHash: scan.headHash,
    tailOffset: scan.tailOffset,
    tailHash: scan.tailHash,
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
