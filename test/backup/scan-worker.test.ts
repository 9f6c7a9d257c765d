/**
 * A backup that scans more than INLINE_SCAN_BYTES runs pass 1 in the worker thread (scan-worker.ts):
 * the manifest it writes (per-file ranges, hashes, record counts, samples) must be exactly right, and
 * the backup restores byte for byte and passes level 3.
 */
import {mkdtemp, readdir, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {INLINE_SCAN_BYTES, Scanner} from '../../src/lib/backup/scan-client.js'
import {WalFileReader} from '../../src/lib/engine/reader.js'
import {runCli} from '../support/cli.js'
import {blake3, type Json, sha256} from '../support/fixtures.js'


let tmp: string
let data: string

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'engram-scan-worker-'))
  data = join(tmp, 'data')
  // Twice the inline budget, in 3 spaces: the later spaces are scanned by the worker.
  const gen = await runCli(['engine', 'generate', '--data-dir', data, '--size', String(2 * INLINE_SCAN_BYTES), '--spaces', '3', '--no-sync'])
  expect(gen.code, gen.stderr).toBe(0)
}, 120_000)

afterAll(async () => {
  if (tmp) await rm(tmp, {recursive: true, force: true})
})

describe('where pass 1 runs', () => {
  it('a backup expected to scan less than the inline budget scans on the main thread; more starts the worker at once', async () => {
    const small = new Scanner()
    small.expect(INLINE_SCAN_BYTES - 1)
    expect(small.workerStarted).toBe(false)
    await small.close()
    const large = new Scanner()
    large.expect(INLINE_SCAN_BYTES)
    // Started before any scan, so its start-up overlaps the first space's scan on the main thread.
    expect(large.workerStarted).toBe(true)
    await large.close()
  })
})

describe('pass 1 in the worker thread', () => {
  it('a backup of twice the inline budget: exact ranges, hashes and counts; restores byte for byte; level 3 passes', {timeout: 120_000}, async () => {
    const repo = join(tmp, 'repo')
    expect((await runCli(['repo', 'init', '--repo', repo])).code).toBe(0)
    const b = await runCli(['backup', 'full', '--data-dir', data, '--repo', repo, '--json'])
    expect(b.code, b.stderr).toBe(0)
    const id = JSON.parse(b.stdout).id
    const manifest = JSON.parse((await runCli(['backup', 'show', id, '--repo', repo, '--json'])).stdout).manifest
    const stats = await runCli(['engine', 'stats', '--data-dir', data, '--json'])
    expect(stats.code, stats.stderr).toBe(0)
    const perFile = new Map<string, Json>()
    for (const sp of JSON.parse(stats.stdout).spaces as Json[]) for (const f of sp.files as Json[]) perFile.set(`${sp.space}/${f.name}`, f)
    let scanned = 0
    for (const sp of manifest.spaces as Json[]) {
      const names = (await readdir(join(data, sp.space, 'wal'))).filter((n) => n.endsWith('.log')).sort()
      expect((sp.files as Json[]).map((f) => f.name)).toEqual(names)
      expect(sp.samples.length).toBe(8)
      for (const f of sp.files as Json[]) {
        const bytes = await readFile(join(data, sp.space, 'wal', f.name))
        const st = perFile.get(`${sp.space}/${f.name}`)
        expect({offset: f.offset, length: f.length, hash: f.hash, records: f.records, damage: f.damage}).toEqual({offset: 0, length: bytes.length, hash: blake3(bytes), records: st.records, damage: []})
        const lastRecord = bytes.subarray(Number(f.tailOffset))
        expect(f.tailHash).toBe(blake3(lastRecord))
        expect(f.headHash).toBe(blake3(bytes.subarray(0, 4096)))
        scanned += bytes.length
      }
    }
    expect(scanned).toBeGreaterThan(INLINE_SCAN_BYTES * 1.5)

    const to = join(tmp, 'restored')
    const r = await runCli(['restore', id, '--repo', repo, '--to', to, '--json'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    for (const sp of manifest.spaces as Json[]) {
      for (const f of sp.files as Json[]) expect(blake3(await readFile(join(to, sp.space, 'wal', f.name))), f.name).toBe(f.hash)
    }
    const v = await runCli(['backup', 'verify', id, '--level', '3', '--repo', repo, '--json'])
    expect(v.code, v.stdout + v.stderr).toBe(0)
  })

  it('--hash sha256 reaches the worker: every file, head, tail and sample hash is sha256', {timeout: 120_000}, async () => {
    const repo = join(tmp, 'repo-sha256')
    expect((await runCli(['repo', 'init', '--repo', repo])).code).toBe(0)
    const b = await runCli(['backup', 'full', '--data-dir', data, '--repo', repo, '--hash', 'sha256', '--json'])
    expect(b.code, b.stderr).toBe(0)
    const manifest = JSON.parse((await runCli(['backup', 'show', JSON.parse(b.stdout).id, '--repo', repo, '--json'])).stdout).manifest
    expect(manifest.hashAlgorithm).toBe('sha256')
    for (const sp of manifest.spaces as Json[]) {
      for (const f of sp.files as Json[]) {
        const bytes = await readFile(join(data, sp.space, 'wal', f.name))
        expect([f.hash, f.headHash, f.tailHash]).toEqual([sha256(bytes), sha256(bytes.subarray(0, 4096)), sha256(bytes.subarray(Number(f.tailOffset)))])
      }
      // Samples: the sha256 of the sampled record's payload, read back from the source.
      for (const s of sp.samples as Json[]) {
        const path = join(data, sp.space, 'wal', s.file)
        let payload: Uint8Array | undefined
        // Copied: a record's payload is a view of the reader's window, which moves on.
        for await (const r of new WalFileReader(path).records()) if (r.offset === s.offset) payload = Buffer.from(r.payload!)
        expect(sha256(payload!)).toBe(s.payloadHash)
      }
    }
  })
})
