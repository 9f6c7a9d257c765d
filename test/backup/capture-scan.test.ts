/**
 * Pass 1 of a backup (scanCapture) over records of very different sizes: small ones hashed a batch at
 * a time from the read window, and one larger than the scan's 1 MiB window (the reader grows its
 * window for it). The capture hash must be the hash of exactly the captured bytes either way.
 */
import {mkdtemp, open, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {scanCapture, type Sample} from '../../src/lib/backup/capture.js'
import {encodeRecord} from '../../src/lib/engine/record.js'
import {FrameCompressor} from '../../src/lib/repo/compression.js'
import {blake3, sha256} from '../support/fixtures.js'

let tmp: string

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'engram-capture-scan-'))
})

afterAll(async () => {
  await rm(tmp, {recursive: true, force: true})
})

function records(sizes: number[]): Buffer {
  return Buffer.concat(sizes.map((size, i) => encodeRecord({sequence: BigInt(i + 1), timestampNs: BigInt(1000 + i), entryType: 2, payload: Buffer.alloc(size, i + 1)})))
}

describe('scanCapture', () => {
  it('a record larger than the read window between small ones: exact cut, counts and hash', async () => {
    const sizes = [...Array.from({length: 300}, () => 3000), 3 * 1024 * 1024 + 5, ...Array.from({length: 300}, () => 3000)]
    const data = records(sizes)
    const path = join(tmp, 'mixed.log')
    await writeFile(path, data)
    const fh = await open(path, 'r')
    try {
      const samples: Sample[] = []
      const scan = await scanCapture({name: 'mixed.log', size: data.length, handle: fh}, 0, 'blake3', samples, 8, {n: 0})
      expect({cut: scan.cut, records: scan.records, valid: scan.validRecords, first: scan.firstSequence, last: scan.lastSequence, damage: scan.damage}).toEqual({cut: data.length, records: 601, valid: 601, first: 1n, last: 601n, damage: []})
      expect(scan.hash).toBe(blake3(data))
      // From a record boundary after the large record (an incremental's start).
      const start = data.length - 300 * (64 + 3000)
      const tail = await scanCapture({name: 'mixed.log', size: data.length, handle: fh}, start, 'sha256', [], 8, {n: 0})
      expect([tail.records, tail.hash]).toEqual([300, sha256(data.subarray(start))])
    } finally {
      await fh.close()
    }
  })

  it('a torn tail after the large record: the cut is the last whole record, the hash covers exactly that', async () => {
    const whole = records([3000, 3000, 2 * 1024 * 1024, 3000])
    const torn = Buffer.concat([whole, records([5000]).subarray(0, 1000)])
    const path = join(tmp, 'torn.log')
    await writeFile(path, torn)
    const fh = await open(path, 'r')
    try {
      const scan = await scanCapture({name: 'torn.log', size: torn.length, handle: fh}, 0, 'blake3', [], 8, {n: 0})
      expect([scan.cut, scan.records, scan.hash, scan.damage.map((d) => d.kind)]).toEqual([whole.length, 4, blake3(whole), ['torn_tail']])
    } finally {
      await fh.close()
    }
  })
})

describe('FrameCompressor', () => {
  it('used after close: the frame fails instead of coming back empty', async () => {
    const c = new FrameCompressor(1)
    expect((await c.compress(Buffer.alloc(1000, 7)))[0].readUInt32LE(8)).toBeGreaterThan(0)
    c.close()
    await expect(c.compress(Buffer.alloc(10))).rejects.toThrow('zstd compressor used after it was closed')
  })
})
