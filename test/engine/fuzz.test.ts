/**
 * Fuzzing the WAL reader, the payload decoder and replay over mutated copies of the golden fixtures.
 *
 * Every case takes a fixture WAL file, mutates it (truncation, bit flips, overwritten runs, and
 * structure-aware edits that keep the CRCs valid so that garbage reaches the decoder), reads it with a
 * random window size (and sometimes a small maxInlinePayload, a size limit or a start offset), and
 * checks that:
 *   - nothing throws and every case finishes well within a time bound;
 *   - every byte of the file is classified: records are contiguous from the start offset, and
 *     [end.offset, size) is exactly what `end` says;
 *   - the result equals an independent in-memory model of Engram's reader (storage format §2.7);
 *   - a record reported `ok` has a payload whose CRC-32C matches, and decoding it never throws;
 *   - replaySpace over a data directory holding the mutated file never throws and agrees with the reader.
 *
 * The PRNG is seeded; a failure prints the seed and the case. Reproduce one case with
 *   FUZZ_SEED=<seed> FUZZ_CASE=<group>:<index> npx vitest run test/engine/fuzz.test.ts
 */
import {crc32c as nativeCrc32c} from '@node-rs/crc32'
import {closeSync, ftruncateSync, openSync, readFileSync, writeSync} from 'node:fs'
import {copyFile, mkdir, mkdtemp, readdir, rm, truncate} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {Worker} from 'node:worker_threads'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {crc32c, crc32cRange} from '../../src/lib/engine/crc32c.js'
import {decodePayload, decodePayloadMeta} from '../../src/lib/engine/decode.js'
import {type FileEnd, type ReadOptions, WalFileReader, type WalRecord} from '../../src/lib/engine/reader.js'
import {encodeRecord, HEADER_SIZE} from '../../src/lib/engine/record.js'
import {replaySpace} from '../../src/lib/engine/replay.js'
import {fixturesRoot, type Json, loadExpected} from '../support/fixtures.js'

const MASTER_SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) >>> 0 : 0x5eed_2024
const ONLY_CASE = process.env.FUZZ_CASE // "<group>:<index>"
/** No single case may take longer than this (a hang fails the case instead of the whole run). */
const CASE_TIME_LIMIT_MS = 5_000
const MAGIC = 0xdeadbeef

// ------------------------------------------------------------------------------------------ PRNG

/** mulberry32: small, fast, and independent of the engine's own generator. */
class Rng {
  private s: number
  constructor(seed: number) {
    this.s = seed >>> 0
  }

  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0
    let t = this.s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 4294967296) * n)
  }

  chance(p: number): boolean {
    return this.u32() / 4294967296 < p
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n)
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff
    return b
  }
}

