/**
 * Full and incremental backups of an Engram data directory into a repository.
 *
 * Order of work, chosen so a crash at any moment leaves nothing that looks complete:
 *   lock → clean up what failed runs left → snapshot time → per space: open, scan, stream archive
 *   → manifest (the commit marker) → unlock.
 * An incremental stores, per file, only the bytes past its parent's capture when the file still
 * starts with the same bytes (same head, same last captured record); new or rewritten files whole;
 * vanished files as gone. Without a usable parent it becomes a full backup and says so.
 */
import {randomBytes} from 'node:crypto'
import {open, stat} from 'node:fs/promises'
import {hostname} from 'node:os'
import {resolve} from 'node:path'

import {DEFAULT_HASH_ALGORITHM, ensureHashAlgorithm, type HashAlgorithm} from '../digest.js'
import {nowNs} from '../engine/datetime.js'
import {assertDataDir} from '../engine/layout.js'
import {fsError} from '../errors.js'
import {archiveExtension, type Compression, FRAME_CONCURRENCY, FRAME_SIZE} from '../repo/compression.js'
import {archiveKey} from '../repo/layout.js'
import {acquireRepoLock, type LeaseOwner} from '../repo/lock.js'
import {backupId, type FileCapture, type Manifest, MANIFEST_FORMAT, sealManifest, type SpaceCapture} from '../repo/manifest.js'
import type {BackupEntry, Repository} from '../repo/repository.js'
import type {Reporter} from '../ui/reporter.js'
import {type ArchiveEntry, ArchiveWriter} from './archive.js'
import {type CaptureScan, captureRecord, hashRange, headLength, type OpenSource, type Sample} from './capture.js'
import {Scanner} from './scan-client.js'
import {collectSources} from './sources.js'
import {VERSION} from '../version.js'

/**
 * Space archives written at once (they share the backup's frame buffers and compressors), and the
 * input they may hold between them: small archives (an incremental's) overlap, while an archive large
 * enough to keep every compressor busy by itself is written alone, so a full backup's memory does not
 * grow with its number of spaces.
 */
const ARCHIVES_IN_FLIGHT = 4
/**
 * A temporary (a put's file before its rename) this old is debris whoever wrote it: the puts that
 * run beside a backup write a few hundred bytes. Younger ones are removed only where the backend
 * knows their writer is gone.
 */
const STALE_TEMPORARY_MS = 60 * 60 * 1000
const ARCHIVE_BYTES_IN_FLIGHT = 2 * FRAME_CONCURRENCY * FRAME_SIZE

/** How long a record may take from its timestamp to the WAL file (Engram: ≤ 10 ms batching + fsync). */
export const WRITE_LATENCY_MARGIN_NS = 250_000_000n

export interface BackupOptions {
  repo: Repository
  dataDir: string
  type: 'full' | 'incremental'
  spaces: string[]
  compression: Compression
  /**
   * The hash recorded of every capture and object. Default: an incremental keeps its parent's (a
   * chain does not change algorithm behind a cron job's back), a full backup uses DEFAULT_HASH_ALGORITHM.
   */
  hashAlgorithm?: HashAlgorithm
  label?: string
  lockWaitMs: number
  reporter: Reporter
  signal?: AbortSignal
}

export interface BackupResult {
  id: string
  type: 'full' | 'incremental'
  requestedType: 'full' | 'incremental'
  parent: string | null
  note: string | null
  startedAt: string
  finishedAt: string
  durationMs: number
  spaces: Array<{space: string; files: number; bytes: number; archiveBytes: number; records: number; gone: number; rewritten: number}>
  totals: Manifest['totals']
  unlinked: Array<{space: string; name: string; pid?: number}>
  compaction: Manifest['compaction']
  brokenLocks: LeaseOwner[]
  cleanedUp: string[]
  damage: Array<{space: string; file: string; offset: number; kind: string; detail: string}>
  /** Directories of the data directory that are not memory spaces (Engram does not load them either). */
  skipped: Array<{path: string; reason: string}>
}

interface FileState {
  name: string
  end: number
  headHash: string
  tailOffset: number
  tailHash: string
  /** The algorithm of the manifest the state comes from: a chain may mix them. */
  hashAlgorithm: HashAlgorithm
}

