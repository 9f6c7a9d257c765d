/**
 * Focused tests of WalFileReader: window sizes never change what is read, `limit` (a size snapshot)
 * and `start` (incremental reads) cut and resume at exact offsets, payloads above maxInlinePayload are
 * CRC-checked by streaming, and a file that grows while it is read is read only up to its snapshot.
 */
import {appendFile, mkdtemp, open, rm, truncate, writeFile} from 'node:fs/promises'
import {readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {Worker} from 'node:worker_threads'
import {join} from 'node:path'
import {afterAll, afterEach, beforeAll, beforeEach, describe, expect, it} from 'vitest'

import {crc32c} from '../../src/lib/engine/crc32c.js'
import {type ReadOptions, readPayloadAt, WalFileReader} from '../../src/lib/engine/reader.js'
import {encodeRecord, HEADER_SIZE} from '../../src/lib/engine/record.js'
import {FIXTURE_SETS, fixturesRoot, type Json, loadExpected, sha256} from '../support/fixtures.js'

/** Everything a walk reports, with payloads as digests (they are views, valid only until the next record). */
async function snapshot(path: string, options: ReadOptions = {}): Promise<Json> {
  const reader = new WalFileReader(path, options)
  const records: Json[] = []
  for await (const r of reader.records()) {
    records.push({
      index: r.index,
      offset: r.offset,
      header: r.header,
      validity: r.validity,
      recordSize: r.recordSize,
      computedPayloadCrc: r.computedPayloadCrc,
      payload: r.payload === undefined ? undefined : sha256(r.payload),
    })
  }
  return {records, end: reader.end, size: reader.size, recordsRead: reader.recordsRead, lastGoodEnd: reader.lastGoodEnd, lastValidEnd: reader.lastValidEnd}
}

interface FixtureFile {
  set: string
  path: string
  file: Json
}

const FILES: FixtureFile[] = FIXTURE_SETS.flatMap((set) =>
  Object.values<Json>(loadExpected(set).spaces).flatMap((space) => space.files.map((file: Json) => ({set, path: join(fixturesRoot, set, file.path), file}))),
)

const basicExpected = loadExpected('basic').spaces.default.files[0]
const BASIC = join(fixturesRoot, 'basic', basicExpected.path)
const basicRecords: Json[] = basicExpected.records
const BASIC_SIZE = 43_439

/**
 * A reader bug that loops on microtasks (no I/O) starves this thread's timers, so vitest's test
 * timeout never fires and the run hangs. A watchdog thread kills this test process (vitest reports
 * the failure) when one test runs longer than WATCHDOG_MS.
 */
const WATCHDOG_MS = 45_000
const running = new Int32Array(new SharedArrayBuffer(8))
let watchdog: Worker | undefined

let tmp: string
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'engram-reader-'))
  watchdog = new Worker(
    `const {workerData} = require('node:worker_threads')
     const {writeSync} = require('node:fs')
     const s = new Int32Array(workerData.buffer)
     let seen = 0, since = Date.now()
     setInterval(() => {
       const t = Atomics.load(s, 1)
       if (Atomics.load(s, 0) === 0 || t !== seen) { seen = t; since = Date.now(); return }
       if (Date.now() - since < workerData.limit) return
       writeSync(2, 'reader.test watchdog: test #' + t + ' made no progress for ' + workerData.limit + ' ms (a reader hang?); killing the test process' + String.fromCharCode(10))
       process.kill(process.pid, 'SIGKILL')
     }, 250)`,
    {eval: true, workerData: {buffer: running.buffer, limit: WATCHDOG_MS}},
  )
  watchdog.unref()
})
beforeEach(() => {
  Atomics.add(running, 1, 1)
  Atomics.store(running, 0, 1)
})
afterEach(() => {
  Atomics.store(running, 0, 0)
})
afterAll(async () => {
  await watchdog?.terminate()
  await rm(tmp, {recursive: true, force: true})
})