function caseSeed(group: string, index: number): number {
  let h = MASTER_SEED ^ 0x811c9dc5
  for (const ch of `${group}:${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0
  return h >>> 0
}

// ------------------------------------------------------------------------ independent model

/** Table-driven CRC-32C, used to check the native one the engine and the model rely on. */
const CRC_TABLE = (() => {
  const t = new Int32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1
    t[n] = c
  }
  return t
})()

function tableCrc32c(data: Uint8Array): number {
  let c = -1
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8)
  return (c ^ -1) >>> 0
}

const modelCrc = (data: Uint8Array): number => nativeCrc32c(data as Buffer) >>> 0

interface ModelRecord {
  offset: number
  recordSize: number
  validity: 'ok' | 'bad_payload_crc'
  computedPayloadCrc: number
  sequence: bigint
  timestampNs: bigint
  entryType: number
  payloadSize: number
  payloadCrc: number
}

interface Model {
  records: ModelRecord[]
  end: Json
  size: number
  recordsRead: number
  lastGoodEnd: number
  lastValidEnd: number
}

/** Engram's reader over an in-memory buffer, written from the spec, not from reader.ts. */
function model(buf: Buffer, start = 0): Model {
  const size = buf.length
  const records: ModelRecord[] = []
  let pos = start
  let end: Json
  let lastValidEnd = start
  for (;;) {
    const rem = size - pos
    if (rem <= 0) {
      end = {kind: 'eof', offset: pos}
      break
    }
    if (rem < HEADER_SIZE) {
      end = {kind: 'partial_header', offset: pos, bytes: rem}
      break
    }
    const magic = buf.readUInt32LE(pos)
    const computedHeaderCrc = modelCrc(Buffer.concat([buf.subarray(pos, pos + 32), buf.subarray(pos + 36, pos + 56)]))
    if (magic !== MAGIC || buf.readUInt32LE(pos + 32) !== computedHeaderCrc) {
      end = {kind: 'bad_header', offset: pos, bytesDiscarded: rem, computedHeaderCrc}
      break
    }
    const payloadSize = buf.readUInt32LE(pos + 24)
    if (HEADER_SIZE + payloadSize > rem) {
      end = {kind: 'torn_payload', offset: pos, payloadBytesPresent: rem - HEADER_SIZE, truncateTo: pos}
      break
    }
    const payloadCrc = buf.readUInt32LE(pos + 28)
    const computedPayloadCrc = modelCrc(buf.subarray(pos + HEADER_SIZE, pos + HEADER_SIZE + payloadSize))
    const validity = computedPayloadCrc === payloadCrc ? 'ok' : 'bad_payload_crc'
    records.push({
      offset: pos,
      recordSize: HEADER_SIZE + payloadSize,
      validity,
      computedPayloadCrc,
      sequence: buf.readBigUInt64LE(pos + 4),
      timestampNs: buf.readBigUInt64LE(pos + 12),
      entryType: buf.readUInt32LE(pos + 20),
      payloadSize,
      payloadCrc,
    })
    pos += HEADER_SIZE + payloadSize
    if (validity === 'ok') lastValidEnd = pos
  }
  const walkedIntoHeader = end.kind === 'bad_header' || end.kind === 'torn_payload'
  return {records, end, size, recordsRead: records.length + (walkedIntoHeader ? 1 : 0), lastGoodEnd: pos, lastValidEnd}
}

// ----------------------------------------------------------------------------------- fixtures

interface Source {
  name: string
  bytes: Buffer
  /** Record boundaries (offsets of records the reader reaches, plus the end of the last one). */
  boundaries: number[]
  records: ModelRecord[]
}

function loadSmallSources(): Source[] {
  const out: Source[] = []
  for (const set of ['basic', 'multi', 'damaged']) {
    const expected = loadExpected(set)
    for (const space of Object.values<Json>(expected.spaces)) {
      for (const f of space.files) {
        const bytes = readFileSync(join(fixturesRoot, set, f.path))
        const m = model(bytes)
        out.push({
          name: `${set}/${f.path}`,
          bytes,
          boundaries: [...m.records.map((r) => r.offset), m.end.offset, ...(m.end.kind === 'eof' ? [] : [bytes.length])],
          records: m.records,
        })
      }
    }
  }
  return out
}

// ---------------------------------------------------------------------------------- mutations

function rewriteHeaderCrc(buf: Buffer, at: number): void {
  buf.writeUInt32LE(modelCrc(Buffer.concat([buf.subarray(at, at + 32), buf.subarray(at + 36, at + 56)])), at + 32)
}

function nearBoundary(rng: Rng, src: Source, len: number): number {
  const b = rng.pick(src.boundaries)
  return Math.max(0, Math.min(len, b + rng.int(HEADER_SIZE + 10) - 3))
}

type Mutation = (rng: Rng, buf: Buffer, src: Source, log: string[]) => Buffer

const truncateMut: Mutation = (rng, buf, src, log) => {
  const len = rng.chance(0.5) ? rng.int(buf.length + 1) : nearBoundary(rng, src, buf.length)
  log.push(`truncate(${len})`)
  return buf.subarray(0, len)
}

const bitFlips: Mutation = (rng, buf, src, log) => {
  if (buf.length === 0) return buf
  const out = Buffer.from(buf)
  const n = 1 + rng.int(8)
  for (let i = 0; i < n; i++) {
    const at = rng.chance(0.5) ? rng.int(out.length) : Math.min(out.length - 1, rng.pick(src.boundaries) + rng.int(HEADER_SIZE))
    const bit = rng.int(8)
    out[at] ^= 1 << bit
    log.push(`flip(${at}.${bit})`)
  }
  return out
}

const overwriteRun: Mutation = (rng, buf, _src, log) => {
  if (buf.length === 0) return buf
  const out = Buffer.from(buf)
  const at = rng.int(out.length)
  const len = Math.min(out.length - at, 1 + rng.int(200))
  const fill = rng.pick(['random', 'zero', 'ff', 'magic'] as const)
  if (fill === 'random') rng.bytes(len).copy(out, at)
  else if (fill === 'magic') for (let i = 0; i + 4 <= len; i += 4) out.writeUInt32LE(MAGIC, at + i)
  else out.fill(fill === 'zero' ? 0 : 0xff, at, at + len)
  log.push(`overwrite(${at},${len},${fill})`)
  return out
}

const appendGarbage: Mutation = (rng, buf, _src, log) => {
  const len = rng.pick([1, 37, 63, 64, 65, 200, 4000])
  const kind = rng.pick(['random', 'zero', 'header-like'] as const)
  let tail: Buffer
  if (kind === 'header-like') {
    // A valid header claiming a payload that is not (fully) there: a torn tail.
    tail = encodeRecord({sequence: BigInt(rng.u32()), timestampNs: 1n, entryType: 1, payload: rng.bytes(len)}).subarray(0, HEADER_SIZE + rng.int(len))
  } else {
    tail = kind === 'zero' ? Buffer.alloc(len) : rng.bytes(len)
  }
  log.push(`append(${kind},${tail.length})`)
  return Buffer.concat([buf, tail])
}

/** Edits one record and repairs its CRCs, so the damage reaches the framing or the decoder. */
const structural: Mutation = (rng, buf, src, log) => {
  const candidates = src.records.filter((r) => r.offset + r.recordSize <= buf.length)
  if (candidates.length === 0) return appendGarbage(rng, buf, src, log)
  const r = rng.pick(candidates)
  const header = buf.subarray(r.offset, r.offset + HEADER_SIZE)
  const payload = buf.subarray(r.offset + HEADER_SIZE, r.offset + r.recordSize)
  const sequence = header.readBigUInt64LE(4)
  const timestampNs = header.readBigUInt64LE(12)
  const entryType = header.readUInt32LE(20)
  const splice = (rec: Buffer) => Buffer.concat([buf.subarray(0, r.offset), rec, buf.subarray(r.offset + r.recordSize)])
  const op = rng.int(7)
  switch (op) {
    case 0: {
      // Wrong payload_size with a valid header CRC: the frame is misread from here on.
      const out = Buffer.from(buf)
      const size = rng.pick([0, 1, r.payloadSize - 1, r.payloadSize + 1, r.payloadSize + rng.int(9000) - 4500, rng.u32(), 0xffffffff])
      out.writeUInt32LE(Math.max(0, size) >>> 0, r.offset + 24)
      rewriteHeaderCrc(out, r.offset)
      log.push(`payload_size(${r.offset},${Math.max(0, size) >>> 0})`)
      return out
    }
    case 1: {
      // Another entry type over the same payload: an Episode read as a Memory, a delete id, a checkpoint…
      const type = rng.pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 255, rng.u32()])
      log.push(`entry_type(${r.offset},${type})`)
      return splice(encodeRecord({sequence, timestampNs, entryType: type, payload}))
    }
    case 2: {
      // Bit flips inside the payload, CRC repaired.
      const p = Buffer.from(payload)
      const n = 1 + rng.int(6)
      for (let i = 0; i < n && p.length > 0; i++) {
        // Favour the front of the payload, where the lengths, tags and strings are.
        const at = rng.chance(0.7) ? rng.int(Math.min(p.length, 200)) : rng.int(p.length)
        p[at] ^= 1 << rng.int(8)
      }
      log.push(`payload_flips(${r.offset},${n})`)
      return splice(encodeRecord({sequence, timestampNs, entryType: rng.chance(0.2) ? rng.pick([1, 2, 3, 5]) : entryType, payload: p}))
    }
    case 3: {
      // The payload cut short (or grown with garbage), CRC repaired.
      const cut = rng.int(payload.length + 1)
      const p = rng.chance(0.7) ? payload.subarray(0, cut) : Buffer.concat([payload, rng.bytes(1 + rng.int(40))])
      log.push(`payload_len(${r.offset},${p.length})`)
      return splice(encodeRecord({sequence, timestampNs, entryType: rng.chance(0.2) ? rng.pick([1, 2, 3, 5]) : entryType, payload: p}))
    }
    case 4: {
      // A payload of random bytes; sometimes with a plausible string/length prefix.
      const len = rng.pick([0, 1, 7, 8, 9, 16, 100, 3200, rng.int(5000)])
      const p = rng.bytes(len)
      if (len >= 8 && rng.chance(0.5)) p.writeBigUInt64LE(BigInt(rng.int(len)), 0)
      const type = rng.pick([0, 1, 2, 3, 5, 7])
      log.push(`random_payload(${r.offset},${type},${len})`)
      return splice(encodeRecord({sequence, timestampNs, entryType: type, payload: p}))
    }
    case 5: {
      // A field-level edit of a bincode length/tag near the front of an episode (big lengths, bad tags).
      const p = Buffer.from(payload)
      if (p.length >= 16) {
        const at = rng.int(Math.min(p.length - 8, 120))
        p.writeBigUInt64LE(rng.pick([0n, 1n, 767n, 768n, 769n, 0xffffffffn, 0x100000000n, 0xffffffffffffffffn, BigInt(rng.u32())]), at)
        log.push(`u64_field(${r.offset},${at})`)
      }
      return splice(encodeRecord({sequence, timestampNs, entryType, payload: p}))
    }
    default: {
      // Delete or duplicate the record (frames stay valid, sequences/ids repeat or vanish).
      if (rng.chance(0.5)) {
        log.push(`drop(${r.offset})`)
        return Buffer.concat([buf.subarray(0, r.offset), buf.subarray(r.offset + r.recordSize)])
      }
      log.push(`dup(${r.offset})`)
      return Buffer.concat([buf.subarray(0, r.offset + r.recordSize), buf.subarray(r.offset, r.offset + r.recordSize), buf.subarray(r.offset + r.recordSize)])
    }
  }
}

const WINDOW_SIZES = [1, 63, 64, 65, 100, 127, 1000, 4096, 65_536, undefined] as const

function readOptions(rng: Rng, len: number, src: Source, log: string[]): {opts: ReadOptions; start: number; limit: number} {
  const opts: ReadOptions = {}
  const ws = rng.chance(0.1) ? 1 + rng.int(10_000) : rng.pick(WINDOW_SIZES)
  if (ws !== undefined) opts.windowSize = ws
  if (rng.chance(0.15)) opts.maxInlinePayload = rng.pick([0, 1, 100, 3000, 3500, 5000])
  let start = 0
  let limit = len
  if (rng.chance(0.1)) {
    limit = rng.int(len + 1)
    opts.limit = limit
  }
  if (rng.chance(0.1)) {
    // A record boundary of the original file (it may no longer be one after mutation: still must not throw).
    start = Math.min(rng.pick(src.boundaries), len + 10)
    opts.start = start
  }
  log.push(`opts(${JSON.stringify(opts)})`)
  return {opts, start, limit}
}

// ------------------------------------------------------------------------------------- checks

interface ReadResult {
  records: Array<Omit<WalRecord, 'payload'> & {payloadLength?: number; payloadCrcOk?: boolean; decodeKind?: string; metaKind?: string}>
  end: FileEnd
  size: number
  recordsRead: number
  lastGoodEnd: number
  lastValidEnd: number
}

const DECODE_KINDS = new Set(['episode', 'memory', 'delete', 'checkpoint', 'not_applicable', 'error'])

async function readAll(path: string, opts: ReadOptions): Promise<ReadResult> {
  const reader = new WalFileReader(path, opts)
  const records: ReadResult['records'] = []
  for await (const rec of reader.records()) {
    const {payload, ...rest} = rec
    const entry: ReadResult['records'][number] = {...rest, header: {...rec.header}}
    if (payload) {
      // Checked while the payload view is still valid (it is reused for the next record).
      entry.payloadLength = payload.length
      entry.payloadCrcOk = modelCrc(payload) === rec.header.payloadCrc
      if (rec.validity === 'ok') {
        entry.decodeKind = decodePayload(rec.header.entryType, payload).kind
        entry.metaKind = decodePayloadMeta(rec.header.entryType, payload).kind
      }
    }
    records.push(entry)
  }
  return {records, end: reader.end!, size: reader.size, recordsRead: reader.recordsRead, lastGoodEnd: reader.lastGoodEnd, lastValidEnd: reader.lastValidEnd}
}

/**
 * Every byte range classified: returns the violated rules (empty when all hold). Collected rather than
 * asserted one by one, so a failure shows all of them at once (and 10,000 cases stay fast).
 */
function classificationViolations(r: ReadResult, start: number, opts: ReadOptions): string[] {
  const bad: string[] = []
  const rule = (ok: boolean, text: string) => {
    if (!ok) bad.push(text)
  }
  const maxInline = opts.maxInlinePayload ?? 64 * 1024 * 1024
  let pos = start
  for (const [i, rec] of r.records.entries()) {
    const at = `record ${i} at ${rec.offset}`
    rule(rec.index === i, `${at}: index ${rec.index}`)
    rule(rec.offset === pos, `${at}: not contiguous, expected offset ${pos}`)
    rule(rec.recordSize === HEADER_SIZE + rec.header.payloadSize, `${at}: recordSize ${rec.recordSize} != 64 + ${rec.header.payloadSize}`)
    rule(rec.offset + rec.recordSize <= r.size, `${at}: runs past the size ${r.size}`)
    rule(rec.header.magic === MAGIC, `${at}: yielded with magic ${rec.header.magic}`)
    rule(rec.validity === (rec.computedPayloadCrc === rec.header.payloadCrc ? 'ok' : 'bad_payload_crc'), `${at}: validity ${rec.validity} vs CRCs`)
    if (rec.header.payloadSize <= maxInline) {
      rule(rec.payloadLength === rec.header.payloadSize, `${at}: payload of ${rec.payloadLength} bytes, header says ${rec.header.payloadSize}`)
      // An ok record's payload has the CRC-32C its header says; a bad one does not.
      rule(rec.payloadCrcOk === (rec.validity === 'ok'), `${at}: ${rec.validity} but payload CRC match is ${rec.payloadCrcOk}`)
      if (rec.validity === 'ok') {
        rule(DECODE_KINDS.has(rec.decodeKind!), `${at}: decode kind ${rec.decodeKind}`)
        // The meta decoder validates exactly what the full decoder does.
        rule((rec.metaKind === 'error') === (rec.decodeKind === 'error'), `${at}: decode ${rec.decodeKind} but meta ${rec.metaKind}`)
      }
    } else {
      rule(rec.payloadLength === undefined, `${at}: payload above maxInlinePayload exposed`)
    }
    pos += rec.recordSize
  }
  // The end starts where the last record ends and accounts for every byte after it.
  const end = r.end
  rule(end.offset === pos, `end ${end.kind} at ${end.offset}, last record ends at ${pos}`)
  rule(r.lastGoodEnd === pos, `lastGoodEnd ${r.lastGoodEnd} != ${pos}`)
  switch (end.kind) {
    case 'eof':
      rule(end.offset === Math.max(r.size, start), `eof at ${end.offset}, size ${r.size}`)
      break
    case 'partial_header':
      rule(end.bytes === r.size - end.offset, `partial_header bytes ${end.bytes} != ${r.size} - ${end.offset}`)
      rule(end.bytes > 0 && end.bytes < HEADER_SIZE, `partial_header bytes ${end.bytes} not in [1, 64)`)
      break
    case 'bad_header':
      rule(end.bytesDiscarded === r.size - end.offset, `bad_header bytesDiscarded ${end.bytesDiscarded} != ${r.size} - ${end.offset}`)
      rule(end.bytesDiscarded >= HEADER_SIZE, `bad_header with only ${end.bytesDiscarded} bytes`)
      rule(
        /^(bad magic 0x[0-9a-f]{8}|header_crc mismatch: stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8})$/.test(end.error),
        `bad_header error ${JSON.stringify(end.error)}`,
      )
      break
    case 'torn_payload':
      rule(end.offset + HEADER_SIZE + end.payloadBytesPresent === r.size, `torn_payload ${end.offset} + 64 + ${end.payloadBytesPresent} != ${r.size}`)
      rule(end.payloadBytesPresent >= 0 && end.payloadBytesPresent < end.header.payloadSize, `torn_payload present ${end.payloadBytesPresent} of ${end.header.payloadSize}`)
      rule(end.truncateTo === end.offset, `torn_payload truncateTo ${end.truncateTo}`)
      break
    default:
      bad.push(`unknown end ${JSON.stringify(end)}`)
  }
  return bad
}

/** What the reader reported, in the model's shape. */
function asModel(r: ReadResult): Model {
  const e = r.end as Json
  const end: Json = {kind: e.kind, offset: e.offset}
  if (e.kind === 'partial_header') end.bytes = e.bytes
  if (e.kind === 'bad_header') Object.assign(end, {bytesDiscarded: e.bytesDiscarded, computedHeaderCrc: e.computedHeaderCrc})
  if (e.kind === 'torn_payload') Object.assign(end, {payloadBytesPresent: e.payloadBytesPresent, truncateTo: e.truncateTo})
  return {
    records: r.records.map((x) => ({
      offset: x.offset,
      recordSize: x.recordSize,
      validity: x.validity,
      computedPayloadCrc: x.computedPayloadCrc,
      sequence: x.header.sequence,
      timestampNs: x.header.timestampNs,
      entryType: x.header.entryType,
      payloadSize: x.header.payloadSize,
      payloadCrc: x.header.payloadCrc,
    })),
    end,
    size: r.size,
    recordsRead: r.recordsRead,
    lastGoodEnd: r.lastGoodEnd,
    lastValidEnd: r.lastValidEnd,
  }
}

/** Deep equality for the plain model objects (bigints included); much cheaper than expect().toEqual per case. */
function sameModel(a: Model, b: Model): boolean {
  if (a.size !== b.size || a.recordsRead !== b.recordsRead || a.lastGoodEnd !== b.lastGoodEnd || a.lastValidEnd !== b.lastValidEnd) return false
  if (a.records.length !== b.records.length) return false
  const keys = Object.keys(a.end)
  if (keys.length !== Object.keys(b.end).length || keys.some((k) => a.end[k] !== b.end[k])) return false
  return a.records.every((x, i) => (Object.keys(x) as Array<keyof ModelRecord>).every((k) => x[k] === b.records[i][k]))
}

// ------------------------------------------------------------------------------------- watchdog

/**
 * A reader bug that loops without real I/O (an `ensure()` that returns the same window forever) spins
 * on microtasks: no timer in this thread can fire then, so neither vitest's test timeout nor the
 * per-case time limit would ever trigger and the run would hang. A watchdog thread watches a
 * heartbeat in shared memory; when the cases in flight make no progress for WATCHDOG_MS it prints
 * them (with the seed) and kills this test process, which vitest then reports as a failure.
 */
const WATCHDOG_MS = 15_000
const GROUPS = ['truncate', 'flip', 'struct', 'mixed', 'large'] as const
/** [active, heartbeat, then (group, index + 1) per slot]. */
const heartbeat = new Int32Array(new SharedArrayBuffer(4 * 12))
let watchdog: Worker | undefined

function startWatchdog(): void {
  const code = `
    const {workerData} = require('node:worker_threads')
    const {writeSync} = require('node:fs')
    const hb = new Int32Array(workerData.buffer)
    let last = -1
    let since = Date.now()
    setInterval(() => {
      const beat = Atomics.load(hb, 1)
      if (Atomics.load(hb, 0) === 0 || beat !== last) {
        last = beat
        since = Date.now()
        return
      }
      if (Date.now() - since < workerData.limit) return
      const cases = []
      for (let i = 2; i + 1 < hb.length; i += 2) {
        const index = Atomics.load(hb, i + 1) - 1
        if (index >= 0) cases.push(workerData.groups[Atomics.load(hb, i)] + ':' + index)
      }
      writeSync(2, '\\nfuzz watchdog: no progress for ' + workerData.limit + ' ms (a hang in the reader?); cases in flight: ' +
        cases.map((c) => 'FUZZ_SEED=' + workerData.seed + ' FUZZ_CASE=' + c).join(', ') + '; killing the test process\\n')
      process.kill(process.pid, 'SIGKILL')
    }, 200)
  `
  watchdog = new Worker(code, {eval: true, workerData: {buffer: heartbeat.buffer, limit: WATCHDOG_MS, groups: GROUPS, seed: MASTER_SEED}})
  watchdog.unref()
}

function beat(slot?: number, group?: string, index?: number): void {
  Atomics.store(heartbeat, 0, 1)
  Atomics.add(heartbeat, 1, 1)
  if (slot !== undefined) {
    Atomics.store(heartbeat, 2 + 2 * slot, GROUPS.indexOf(group as (typeof GROUPS)[number]))
    Atomics.store(heartbeat, 3 + 2 * slot, index === undefined ? 0 : index + 1)
  }
}

// --------------------------------------------------------------------------------------- runner

/**
 * Cases run CONCURRENCY at a time (the reader is I/O bound: its awaits leave the CPU idle), each slot
 * with its own data directory `<tmp>/slot-N/default/wal/wal-0000000000000001.log`. The file stays open
 * and is rewritten in place (overwrite + ftruncate is ~50x cheaper than writeFile's O_TRUNC on ext4).
 */
const CONCURRENCY = 4

interface Slot {
  root: string
  walDir: string
  walPath: string
  fd: number
}

let tmp: string
let slots: Slot[] = []
let sources: Source[]

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'engram-fuzz-'))
  for (let i = 0; i < CONCURRENCY; i++) {
    const root = join(tmp, `slot-${i}`)
    const walDir = join(root, 'default', 'wal')
    await mkdir(walDir, {recursive: true})
    const walPath = join(walDir, 'wal-0000000000000001.log')
    slots.push({root, walDir, walPath, fd: openSync(walPath, 'w+')})
  }
  sources = loadSmallSources()
  startWatchdog()
})

afterAll(async () => {
  Atomics.store(heartbeat, 0, 0)
  await watchdog?.terminate()
  for (const s of slots) closeSync(s.fd)
  slots = []
  await rm(tmp, {recursive: true, force: true})
})

function writeCaseFile(slot: Slot, buf: Buffer): void {
  let done = 0
  while (done < buf.length) done += writeSync(slot.fd, buf, done, buf.length - done, done)
  ftruncateSync(slot.fd, buf.length)
}

function withTimeLimit<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${CASE_TIME_LIMIT_MS} ms`)), CASE_TIME_LIMIT_MS)
  })
  return Promise.race([work, limit]).finally(() => clearTimeout(timer))
}