/** The file state of `space` after applying a chain of manifests. */
export function chainFileState(chain: Manifest[], space: string): Map<string, FileState> {
  const state = new Map<string, FileState>()
  for (const m of chain) {
    const sp = m.spaces.find((s) => s.space === space)
    if (!sp) continue
    for (const g of sp.gone) state.delete(g)
    for (const f of sp.files) state.set(f.name, {name: f.name, end: f.end, headHash: f.headHash, tailOffset: f.tailOffset, tailHash: f.tailHash, hashAlgorithm: m.hashAlgorithm})
  }
  return state
}

/**
 * Removes objects of backups that never wrote a manifest (crashed or failed runs). Needs the lock;
 * `entries` is a listing taken under it (listing a repository is a request per 1000 objects on S3).
 */
export async function cleanupIncomplete(repo: Repository, entries?: BackupEntry[]): Promise<string[]> {
  const cleaned: string[] = []
  for (const b of entries ?? (await repo.backups())) {
    if (b.complete) continue
    await repo.backend.delete(b.keys)
    cleaned.push(b.id)
  }
  // Temporaries of dead writers go at once; others only when old: a process that does not need the
  // lock (a verification record being written) or waits for it (its lease) may be writing them now.
  await repo.backend.sweepTemporaries?.(STALE_TEMPORARY_MS)
  return cleaned
}

async function openSources(space: string, sources: Awaited<ReturnType<typeof collectSources>>['files'] extends Map<string, infer V> ? V : never): Promise<OpenSource[]> {
  const opened: OpenSource[] = []
  const inodes = new Set<number>()
  for (const s of sources) {
    let handle
    try {
      handle = await open(s.openPath, 'r')
    } catch (error) {
      // A file removed between listing and opening (compaction) is simply gone.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw fsError(error, 'open WAL file', s.openPath)
    }
    const st = await handle.stat()
    if (inodes.has(st.ino)) {
      await handle.close() // the same inode through another descriptor
      continue
    }
    inodes.add(st.ino)
    opened.push({space, name: s.name, handle, size: st.size, inode: st.ino, source: s.source, pid: s.pid, mtime: st.mtime})
  }
  // An unlinked file may share its name with the file that replaced it: give it a free name that
  // sorts right after, so a restore brings both back.
  const names = new Set(opened.filter((o) => o.source === 'path').map((o) => o.name))
  for (const o of opened) {
    if (o.source !== 'unlinked') continue
    let name = o.name
    const m = /^wal-([0-9a-f]{16})\.log$/.exec(name)
    let secs = m ? BigInt(`0x${m[1]}`) : 0n
    while (names.has(name)) name = m ? `wal-${(++secs).toString(16).padStart(16, '0')}.log` : `${name}.unlinked`
    names.add(name)
    o.name = name
  }
  return opened.sort((a, b) => (a.name < b.name ? -1 : 1))
}

type Capture = {src: OpenSource; scan: CaptureScan; entry: ArchiveEntry}

/** A space after pass 1: its open files, the parent's view of them, and what will be archived. */
interface PreparedSpace {
  opened: OpenSource[]
  state: Map<string, FileState>
  captures: Capture[]
  rewritten: string[]
  samples: Sample[]
  spaceDamage: BackupResult['damage']
}