describe('window sizes', () => {
  it('the fixtures hold 12 WAL files in 4 sets', () => {
    expect(FILES.map((f) => `${f.set}/${f.file.name}`)).toEqual([
      'basic/wal-0000000065edbce0.log',
      'multi/wal-0000000065ef0e60.log',
      'multi/wal-0000000065ef580e.log',
      'multi/wal-0000000065ef1568.log',
      'multi/wal-0000000065ef17c0.log',
      'damaged/wal-0000000065f06373.log',
      'damaged/wal-0000000065f068ef.log',
      'damaged/wal-0000000065f06dea.log',
      'damaged/wal-0000000065f07a79.log',
      'damaged/wal-0000000065f0865c.log',
      'damaged/wal-0000000065f09376.log',
      'large/wal-0000000065f1b160.log',
    ])
  })

  for (const {set, path, file} of FILES) {
    const large = set === 'large'
    const sizes = large ? [100, 4096, 65_536, 1 << 20] : [1, 63, 64, 65, 100, 1000, 3500, 4096, 65_536]
    it(`${set}/${file.name}: window sizes ${sizes.join(', ')} read exactly what the default window reads`, async () => {
      const reference = await snapshot(path)
      // The reference itself is what expected.json says.
      const walked = file.records ? file.records.filter((r: Json) => r.validity === 'ok' || r.validity === 'bad_payload_crc') : null
      expect(reference.records).toHaveLength(walked ? walked.length : 5000)
      if (walked) expect(reference.records.map((r: Json) => [r.offset, r.validity, r.payload])).toEqual(walked.map((r: Json) => [r.offset, r.validity, r.payload_sha256]))
      expect(reference.size).toBe(file.size)
      expect(reference.recordsRead).toBe(file.records_read)
      expect(reference.end.kind).toBe(file.end.kind)
      expect(reference.end.offset).toBe(file.end.offset)
      for (const windowSize of sizes) {
        expect({windowSize, ...(await snapshot(path, {windowSize}))}).toEqual({windowSize, ...reference})
      }
    }, 60_000)
  }
})