/** Checks a read against the rules and the model; throws with every difference when they disagree. */
function verifyRead(result: ReadResult, expected: Model, start: number, opts: ReadOptions): void {
  const violations = classificationViolations(result, start, opts)
  if (violations.length > 0) expect(violations).toEqual([])
  if (!sameModel(asModel(result), expected)) expect(asModel(result)).toEqual(expected)
}

/** Replay over a data directory holding the mutated file: never throws, agrees with the model. */
async function verifyReplay(slot: Slot, buf: Buffer): Promise<void> {
  const replay = await withTimeLimit(
    replaySpace({id: 'default', dirName: 'default', path: join(slot.root, 'default'), walDir: slot.walDir}, {applyLog: true}),
    'replay',
  )
  const full = model(buf)
  const ok = full.records.filter((x) => x.validity === 'ok').length
  const c = replay.counters
  const f = replay.files[0]
  const got = {
    files: replay.files.length,
    end: [f?.end.kind, f?.end.offset],
    recordsRead: f?.recordsRead,
    validRecords: f?.validRecords,
    entriesScanned: c.entriesScanned,
    sums: [c.recovered + c.skipped + c.failed, c.episodesStored + c.deletesApplied, c.duplicatesSkipped + c.ignoredEntryTypes, replay.live.size],
    applyLog: replay.applyLog?.length,
    damage: replay.damage.length,
    engram: replay.engram.outcome,
  }
  const want = {
    files: 1,
    end: [full.end.kind, full.end.offset],
    recordsRead: full.recordsRead,
    validRecords: ok,
    entriesScanned: ok,
    sums: [ok, c.recovered, c.skipped, c.liveCount],
    applyLog: ok,
    // One finding per bad payload CRC, per undecodable payload, and for an end that is not a clean EOF.
    damage: full.records.length - ok + c.failed + (full.end.kind === 'eof' ? 0 : 1),
    engram: full.end.kind === 'torn_payload' ? 'error' : 'ok',
  }
  if (JSON.stringify(got) !== JSON.stringify(want)) expect(got).toEqual(want)
}