export async function runBackup(o: BackupOptions): Promise<BackupResult> {
  const dataDir = resolve(o.dataDir)
  await assertDataDir(dataDir)
  const started = new Date()
  const lock = await acquireRepoLock(o.repo.backend, {
    command: `backup ${o.type}`,
    waitMs: o.lockWaitMs,
    signal: o.signal,
    onWait: (h) => o.reporter.info(`repository is locked by ${h.command} (pid ${h.pid} on ${h.host}); waiting up to ${Math.round(o.lockWaitMs / 1000)} s`),
  })
  for (const b of lock.broken) o.reporter.warn(`broke a stale repository lock held by ${b.command} (pid ${b.pid} on ${b.host}, since ${b.startedAt})`)
  const written: string[] = []
  const handles: OpenSource[] = []
  const scanner = new Scanner()
  const archiver = new ArchiveWriter(o.compression, ARCHIVES_IN_FLIGHT)
  // Scans ahead and archives in flight stop on the caller's signal, or on the first failure.
  const stop = new AbortController()
  const stopped = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal
  // Pass 1 of each space, started ahead of its archive (index = position in `order`).
  const ahead: Array<Promise<PreparedSpace>> = []
  // Archives being written; the others stop when one fails.
  const archiving = new Set<Promise<void>>()
  let bytesInFlight = 0
  // The archive that failed first: the others fail because of it (they are stopped), and which
  // rejection a wait sees first is not necessarily the cause.
  let firstArchiveFailure: {error: unknown} | null = null
  try {
    const listed = await o.repo.backups()
    const cleanedUp = await cleanupIncomplete(o.repo, listed)
    for (const id of cleanedUp) o.reporter.warn(`removed the objects of incomplete backup ${id} (a run that did not finish)`)

    // Parent: the newest complete backup of this data directory that covers the selected spaces.
    const sources = await collectSources(dataDir, o.spaces)
    const spaceIds = sources.spaces.map((s) => s.id)
    let type = o.type
    let parentChain: Manifest[] = []
    let note: string | null = null
    if (type === 'incremental') {
      const all = await o.repo.completeBackups(listed)
      const parent = [...all].reverse().find((m) => m.dataRoot === dataDir && m.host === hostname() && spaceIds.every((s) => m.spaces.some((x) => x.space === s)))
      if (parent) {
        parentChain = await o.repo.chain(parent.id)
      } else {
        type = 'full'
        note = all.length === 0 ? 'no backup in the repository yet: took a full backup instead' : `no complete backup of ${dataDir} covering spaces ${spaceIds.join(', ')}: took a full backup instead`
        o.reporter.warn(note)
      }
    }
    const parent = parentChain.at(-1) ?? null
    const hashAlgorithm = o.hashAlgorithm ?? parent?.hashAlgorithm ?? DEFAULT_HASH_ALGORITHM
    ensureHashAlgorithm(hashAlgorithm) // before any work: BLAKE3 may be missing on this platform
    const id = backupId(type, started, randomBytes(3).toString('hex'))
    // Engram stamps a record when it is created and writes it up to ~10 ms later (a batch, then
    // fsync). The snapshot time this backup vouches for (PITR relies on it) is therefore set a margin
    // before the files are sized: every record stamped at or before it has had that long to land.
    const snapshotNs = nowNs() - WRITE_LATENCY_MARGIN_NS
    o.reporter.info(`backup ${id} (${type}${parent ? `, parent ${parent.id}` : ''}) of ${dataDir}: ${spaceIds.length} spaces`)

    const spaces: SpaceCapture[] = []
    const unlinked: BackupResult['unlinked'] = []
    const damage: BackupResult['damage'] = []
    let rewriteTimeNs: bigint | null = null
    const compactionSpaces: string[] = []
    let done = 0
    // Pass 1 of a space (open, compare with the parent, scan). Runs while the previous space's
    // archive is compressed, so the CRC scan uses the time the main thread would spend waiting.
    const prepare = async (spaceId: string, onMainThread: boolean): Promise<PreparedSpace> => {
      const opened = await openSources(spaceId, sources.files.get(spaceId) ?? [])
      handles.push(...opened)
      const state = chainFileState(parentChain, spaceId)
      const captures: Capture[] = []
      const rewritten: string[] = []
      const samples: Sample[] = []
      const seen = {n: 0}
      const spaceDamage: BackupResult['damage'] = []
      for (const src of opened) {
        let start = 0
        const prev = state.get(src.name)
        if (prev && prev.end > 0) {
          const same =
            src.size >= prev.end &&
            (await hashRange(src.handle, 0, headLength(prev.end), prev.hashAlgorithm)) === prev.headHash &&
            (await hashRange(src.handle, prev.tailOffset, prev.end - prev.tailOffset, prev.hashAlgorithm)) === prev.tailHash
          if (same) start = prev.end
          else rewritten.push(src.name)
        }
        const scan = await scanner.scan(src, start, hashAlgorithm, samples, 8, seen, stopped, onMainThread)
        for (const d of scan.damage) spaceDamage.push({space: spaceId, file: src.name, ...d})
        if (type === 'incremental' && prev && start > 0 && scan.cut === start) continue // nothing new
        const entry = start === 0 ? `${spaceId}/wal/${src.name}` : `${spaceId}/wal/${src.name}.from-${start.toString(16).padStart(16, '0')}`
        captures.push({src, scan, entry: {path: entry, handle: src.handle, offset: start, length: scan.cut - start, mtime: src.mtime}})
      }
      return {opened, state, captures, rewritten, samples, spaceDamage}
    }
    const order = sources.spaces.map((sp) => sp.id)
    const begin = (k: number, onMainThread = false) => {
      if (k >= order.length || k < ahead.length) return // started already (spaces start in order)
      ahead[k] = prepare(order[k], onMainThread)
      // Awaited in turn (or in `finally`): a failure is never unhandled.
      ahead[k].catch(() => {})
    }
    // What pass 1 will read: each file beyond its parent's capture, by its size when listed (a file
    // rewritten by a compaction is scanned whole; missing that only keeps a scan on the main thread).
    let expectedScan = 0
    for (const spaceId of order) {
      const state = chainFileState(parentChain, spaceId)
      for (const f of sources.files.get(spaceId) ?? []) {
        const size = f.listedSize ?? (await stat(f.openPath).catch(() => null))?.size ?? 0
        expectedScan += Math.max(0, size - (state.get(f.name)?.end ?? 0))
      }
    }
    scanner.expect(expectedScan)
    // Nothing can be archived before the first space is scanned (a tar header holds the length):
    // the main thread scans it while the worker scans the second, so both cores work from the start
    // (unless the backup is small enough for every scan to stay on the main thread; see scan-client.ts).
    begin(0, order.length > 1)
    begin(1)
    for (let i = 0; i < order.length; i++) {
      o.signal?.throwIfAborted()
      const spaceId = order[i]
      const {opened, state, captures, rewritten, samples, spaceDamage} = await ahead[i]
      begin(i + 1)
      damage.push(...spaceDamage)
      for (const c of captures) if (c.src.source === 'unlinked') unlinked.push({space: spaceId, name: c.src.name, pid: c.src.pid})
      const present = new Set(opened.map((s) => s.name))
      const gone = [...state.keys()].filter((n) => !present.has(n))
      if (gone.length > 0 || rewritten.length > 0) {
        compactionSpaces.push(spaceId)
        for (const c of captures) {
          if (c.scan.start === 0 && c.scan.firstTimestampNs !== null && (rewriteTimeNs === null || c.scan.firstTimestampNs < rewriteTimeNs) && !state.has(c.src.name) || rewritten.includes(c.src.name)) {
            if (c.scan.firstTimestampNs !== null && (rewriteTimeNs === null || c.scan.firstTimestampNs < rewriteTimeNs)) rewriteTimeNs = c.scan.firstTimestampNs
          }
        }
        o.reporter.warn(`space ${spaceId}: ${gone.length} WAL files gone and ${rewritten.length} rewritten since ${parent?.id}: Engram restarted and compacted; captured the new files whole`)
      }
      const files = captures.map((c) => captureRecord(c.src, c.scan, c.entry.path))
      const space: SpaceCapture = {space: spaceId, archive: null, files, gone, rewritten, memories: null, samples}
      spaces.push(space)
      if (captures.length === 0) continue
      const key = archiveKey(id, spaceId, archiveExtension(o.compression))
      written.push(key)
      const total = captures.reduce((a, c) => a + c.entry.length, 0)
      // Archives are written while the next spaces are prepared, small ones several at once: the small
      // archives of an incremental each spent most of their time waiting (a frame or two to compress,
      // then a write, an fsync and a rename), one after another.
      while (archiving.size > 0 && (archiving.size >= ARCHIVES_IN_FLIGHT || bytesInFlight + total > ARCHIVE_BYTES_IN_FLIGHT)) await Promise.race(archiving)
      bytesInFlight += total
      const task = archiver
        .write(
          o.repo.backend,
          key,
          captures.map((c) => c.entry),
          hashAlgorithm,
          (n) => {
            done += n
            o.reporter.progress({phase: `backup ${spaceId}`, done, unit: 'bytes'})
          },
          stopped,
        )
        .then(
          (w) => {
            space.archive = {key, size: w.size, hash: w.hash, uncompressedSize: w.uncompressedSize}
            o.reporter.info(`  ${spaceId}: ${captures.length} files, ${total} bytes -> ${w.size} bytes archived`)
          },
          (error) => {
            // Recorded before the task leaves `archiving`, so no later check can miss it; the scans and
            // the other archives stop at once instead of at the next space.
            firstArchiveFailure ??= {error}
            stop.abort(error)
            throw error
          },
        )
        .finally(() => {
          archiving.delete(task)
          bytesInFlight -= total
        })
      task.catch(() => {}) // awaited through `archiving` (race, then all) or `firstArchiveFailure`: never unhandled
      archiving.add(task)
    }
    await Promise.all(archiving)
    if (firstArchiveFailure) throw (firstArchiveFailure as {error: unknown}).error
    // The manifest must never list files whose archive is missing (restore would skip them silently).
    const unarchived = spaces.find((s) => s.files.length > 0 && !s.archive)
    if (unarchived) throw new Error(`backup ${id}: space ${unarchived.space} has captured files but no archive`)

    const finished = new Date()
    const totals = {
      files: spaces.reduce((a, s) => a + s.files.length, 0),
      bytes: spaces.reduce((a, s) => a + s.files.reduce((b, f) => b + f.length, 0), 0),
      archiveBytes: spaces.reduce((a, s) => a + (s.archive?.size ?? 0), 0),
      records: spaces.reduce((a, s) => a + s.files.reduce((b, f) => b + f.records, 0), 0),
      unlinkedFiles: unlinked.length,
    }
    const manifest = sealManifest({
      format: MANIFEST_FORMAT,
      hashAlgorithm,
      tool: {name: 'engram-ops', version: VERSION},
      id,
      type,
      parent: parent?.id ?? null,
      chain: [...parentChain.map((m) => m.id), id],
      label: o.label ?? null,
      host: hostname(),
      dataRoot: dataDir,
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      snapshotNs: String(snapshotNs),
      compression: o.compression,
      spaces,
      compaction: compactionSpaces.length > 0 ? {detected: true, spaces: compactionSpaces, rewriteTimeNs: rewriteTimeNs === null ? null : String(rewriteTimeNs)} : null,
      notes: note ? [note] : [],
      totals,
    })
    await lock.assertHeld() // the manifest commits the backup: only while the repository is still ours
    await o.repo.writeManifest(manifest)
    for (const u of unlinked) o.reporter.warn(`captured ${u.space}/wal/${u.name} from an unlinked file still open in pid ${u.pid}`)
    return {
      id,
      type,
      requestedType: o.type,
      parent: parent?.id ?? null,
      note,
      startedAt: manifest.startedAt,
      finishedAt: manifest.finishedAt,
      durationMs: finished.getTime() - started.getTime(),
      spaces: spaces.map((s) => ({
        space: s.space,
        files: s.files.length,
        bytes: s.files.reduce((a, f) => a + f.length, 0),
        archiveBytes: s.archive?.size ?? 0,
        records: s.files.reduce((a, f) => a + f.records, 0),
        gone: s.gone.length,
        rewritten: s.rewritten.length,
      })),
      totals,
      unlinked,
      compaction: manifest.compaction,
      brokenLocks: lock.broken,
      cleanedUp,
      damage,
      skipped: sources.skippedDirs,
    }
  } catch (caught) {
    const error = (firstArchiveFailure as {error: unknown} | null)?.error ?? caught
    // The next space's scan and the other archives are not needed any more: stop them, and let the
    // archives end before their objects are removed.
    stop.abort(error)
    await Promise.allSettled(archiving)
    // Best effort: remove what this run wrote. A crash leaves them for the next run's cleanup.
    await o.repo.backend.delete(written).catch(() => {})
    throw error
  } finally {
    await Promise.allSettled(ahead) // they may still be opening files: let them finish before closing them
    await scanner.close() // before the descriptors it reads are closed
    archiver.close()
    for (const h of handles) await h.handle.close().catch(() => {})
    await lock.release().catch(() => {})
  }
}