describe('limit: a size snapshot', () => {
  const r5 = basicRecords[5]

  it('basic record 5 is where these cases cut', () => {
    expect([r5.offset, r5.record_size, r5.payload_size]).toEqual([18_057, 3476, 3412])
  })

  for (const windowSize of [undefined, 100, 4096]) {
    const opts = windowSize === undefined ? {} : {windowSize}
    it(`cuts mid-payload and reports torn_payload at the record's offset (window ${windowSize ?? 'default'})`, async () => {
      const s = await snapshot(BASIC, {...opts, limit: r5.offset + HEADER_SIZE + 100})
      expect(s.records.map((r: Json) => r.offset)).toEqual([0, 3369, 7123, 10_622, 14_373])
      expect(s.records.every((r: Json) => r.validity === 'ok')).toBe(true)
      expect(s.end).toMatchObject({kind: 'torn_payload', offset: 18_057, payloadBytesPresent: 100, truncateTo: 18_057})
      expect(s.end.header.payloadSize).toBe(3412)
      expect(s.end.header.sequence).toBe(5n)
      expect([s.size, s.recordsRead, s.lastGoodEnd, s.lastValidEnd]).toEqual([18_221, 6, 18_057, 18_057])
    })

    it(`cuts right after a header: torn_payload with 0 payload bytes (window ${windowSize ?? 'default'})`, async () => {
      const s = await snapshot(BASIC, {...opts, limit: r5.offset + HEADER_SIZE})
      expect(s.records).toHaveLength(5)
      expect(s.end).toMatchObject({kind: 'torn_payload', offset: 18_057, payloadBytesPresent: 0, truncateTo: 18_057})
      expect([s.size, s.recordsRead]).toEqual([18_121, 6])
    })

    it(`cuts mid-header: partial_header, a clean end (window ${windowSize ?? 'default'})`, async () => {
      const s = await snapshot(BASIC, {...opts, limit: r5.offset + 30})
      expect(s.records).toHaveLength(5)
      expect(s.end).toEqual({kind: 'partial_header', offset: 18_057, bytes: 30})
      expect([s.size, s.recordsRead, s.lastGoodEnd, s.lastValidEnd]).toEqual([18_087, 5, 18_057, 18_057])
    })

    it(`cuts at a record boundary: eof there (window ${windowSize ?? 'default'})`, async () => {
      const s = await snapshot(BASIC, {...opts, limit: r5.offset})
      expect(s.records).toHaveLength(5)
      expect(s.end).toEqual({kind: 'eof', offset: 18_057})
      expect([s.size, s.recordsRead]).toEqual([18_057, 5])
    })
  }

  it('limit 0 reads nothing; a limit past the end reads the whole file', async () => {
    const none = await snapshot(BASIC, {limit: 0})
    expect(none.records).toEqual([])
    expect(none.end).toEqual({kind: 'eof', offset: 0})
    expect([none.size, none.recordsRead, none.lastGoodEnd]).toEqual([0, 0, 0])
    const all = await snapshot(BASIC, {limit: 10 * BASIC_SIZE})
    expect(all.records).toHaveLength(14)
    expect(all.end).toEqual({kind: 'eof', offset: BASIC_SIZE})
    expect(all.size).toBe(BASIC_SIZE)
  })

  it('a limit inside a damaged region reports the damage at its offset (damaged/B, bad magic at 10729)', async () => {
    const path = join(fixturesRoot, 'damaged', 'default', 'wal', 'wal-0000000065f068ef.log')
    const before = await snapshot(path, {limit: 10_729 + 63})
    expect(before.records).toHaveLength(3)
    expect(before.end).toEqual({kind: 'partial_header', offset: 10_729, bytes: 63})
    const at = await snapshot(path, {limit: 10_729 + 64, windowSize: 64})
    expect(at.end).toMatchObject({kind: 'bad_header', offset: 10_729, bytesDiscarded: 64, error: 'bad magic 0xdeadbeeb'})
  })
})