interface CaseStats {
  cases: number
  replays: number
  decodeKinds: Record<string, number>
  ends: Record<string, number>
}

const totals: CaseStats = {cases: 0, replays: 0, decodeKinds: {}, ends: {}}

async function runCase(slot: Slot, group: string, index: number, mutations: Mutation[], replayChance: number): Promise<void> {
  const seed = caseSeed(group, index)
  const rng = new Rng(seed)
  const src = rng.pick(sources)
  const log: string[] = []
  const describeCase = () => `fuzz case ${group}:${index} (FUZZ_SEED=${MASTER_SEED} FUZZ_CASE=${group}:${index}, case seed ${seed}) on ${src.name}: ${log.join(' ')}`
  try {
    let buf: Buffer = src.bytes
    for (const mutate of mutations) buf = mutate(rng, buf, src, log)
    const {opts, start, limit} = readOptions(rng, buf.length, src, log)
    const replay = rng.chance(replayChance) || ONLY_CASE !== undefined
    writeCaseFile(slot, buf)
    const started = performance.now()
    const result = await withTimeLimit(readAll(slot.walPath, opts), 'reading')
    verifyRead(result, model(buf.subarray(0, limit), start), start, opts)
    if (replay) await verifyReplay(slot, buf)
    const elapsed = performance.now() - started
    if (elapsed >= CASE_TIME_LIMIT_MS) expect(elapsed).toBeLessThan(CASE_TIME_LIMIT_MS)
    totals.cases++
    if (replay) totals.replays++
    for (const r of result.records) if (r.decodeKind) totals.decodeKinds[r.decodeKind] = (totals.decodeKinds[r.decodeKind] ?? 0) + 1
    totals.ends[result.end.kind] = (totals.ends[result.end.kind] ?? 0) + 1
  } catch (error) {
    const message = `${describeCase()}\n${(error as Error).message}`
    console.error(message)
    throw Object.assign(new Error(message), {stack: (error as Error).stack})
  }
}

