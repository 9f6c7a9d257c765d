/**
 * Backup verification, four levels, each including the ones below it:
 *  L1  manifests of the chain parse and match their own checksums; every object exists with its size.
 *  L2  every object's bytes match the manifest's hash (read in full).
 *  L3  every archive decompresses and unpacks; every entry matches its hash; every WAL record in it
 *      passes both CRCs and decodes; counts, sequences and times match the manifest.
 *  L4  the chain is restored into a scratch directory, opened with the engine and served by the
 *      Engram-compatible server on a free port: record and memory counts agree with the manifest and
 *      the engine, and sampled memories read through the HTTP API match their records.
 */
import {mkdtemp, open, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {AdminClient} from '../admin/client.js'
import {createHasher, type HashAlgorithm, hashOf} from '../digest.js'
import {decodePayloadMeta} from '../engine/decode.js'
import {listWalFiles} from '../engine/layout.js'
import {readPayloadAt, WalFileReader} from '../engine/reader.js'
import {EntryType, isEpisodeType} from '../engine/record.js'
import {EngineStore} from '../engine/store.js'
import {IntegrityError} from '../errors.js'
import {chunksOf, openObjectReader} from '../repo/backend.js'
import type {Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'
import {createEngramServer} from '../server/server.js'
import type {Reporter} from '../ui/reporter.js'
import {extractChain} from './extract.js'

export interface VerifyFinding {
  backup: string
  level: number
  object?: string
  problem: string
}

export interface VerifyResult {
  backup: string
  level: number
  ok: boolean
  checked: {manifests: number; objects: number; bytes: number; records: number; memories: number | null; samples: number}
  findings: VerifyFinding[]
  durationMs: number
}

/** Hashes an object read into one reused buffer (no new Buffer per chunk for the GC to collect). */
async function hashObject(repo: Repository, key: string, algorithm: HashAlgorithm, signal?: AbortSignal): Promise<{hash: string; size: number}> {
  const h = createHasher(algorithm)
  let size = 0
  const object = await openObjectReader(repo.backend, key, {signal})
  try {
    for await (const c of chunksOf(object)) {
      h.update(c)
      size += c.length
    }
  } finally {
    await object.close()
  }
  return {hash: h.digest(), size}
}

/** Expected per-file record counts of a space after applying a chain (whole captures reset, segments add). */
function expectedRecords(chain: Manifest[], space: string): Map<string, {records: number; episodes: number; end: number}> {
  const state = new Map<string, {records: number; episodes: number; end: number}>()
  for (const m of chain) {
    const sp = m.spaces.find((s) => s.space === space)
    if (!sp) continue
    for (const g of sp.gone) state.delete(g)
    for (const f of sp.files) {
      const prev = f.offset > 0 ? state.get(f.name) : undefined
      state.set(f.name, {records: (prev?.records ?? 0) + f.records, episodes: (prev?.episodes ?? 0) + f.episodes, end: f.end})
    }
  }
  return state
}

export async function verifyBackup(repo: Repository, id: string, level: number, reporter: Reporter, signal?: AbortSignal): Promise<VerifyResult> {
  const started = Date.now()
  const findings: VerifyFinding[] = []
  const checked: VerifyResult['checked'] = {manifests: 0, objects: 0, bytes: 0, records: 0, memories: null, samples: 0}
  const add = (lvl: number, problem: string, object?: string) => findings.push({backup: id, level: lvl, problem, ...(object ? {object} : {})})

  // L1: manifests (repo.chain verifies each checksum) and object presence and sizes.
  let chain: Manifest[]
  try {
    chain = await repo.chain(id)
  } catch (error) {
    if (error instanceof IntegrityError || (error as {code?: string}).code === 'BACKUP_NOT_FOUND') {
      add(1, (error as Error).message)
      return {backup: id, level, ok: false, checked, findings, durationMs: Date.now() - started}
    }
    throw error
  }
  checked.manifests = chain.length
  for (const m of chain) {
    for (const sp of m.spaces) {
      if (!sp.archive) continue
      const info = await repo.backend.stat(sp.archive.key)
      checked.objects++
      if (!info) add(1, `object missing`, sp.archive.key)
      else if (info.size !== sp.archive.size) add(1, `object has ${info.size} bytes, the manifest says ${sp.archive.size}`, sp.archive.key)
    }
  }
  if (level < 2 || findings.length > 0) return done()

  // L2: object checksums.
  for (const m of chain) {
    for (const sp of m.spaces) {
      if (!sp.archive) continue
      signal?.throwIfAborted()
      let hash: string
      let size: number
      try {
        ;({hash, size} = await hashObject(repo, sp.archive.key, m.hashAlgorithm, signal))
      } catch (error) {
        // An encrypted object whose authentication tag fails is a finding, not a crash.
        if (error instanceof IntegrityError) {
          add(2, error.message, sp.archive.key)
          continue
        }
        throw error
      }
      checked.bytes += size
      reporter.progress({phase: 'verify L2', done: checked.bytes, unit: 'bytes'})
      if (hash !== sp.archive.hash) add(2, `${m.hashAlgorithm} ${hash} does not match the manifest's ${sp.archive.hash}`, sp.archive.key)
    }
  }
  if (level < 3 || findings.length > 0) return done()

  // L3 and L4 both unpack: restore the chain into a scratch directory (entries are checked against
  // the manifest while streaming), then read every record back.
  const scratch = await mkdtemp(join(tmpdir(), 'engram-ops-verify-'))
  try {
    const spaces = chain.at(-1)!.spaces.map((s) => s.space)
    try {
      // No fsyncs: the scratch copy is read back and removed, it never has to outlive a crash.
      await extractChain(repo, chain, spaces, scratch, () => {}, signal, false)
    } catch (error) {
      if (error instanceof IntegrityError) {
        add(3, error.message, error.subject)
        return done()
      }
      throw error
    }
    for (const space of spaces) {
      const expected = expectedRecords(chain, space)
      const files = await listWalFiles(join(scratch, space, 'wal'))
      if (files.length !== expected.size) add(3, `space ${space}: restored ${files.length} WAL files, the manifests add up to ${expected.size}`)
      for (const f of files) {
        const exp = expected.get(f.name)
        const reader = new WalFileReader(f.path, {signal})
        let records = 0
        let episodes = 0
        let undecodable = 0
        for await (const rec of reader.records()) {
          records++
          if (rec.validity !== 'ok') continue
          const t = rec.header.entryType
          if (isEpisodeType(t)) episodes++
          if (rec.payload && (isEpisodeType(t) || t === EntryType.MemoryDelete) && decodePayloadMeta(t, rec.payload).kind === 'error') undecodable++
        }
        checked.records += records
        if (reader.end!.kind !== 'eof') add(3, `${space}/${f.name}: restored file ends in ${reader.end!.kind} at offset ${reader.end!.offset}`)
        if (!exp) add(3, `${space}/${f.name}: not in the manifests`)
        else if (exp.records !== records || exp.episodes !== episodes || exp.end !== f.size) {
          add(3, `${space}/${f.name}: ${records} records (${episodes} episodes), ${f.size} bytes; the manifests say ${exp.records} (${exp.episodes}), ${exp.end} bytes`)
        }
        if (undecodable > 0) reporter.warn(`${space}/${f.name}: ${undecodable} records do not decode (Engram skips them too); they were captured as they were`)
      }
    }
    if (level < 4 || findings.length > 0) return done()

    // L4: open with the engine, serve it, and compare.
    const store = await EngineStore.open(scratch, {createDefault: false})
    const server = await createEngramServer({store, host: '127.0.0.1', port: 0})
    try {
      const client = new AdminClient({baseUrl: server.url, timeoutMs: 30_000})
      checked.memories = 0
      for (const space of spaces) {
        const st = store.get(space)
        if (!st?.replay) {
          add(4, `space ${space}: the engine did not load it`)
          continue
        }
        const c = st.replay.counters
        const expectedEpisodes = [...expectedRecords(chain, space).values()].reduce((a, e) => a + e.episodes, 0)
        // Every captured episode record is either stored, skipped as a duplicate, or failed to decode.
        const applied = c.episodesStored + c.duplicatesSkipped
        if (applied > expectedEpisodes || expectedEpisodes - applied > c.failed) {
          add(4, `space ${space}: the engine replayed ${c.episodesStored + c.duplicatesSkipped} episode records, the manifests captured ${expectedEpisodes}`)
        }
        const listed = await client.listMemories({space, offset: 0, limit: 1})
        const served = listed.tier_counts.total
        checked.memories += served
        if (served !== c.liveCount) add(4, `space ${space}: the server reports ${served} memories, the engine's replay ${c.liveCount}`)
        // Samples recorded at backup time, plus a few live memories chosen now.
        const samples = chain.flatMap((m) => (m.spaces.find((s) => s.space === space)?.samples ?? []).map((s) => ({...s, algorithm: m.hashAlgorithm})))
        const live = [...st.live.values()]
        const picks = [...samples.map((s) => s.id), ...Array.from({length: Math.min(4, live.length)}, () => live[Math.floor(Math.random() * live.length)].id)]
        for (const mid of picks) {
          const entry = st.live.get(mid)
          // Not live: deleted or superseded later in the chain, or its record does not decode (the
          // replay check above allows those). A record lost or altered in the restore has already
          // failed level 3 (records per file against the manifests) or that replay check.
          if (!entry) continue
          const episode = await store.read(st, entry)
          const sample = samples.find((s) => s.id === mid)
          if (sample && sample.file === entry.file && sample.offset === entry.offset) {
            const fh = await open(join(scratch, space, 'wal', entry.file), 'r')
            try {
              const payloadHash = hashOf(sample.algorithm, await readPayloadAt(fh, entry.offset, entry.payloadSize))
              if (payloadHash !== sample.payloadHash) add(4, `space ${space}: memory ${mid} differs from the record sampled at backup time`)
            } finally {
              await fh.close()
            }
          }
          const got = await client.getMemory(mid, space)
          checked.samples++
          if (got.content !== episode.what || got.id !== mid) add(4, `space ${space}: GET /api/v1/memories/${mid} returned other content than the restored record`)
        }
      }
    } finally {
      await server.close()
      await store.close()
    }
    return done()
  } finally {
    await rm(scratch, {recursive: true, force: true})
  }

  function done(): VerifyResult {
    return {backup: id, level, ok: findings.length === 0, checked, findings, durationMs: Date.now() - started}
  }
}