describe('start: incremental reads from a record boundary', () => {
  for (const windowSize of [undefined, 64, 1000]) {
    const opts = windowSize === undefined ? {} : {windowSize}
    it(`continues from record 3 exactly as the full walk does (window ${windowSize ?? 'default'})`, async () => {
      const full = await snapshot(BASIC)
      const s = await snapshot(BASIC, {...opts, start: 10_622})
      expect(s.records).toHaveLength(11)
      // `index` counts from the start offset; everything else is the full walk's.
      expect(s.records.map((r: Json) => r.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
      expect(s.records.map(({index: _i, ...r}: Json) => r)).toEqual(full.records.slice(3).map(({index: _i, ...r}: Json) => r))
      expect(s.records.map((r: Json) => String(r.header.sequence))).toEqual(basicRecords.slice(3).map((r: Json) => r.sequence))
      expect(s.end).toEqual({kind: 'eof', offset: BASIC_SIZE})
      expect([s.size, s.recordsRead, s.lastGoodEnd, s.lastValidEnd]).toEqual([BASIC_SIZE, 11, BASIC_SIZE, BASIC_SIZE])
    })
  }

  it('start + limit read exactly the records between them', async () => {
    const s = await snapshot(BASIC, {start: 10_622, limit: 24_916 + 10, windowSize: 100})
    expect(s.records.map((r: Json) => r.offset)).toEqual([10_622, 14_373, 18_057, 21_533])
    expect(s.end).toEqual({kind: 'partial_header', offset: 24_916, bytes: 10})
  })

  it('start at the end of the file: eof there, no records', async () => {
    const s = await snapshot(BASIC, {start: BASIC_SIZE})
    expect(s.records).toEqual([])
    expect(s.end).toEqual({kind: 'eof', offset: BASIC_SIZE})
    expect([s.recordsRead, s.lastGoodEnd, s.lastValidEnd]).toEqual([0, BASIC_SIZE, BASIC_SIZE])
  })

  it('start past a bad header reads the intact records Engram never reaches (damaged/B)', async () => {
    const path = join(fixturesRoot, 'damaged', 'default', 'wal', 'wal-0000000065f068ef.log')
    const expected = loadExpected('damaged').spaces.default.files[1]
    expect(expected.discarded_after_bad_header.map((r: Json) => r.offset)).toEqual([14_200, 17_607, 21_327])
    const s = await snapshot(path, {start: 14_200, windowSize: 4096})
    expect(s.records.map((r: Json) => [r.offset, r.validity, String(r.header.sequence)])).toEqual(
      expected.discarded_after_bad_header.map((r: Json) => [r.offset, 'ok', r.sequence]),
    )
    expect(s.end).toEqual({kind: 'eof', offset: 24_937})
  })

  it('start in the middle of a record reads its bytes as a header: bad_header, never a throw', async () => {
    const s = await snapshot(BASIC, {start: 10_622 + 1})
    expect(s.records).toEqual([])
    expect(s.end).toMatchObject({kind: 'bad_header', offset: 10_623, bytesDiscarded: BASIC_SIZE - 10_623})
    expect(s.end.error).toMatch(/^bad magic 0x[0-9a-f]{8}$/)
  })
})

describe('maxInlinePayload: large payloads are CRC-checked by streaming', () => {
  const payloads = [Buffer.alloc(0), Buffer.from('abc'), Buffer.alloc(5000, 7), randomBytes(100_000, 1), randomBytes(300_000, 2), randomBytes(70_000, 3)]
  let path: string
  let offsets: number[]

  function randomBytes(n: number, seed: number): Buffer {
    const b = Buffer.allocUnsafe(n)
    let x = seed
    for (let i = 0; i < n; i++) {
      x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0
      b[i] = x >>> 24
    }
    return b
  }

  beforeAll(async () => {
    const records = payloads.map((payload, i) => encodeRecord({sequence: BigInt(i), timestampNs: 1_700_000_000_000_000_000n + BigInt(i), entryType: 1, payload}))
    // Damage the last payload (header intact): bad_payload_crc, found by the streamed CRC.
    const last = records.at(-1)!
    last[HEADER_SIZE + 12_345] ^= 0x10
    offsets = []
    let at = 0
    for (const r of records) {
      offsets.push(at)
      at += r.length
    }
    path = join(tmp, 'big-payloads.log')
    await writeFile(path, Buffer.concat(records))
  })

  for (const windowSize of [undefined, 4096, 65_536]) {
    it(`payloads above the limit are not exposed but are CRC-checked (window ${windowSize ?? 'default'})`, async () => {
      const reader = new WalFileReader(path, {maxInlinePayload: 1000, ...(windowSize ? {windowSize} : {})})
      const seen: Json[] = []
      for await (const r of reader.records()) {
        seen.push({offset: r.offset, size: r.header.payloadSize, validity: r.validity, crc: r.computedPayloadCrc, inline: r.payload === undefined ? null : r.payload.toString('hex')})
      }
      const damaged = Buffer.from(payloads[5])
      damaged[12_345] ^= 0x10
      expect(seen).toEqual([
        {offset: offsets[0], size: 0, validity: 'ok', crc: 0, inline: ''},
        {offset: offsets[1], size: 3, validity: 'ok', crc: 0x364b3fb7, inline: '616263'},
        {offset: offsets[2], size: 5000, validity: 'ok', crc: crc32c(payloads[2]), inline: null},
        {offset: offsets[3], size: 100_000, validity: 'ok', crc: crc32c(payloads[3]), inline: null},
        {offset: offsets[4], size: 300_000, validity: 'ok', crc: crc32c(payloads[4]), inline: null},
        {offset: offsets[5], size: 70_000, validity: 'bad_payload_crc', crc: crc32c(damaged), inline: null},
      ])
      expect(seen[5].crc).not.toBe(crc32c(payloads[5]))
      expect(offsets).toEqual([0, 64, 131, 5195, 105_259, 405_323])
      expect(reader.end).toEqual({kind: 'eof', offset: 475_387})
      expect([reader.size, reader.recordsRead, reader.lastGoodEnd, reader.lastValidEnd]).toEqual([475_387, 6, 475_387, 405_323])
    })
  }

  it('the same file read inline gives the same CRCs and validity', async () => {
    const inline = await snapshot(path, {windowSize: 4096})
    expect(inline.records.map((r: Json) => [r.validity, r.computedPayloadCrc])).toEqual([
      ['ok', 0],
      ['ok', 0x364b3fb7],
      ['ok', crc32c(payloads[2])],
      ['ok', crc32c(payloads[3])],
      ['ok', crc32c(payloads[4])],
      ['bad_payload_crc', inline.records[5].computedPayloadCrc],
    ])
    expect(inline.records.map((r: Json) => r.payload)).toEqual([...payloads.slice(0, 5).map((p) => sha256(p)), inline.records[5].payload])
  })

  it('a torn large payload is reported as torn before any streaming', async () => {
    const s = await snapshot(path, {maxInlinePayload: 1000, windowSize: 4096, limit: offsets[4] + HEADER_SIZE + 123_456})
    expect(s.records).toHaveLength(4)
    expect(s.end).toMatchObject({kind: 'torn_payload', offset: 105_259, payloadBytesPresent: 123_456, truncateTo: 105_259})
  })
})

describe('records larger than the 256 KiB headroom', () => {
  // 600 KB payloads: a window boundary leaves more than the headroom of a record unread, which the
  // reader must move with its slow path (the double-buffered fast path only carries up to 256 KiB).
  const payloads = Array.from({length: 9}, (_, i) => Buffer.alloc(600_000 + i * 1000, i + 1))
  let path: string

  beforeAll(async () => {
    path = join(tmp, 'huge-records.log')
    await writeFile(path, Buffer.concat(payloads.map((payload, i) => encodeRecord({sequence: BigInt(i), timestampNs: BigInt(i), entryType: 1, payload}))))
  })

  for (const windowSize of [undefined, 1 << 20, 700_000, 65_536]) {
    it(`straddling window boundaries, read intact (window ${windowSize ?? 'default'})`, async () => {
      const s = await snapshot(path, windowSize ? {windowSize} : {})
      expect(s.records.map((r: Json) => [r.validity, r.header.payloadSize, r.payload])).toEqual(payloads.map((p) => ['ok', p.length, sha256(p)]))
      let offset = 0
      expect(s.records.map((r: Json) => r.offset)).toEqual(payloads.map((p) => (offset += HEADER_SIZE + p.length) - HEADER_SIZE - p.length))
      expect(s.end).toEqual({kind: 'eof', offset: 5_436_576})
      expect(s.size).toBe(5_436_576)
    })
  }
})

describe('a file that shrinks while it is read', () => {
  it('the walk ends where the bytes end: a torn tail at the cut, not a throw', async () => {
    const path = join(tmp, 'shrinking.log')
    await writeFile(path, readFileSync(BASIC))
    const reader = new WalFileReader(path, {windowSize: 100})
    const it = reader.records()[Symbol.asyncIterator]()
    expect((await it.next()).value!.offset).toBe(0)
    // Someone truncates the file mid-payload of record 5 while it is being read.
    await truncate(path, 18_057 + HEADER_SIZE + 100)
    const offsets = [0]
    for (let r = await it.next(); !r.done; r = await it.next()) offsets.push(r.value.offset)
    expect(offsets).toEqual([0, 3369, 7123, 10_622, 14_373])
    expect(reader.end).toMatchObject({kind: 'torn_payload', offset: 18_057, payloadBytesPresent: 100, truncateTo: 18_057})
    expect(reader.size).toBe(18_221)
  })

  it('truncated to a record boundary: eof there', async () => {
    const path = join(tmp, 'shrinking-boundary.log')
    await writeFile(path, readFileSync(BASIC))
    const reader = new WalFileReader(path, {windowSize: 64})
    const it = reader.records()[Symbol.asyncIterator]()
    expect((await it.next()).value!.offset).toBe(0)
    await truncate(path, 28_919)
    let n = 1
    for (let r = await it.next(); !r.done; r = await it.next()) n++
    expect(n).toBe(8)
    expect(reader.end).toEqual({kind: 'eof', offset: 28_919})
    expect(reader.size).toBe(28_919)
  })
})

describe('a file that grows while it is read', () => {
  const bytes = readFileSync(BASIC)

  for (const windowSize of [100, 4096, undefined]) {
    it(`is read up to the size at open; appended records are left for the next read (window ${windowSize ?? 'default'})`, async () => {
      const path = join(tmp, `growing-${windowSize ?? 'default'}.log`)
      const cut = basicRecords[5].offset
      await writeFile(path, bytes.subarray(0, cut))
      const reader = new WalFileReader(path, windowSize ? {windowSize} : {})
      const it = reader.records()[Symbol.asyncIterator]()
      const first = await it.next()
      expect(first.done).toBe(false)
      expect(first.value!.offset).toBe(0)
      // The writer appends the rest of the file, then a torn record, while the reader is mid-walk.
      await appendFile(path, bytes.subarray(cut))
      await appendFile(path, bytes.subarray(0, 200))
      const offsets = [first.value!.offset]
      for (let r = await it.next(); !r.done; r = await it.next()) offsets.push(r.value.offset)
      expect(offsets).toEqual([0, 3369, 7123, 10_622, 14_373])
      expect(reader.end).toEqual({kind: 'eof', offset: 18_057})
      expect([reader.size, reader.recordsRead, reader.lastGoodEnd]).toEqual([18_057, 5, 18_057])

      // An incremental read from where the first one stopped picks up exactly the appended records.
      const next = await snapshot(path, {start: reader.lastGoodEnd, ...(windowSize ? {windowSize} : {})})
      expect(next.records.map((r: Json) => r.offset)).toEqual(basicRecords.slice(5).map((r: Json) => r.offset))
      // ... and the torn record the writer left at the end (a copy of record 0's first 200 bytes).
      expect(next.end).toMatchObject({kind: 'torn_payload', offset: BASIC_SIZE, payloadBytesPresent: 136, truncateTo: BASIC_SIZE})
      expect(next.end.header.payloadSize).toBe(3369 - HEADER_SIZE)
    })
  }

  it('a reader constructed before the append but started after it sees the appended records', async () => {
    const path = join(tmp, 'growing-late.log')
    await writeFile(path, bytes.subarray(0, basicRecords[2].offset))
    const reader = new WalFileReader(path)
    await appendFile(path, bytes.subarray(basicRecords[2].offset))
    const s: number[] = []
    for await (const r of reader.records()) s.push(r.offset)
    expect(s).toHaveLength(14)
    expect(reader.end).toEqual({kind: 'eof', offset: BASIC_SIZE})
  })
})

describe('errors and helpers', () => {
  it('readPayloadAt returns exactly the payload of a record; a short read throws', async () => {
    const fh = await open(BASIC, 'r')
    try {
      const r12 = basicRecords[12]
      const payload = await readPayloadAt(fh, r12.offset, r12.payload_size)
      expect(payload.toString('utf8')).toBe('ep-0008')
      expect(sha256(payload)).toBe(r12.payload_sha256)
      await expect(readPayloadAt(fh, BASIC_SIZE - 100, 100)).rejects.toThrow(`short read at offset ${BASIC_SIZE}`)
    } finally {
      await fh.close()
    }
  })

  it('a missing file is a PATH_NOT_FOUND error naming the path (exit 10)', async () => {
    const missing = join(tmp, 'nope.log')
    const reader = new WalFileReader(missing)
    await expect(reader.scan()).rejects.toMatchObject({code: 'PATH_NOT_FOUND', exitCode: 10, message: `open WAL file: ${missing} does not exist`})
  })

  it('a directory is not a WAL file', async () => {
    const reader = new WalFileReader(tmp)
    await expect(reader.scan()).rejects.toMatchObject({message: `read WAL file: ${tmp}: not a file`})
  })

  it('an empty file is a clean eof at 0', async () => {
    const path = join(tmp, 'empty.log')
    await writeFile(path, '')
    const reader = new WalFileReader(path)
    expect(await reader.scan()).toEqual({kind: 'eof', offset: 0})
    expect([reader.size, reader.recordsRead]).toEqual([0, 0])
  })

  it('an aborted signal stops a walk that needs to read more', async () => {
    const ac = new AbortController()
    const reader = new WalFileReader(BASIC, {windowSize: 100, signal: ac.signal})
    const seen: number[] = []
    const walk = (async () => {
      for await (const r of reader.records()) {
        seen.push(r.offset)
        if (seen.length === 2) ac.abort()
      }
    })()
    await expect(walk).rejects.toMatchObject({name: 'AbortError'})
    expect(seen).toEqual([0, 3369])
    expect(reader.end).toBeUndefined()
  })
})

describe('batches: the records of one window at a time', () => {
  // 200 records of 1,064 bytes: with a 16 KiB window a batch holds at most 15 of them.
  const payloads = Array.from({length: 200}, (_, i) => Buffer.alloc(1000, i))
  const recordSize = HEADER_SIZE + 1000
  let path: string

  beforeAll(async () => {
    path = join(tmp, 'batches.log')
    await writeFile(path, Buffer.concat(payloads.map((payload, i) => encodeRecord({sequence: BigInt(i), timestampNs: BigInt(i), entryType: 1, payload}))))
  })

  it('every record once, in order; a batch is a run of adjacent records within one buffer', async () => {
    const reader = new WalFileReader(path, {windowSize: 16_384})
    const offsets: number[] = []
    let batches = 0
    for await (const batch of reader.batches()) {
      let prev: Buffer | undefined
      for (const r of batch) {
        offsets.push(r.offset)
        // Adjacent in the file, adjacent in memory: what lets a backup hash a batch in one call.
        if (prev) expect([r.bytes!.buffer === prev.buffer, r.bytes!.byteOffset]).toEqual([true, prev.byteOffset + prev.length])
        expect(sha256(r.payload!)).toBe(sha256(payloads[r.index]))
        prev = r.bytes
      }
      batches++
    }
    expect(offsets).toEqual(payloads.map((_, i) => i * recordSize))
    expect(batches).toBeGreaterThanOrEqual(Math.ceil(200 / 15))
    expect(reader.end).toEqual({kind: 'eof', offset: 200 * recordSize})
  })

  it('a consumer that leaves a batch early gets the next record in the next batch, never one twice', async () => {
    const reader = new WalFileReader(path, {windowSize: 16_384})
    const indexes: number[] = []
    for await (const batch of reader.batches()) {
      for (const r of batch) {
        indexes.push(r.index)
        if (r.index % 3 === 0) break // stop after the first, third, ... record of a window
      }
    }
    expect(indexes).toEqual(payloads.map((_, i) => i))
    expect(reader.end).toEqual({kind: 'eof', offset: 200 * recordSize})
  })
})

describe('batches that are not read', () => {
  it('a consumer that skips every batch still ends: the walk moves on and reports the end', async () => {
    const reader = new WalFileReader(BASIC, {windowSize: 4096})
    let batches = 0
    for await (const _ of reader.batches()) batches++
    expect(batches).toBeGreaterThan(1)
    expect(reader.end).toMatchObject({kind: 'eof'})
    expect(reader.recordsRead).toBeGreaterThan(0)
  })
})