async function runGroup(group: string, count: number, replayChance: number, pickMutations: (rng: Rng) => Mutation[]): Promise<number> {
  const indexes = Array.from({length: count}, (_, i) => i).filter((i) => !ONLY_CASE || ONLY_CASE === `${group}:${i}`)
  let next = 0
  let failed = false
  let n = 0
  await Promise.all(
    slots.map(async (slot, s) => {
      while (!failed && next < indexes.length) {
        const i = indexes[next++]
        beat(s, group, i)
        // The mutation plan comes from its own stream: a case reproduces from (seed, group, index) alone.
        const muts = pickMutations(new Rng(caseSeed(`${group}/plan`, i)))
        try {
          await runCase(slot, group, i, muts, replayChance)
        } catch (error) {
          failed = true
          throw error
        }
        n++
      }
      beat(s, group)
    }),
  )
  return n
}

const ALL: Mutation[] = [truncateMut, bitFlips, overwriteRun, appendGarbage, structural]

describe(`WAL fuzzing (FUZZ_SEED=${MASTER_SEED})`, () => {
  it('the CRC-32Cs the engine (native and JavaScript) and the model use match a table implementation and the spec vectors', () => {
    expect(tableCrc32c(Buffer.from('123456789'))).toBe(0xe3069283)
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283)
    expect(crc32c(Buffer.from('abc'))).toBe(0x364b3fb7)
    const rng = new Rng(MASTER_SEED)
    for (let i = 0; i < 200; i++) {
      const b = rng.bytes(rng.int(5000))
      const expected = tableCrc32c(b)
      expect(crc32c(b)).toBe(expected)
      expect(modelCrc(b)).toBe(expected)
      const cut = rng.int(b.length + 1)
      expect(crc32c(b.subarray(cut), crc32c(b.subarray(0, cut)))).toBe(expected)
      // The JavaScript loop used for record headers, whole and continued across a cut.
      expect(crc32cRange(b, 0, b.length)).toBe(expected)
      expect(crc32cRange(b, cut, b.length, crc32cRange(b, 0, cut))).toBe(expected)
    }
    // The model reproduces every fixture's classification (a sanity check of the oracle itself).
    for (const set of ['basic', 'multi', 'damaged']) {
      for (const space of Object.values<Json>(loadExpected(set).spaces)) {
        for (const f of space.files) {
          const m = model(readFileSync(join(fixturesRoot, set, f.path)))
          expect(m.end.kind).toBe(f.end.kind)
          expect(m.end.offset).toBe(f.end.offset)
          expect(m.recordsRead).toBe(f.records_read)
          expect(m.records.map((r) => [r.offset, r.validity])).toEqual(
            f.records.filter((r: Json) => r.validity === 'ok' || r.validity === 'bad_payload_crc').map((r: Json) => [r.offset, r.validity]),
          )
        }
      }
    }
  })

  it('random truncations (3,000 cases)', async () => {
    expect(await runGroup('truncate', 3000, 0.05, () => [truncateMut])).toBe(ONLY_CASE ? Number(ONLY_CASE.startsWith('truncate:')) : 3000)
  }, 120_000)

  it('random bit flips and overwritten runs (3,000 cases)', async () => {
    expect(
      await runGroup('flip', 3000, 0.05, (rng) => (rng.chance(0.7) ? [bitFlips] : rng.chance(0.5) ? [overwriteRun] : [bitFlips, truncateMut])),
    ).toBe(ONLY_CASE ? Number(ONLY_CASE.startsWith('flip:')) : 3000)
  }, 120_000)

  it('structure-aware mutations with repaired CRCs: misframing and garbage payloads reach the decoder (2,500 cases)', async () => {
    expect(
      await runGroup('struct', 2500, 0.3, (rng) => (rng.chance(0.7) ? [structural] : rng.chance(0.5) ? [structural, structural] : [structural, truncateMut])),
    ).toBe(ONLY_CASE ? Number(ONLY_CASE.startsWith('struct:')) : 2500)
  }, 120_000)

  it('mixed mutations (1,500 cases)', async () => {
    expect(
      await runGroup('mixed', 1500, 0.2, (rng) => Array.from({length: 1 + rng.int(4)}, () => rng.pick(ALL))),
    ).toBe(ONLY_CASE ? Number(ONLY_CASE.startsWith('mixed:')) : 1500)
  }, 120_000)

  it('the large set, truncated at a few points (header, payload and record boundaries)', async () => {
    if (ONLY_CASE && !ONLY_CASE.startsWith('large:')) return
    const expected = loadExpected('large')
    const file = expected.spaces.default.files[0]
    const original = readFileSync(join(fixturesRoot, 'large', file.path))
    expect(original.length).toBe(17_972_683)
    const full = model(original)
    expect(full.records).toHaveLength(5000)
    const rng = new Rng(caseSeed('large', 0))
    const mid = full.records[2500]
    // Descending, so one copy can be truncated step by step.
    const points = [
      original.length, // intact
      original.length - 1, // torn last payload
      full.records[4999].offset + 37, // partial header
      mid.offset + HEADER_SIZE + 1 + rng.int(mid.payloadSize - 2), // torn mid payload
      mid.offset, // exactly a boundary
      full.records[1].offset + 10 + rng.int(full.records[1].recordSize - 20),
      HEADER_SIZE - 1,
      0,
    ]
    const copy = join(tmp, 'large.log')
    await copyFile(join(fixturesRoot, 'large', file.path), copy)
    let done = 0
    for (const [i, len] of points.entries()) {
      await truncate(copy, len)
      const m = model(original.subarray(0, len))
      for (const windowSize of [undefined, 65_536, 100]) {
        const opts: ReadOptions = windowSize === undefined ? {} : {windowSize}
        const what = `large truncate(${len}) opts ${JSON.stringify(opts)} (FUZZ_CASE=large:${i})`
        beat(0, 'large', i)
        try {
          const r = await withTimeLimit(readAll(copy, opts), what)
          verifyRead(r, m, 0, opts)
          done++
        } catch (error) {
          throw new Error(`${what}: ${(error as Error).message}`)
        }
      }
    }
    beat(0, 'large')
    expect(done).toBe(points.length * 3)
    expect(model(original.subarray(0, points[3])).end.kind).toBe('torn_payload')
    expect(model(original.subarray(0, points[2])).end).toEqual({kind: 'partial_header', offset: full.records[4999].offset, bytes: 37})
    totals.cases += done
  }, 120_000)

  it('ran at least 10,000 cases, leaving no stray files', async () => {
    if (ONLY_CASE) return
    console.log(`fuzz: ${JSON.stringify(totals)}`)
    expect(totals.cases).toBe(10_000 + 24)
    expect(totals.replays).toBeGreaterThan(1000)
    // The cases reached every kind of end and every decoder outcome, garbage included.
    for (const kind of ['eof', 'partial_header', 'bad_header', 'torn_payload']) expect(totals.ends[kind]).toBeGreaterThan(200)
    for (const kind of ['episode', 'error', 'delete', 'checkpoint', 'not_applicable']) expect(totals.decodeKinds[kind]).toBeGreaterThan(50)
    expect(totals.decodeKinds.memory).toBeGreaterThan(0)
    for (const slot of slots) expect(await readdir(slot.walDir)).toEqual(['wal-0000000000000001.log'])
  })
})
