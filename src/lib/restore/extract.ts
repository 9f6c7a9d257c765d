/**
 * Restoring a chain of backups into a staging directory, verifying every object while it streams:
 * the archive's hash and size, each entry's hash against the manifest, and that entries are
 * exactly the files the manifest lists. A tar entry that is not a plain file, or whose path is
 * absolute, climbs out with `..`, or is not `<space>/wal/<file>` of its own archive, is refused.
 * Whole files are written fresh; an incremental's segment is appended at the offset it starts at.
 */
import {mkdir, open, rm, type FileHandle} from 'node:fs/promises'
import {join} from 'node:path'

import {SPACE_SUBDIRS} from '../engine/layout.js'
import {IntegrityError, OpsError} from '../errors.js'
import {type HashSource, hashSource} from '../hash-worker.js'
import {EarlyWriteback} from '../writeback.js'
import {type ByteReader, chunksOf, openObjectReader} from '../repo/backend.js'
import {zstdUnframes} from '../repo/compression.js'
import type {FileCapture, Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'
import {readTar} from './tar-reader.js'

const TYPE_NAMES: Record<string, string> = {'1': 'hard link', '2': 'symbolic link', '3': 'character device', '4': 'block device', '5': 'directory', '6': 'FIFO', x: 'pax header', g: 'pax global header', L: 'GNU long name', K: 'GNU long link'}

const SEGMENT = /^(wal-[^/]+\.log)\.from-([0-9a-f]{16})$/

export interface ExtractProgress {
  (bytes: number): void
}

function refuse(message: string, subject: string): IntegrityError {
  return new IntegrityError(message, {
    code: 'ARCHIVE_REFUSED',
    subject,
    suggestion: 'The backup is damaged or was tampered with; verify it with `engram-ops backup verify --level 2` and restore an older one.',
  })
}

/** Checks a tar entry against the archive it is in; returns the file name it writes. */
export function checkEntryPath(path: string, space: string, archiveKey: string): {file: string; offset: number} {
  if (path.startsWith('/') || path.split('/').some((p) => p === '..' || p === '.' || p === '')) {
    throw refuse(`archive ${archiveKey} has an entry outside the restore target: ${JSON.stringify(path)}`, archiveKey)
  }
  const parts = path.split('/')
  if (parts.length !== 3 || parts[0] !== space || parts[1] !== 'wal') {
    throw refuse(`archive ${archiveKey} has an entry that is not a WAL file of space ${space}: ${JSON.stringify(path)}`, archiveKey)
  }
  const seg = SEGMENT.exec(parts[2])
  if (seg) return {file: seg[1], offset: Number.parseInt(seg[2], 16)}
  if (!/^wal-[^/]+\.log$/.test(parts[2])) throw refuse(`archive ${archiveKey} has an unexpected entry ${JSON.stringify(path)}`, archiveKey)
  return {file: parts[2], offset: 0}
}

/**
 * fsync of restored files, started as each file is complete and awaited before the restore is
 * declared done: the disk writes one file back while the next one is being decompressed.
 */
const MAX_PENDING_SYNCS = 4

class PendingSyncs {
  private readonly pending: Array<Promise<void>> = []
  private error: unknown = null

  /** With `sync` false (--no-sync) a finished file is only closed. */
  constructor(readonly sync: boolean) {}

  /**
   * Starts the fsync of a finished file (the handle is closed after it). At most MAX_PENDING_SYNCS
   * run at once: more would hold descriptors and thread-pool threads that decompression needs.
   */
  async add(fh: FileHandle): Promise<void> {
    if (!this.sync) return fh.close()
    while (this.pending.length >= MAX_PENDING_SYNCS) await this.pending.shift()
    const p = fh.sync().finally(() => fh.close())
    this.pending.push(
      p.catch((error: unknown) => {
        this.error ??= error
      }),
    )
  }

  async settle(): Promise<void> {
    await Promise.all(this.pending.splice(0))
    if (this.error) throw this.error
  }
}

/** Extracts one space's archive of one backup into `staging/<space>/wal/`. */
async function extractArchive(repo: Repository, m: Manifest, space: string, staging: string, syncs: PendingSyncs, hashes: HashSource, onBytes: ExtractProgress, signal?: AbortSignal): Promise<void> {
  const sp = m.spaces.find((s) => s.space === space)!
  const archive = sp.archive
  if (!archive) return
  const expected = new Map<string, FileCapture>(sp.files.map((f) => [f.entry, f]))
  const seen = new Set<string>()
  const walDir = join(staging, space, 'wal')
  await mkdir(walDir, {recursive: true, mode: 0o755})
  // The whole object is hashed too, although zstd's content checksums, the frame index, tar header
  // checksums and each file's hash already cover every byte that reaches a restored file: some bits
  // of a zstd frame (the window descriptor, parts of entropy table headers) can flip without changing
  // the output, and a flipped byte anywhere must fail the restore (measured by the integrity test).
  const objectHash = hashes.create(m.hashAlgorithm)
  let objectSize = 0
  const object = await openObjectReader(repo.backend, archive.key, {signal})
  const hashed: ByteReader = {
    async read(dst, offset, length) {
      const n = await object.read(dst, offset, length)
      await objectHash.update(dst.subarray(offset, offset + n))
      objectSize += n
      return n
    },
  }
  // readTar copies what it keeps of a chunk before it asks for the next one, as both sources require.
  const bytes = m.compression.codec === 'zstd' ? zstdUnframes()(hashed) : chunksOf(hashed)
  try {
    for await (const entry of readTar(bytes)) {
      signal?.throwIfAborted()
      if (entry.type !== '0') {
        throw refuse(`archive ${archive.key} has a ${TYPE_NAMES[entry.type] ?? `type ${JSON.stringify(entry.type)}`} entry ${JSON.stringify(entry.path)}; only plain files are restored`, archive.key)
      }
      const {file, offset} = checkEntryPath(entry.path, space, archive.key)
      const cap = expected.get(entry.path)
      if (!cap) throw refuse(`archive ${archive.key} has an entry the manifest does not list: ${JSON.stringify(entry.path)}`, archive.key)
      if (seen.has(entry.path)) throw refuse(`archive ${archive.key} lists ${entry.path} twice`, archive.key)
      seen.add(entry.path)
      if (cap.offset !== offset || cap.length !== entry.size) throw refuse(`archive ${archive.key}: ${entry.path} has ${entry.size} bytes at ${offset}, the manifest says ${cap.length} at ${cap.offset}`, archive.key)
      const target = join(walDir, file)
      const fh: FileHandle = await open(target, offset === 0 ? 'w' : 'r+', 0o600)
      let complete = false
      try {
        const size = (await fh.stat()).size
        if (offset > 0 && size !== offset) {
          throw refuse(`backup ${m.id}: ${entry.path} continues ${file} at ${offset}, but the restored file has ${size} bytes`, archive.key)
        }
        const hash = hashes.create(m.hashAlgorithm)
        const early = new EarlyWriteback(fh, syncs.sync)
        let pos = offset
        try {
          for await (const c of entry.body) {
            await hash.update(c)
            let done = 0
            while (done < c.length) done += (await fh.write(c, done, c.length - done, pos + done)).bytesWritten
            pos += c.length
            early.wrote(c.length)
            onBytes(c.length)
          }
          // A write-back error is reported once per descriptor: it must surface here, not be lost.
          await early.settle()
        } finally {
          await early.settle().catch(() => {}) // never close the descriptor under a sync in flight
        }
        if ((await hash.digest()) !== cap.hash) {
          throw new IntegrityError(`backup ${m.id}: ${entry.path} in ${archive.key} does not match its ${m.hashAlgorithm} in the manifest`, {
            code: 'CHECKSUM_MISMATCH',
            subject: archive.key,
            suggestion: 'The archive is damaged; restore an older backup and take a new full backup.',
          })
        }
        complete = true
      } finally {
        if (complete) await syncs.add(fh)
        else await fh.close()
      }
    }
    // Read to the end so the object's size and hash cover every byte.
    for await (const _ of bytes) {
      // trailing zero blocks
    }
  } catch (error) {
    await bytes.return(undefined).catch(() => {}) // stop the decompressor
    // Errors already classified (damage found, a backend failure, an interruption) keep their kind and exit code.
    if (error instanceof OpsError || (error as Error)?.name === 'AbortError') throw error
    throw new IntegrityError(`backup ${m.id}: archive ${archive.key} cannot be read: ${(error as Error).message}`, {
      code: 'ARCHIVE_CORRUPT',
      subject: archive.key,
      suggestion: 'The archive is damaged; restore an older backup.',
      cause: error,
    })
  } finally {
    await object.close()
  }
  if (objectSize !== archive.size || (await objectHash.digest()) !== archive.hash) {
    throw new IntegrityError(`backup ${m.id}: archive ${archive.key} does not match its size and ${m.hashAlgorithm} in the manifest`, {
      code: 'CHECKSUM_MISMATCH',
      subject: archive.key,
      suggestion: 'The archive is damaged; restore an older backup and take a new full backup.',
    })
  }
  for (const e of expected.keys()) {
    if (!seen.has(e)) throw refuse(`archive ${archive.key} lacks ${e}, which the manifest lists`, archive.key)
  }
}

/** Spaces restored at once: their pipelines interleave on the main thread while zstd runs in the pool. */
const SPACE_CONCURRENCY = 2

/**
 * Restores `spaces` of a chain into `staging`, then creates Engram's empty dirs. Each space is
 * independent (its own archive per backup), so two spaces are restored at a time, each applying its
 * chain in order (full first). Every restored file is fsynced before this returns, unless `sync` is
 * false (--no-sync).
 */
export async function extractChain(repo: Repository, chain: Manifest[], spaces: string[], staging: string, onBytes: ExtractProgress, signal?: AbortSignal, sync = true): Promise<void> {
  const syncs = new PendingSyncs(sync)
  // sha256 of every byte (object and file) runs on the second core when there is enough of it. BLAKE3
  // stays on this thread: at ~6 GB/s, hashing inline costs less than copying the bytes to a worker
  // (1 GiB restores, 5 alternating runs: 1.87-2.21 s inline against 2.37-2.71 s, peak RSS 215-220
  // against 244-253 MiB).
  const sha256Bytes = chain
    .filter((m) => m.hashAlgorithm === 'sha256')
    .flatMap((m) => m.spaces.filter((s) => spaces.includes(s.space) && s.archive))
    .reduce((a, s) => a + s.archive!.size + s.archive!.uncompressedSize, 0)
  const hashes = hashSource(sha256Bytes)
  const queue = [...spaces]
  // The first failure stops the other space's pipeline too, and is the one reported.
  const stop = new AbortController()
  const sig = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal
  let firstError: unknown
  const worker = async () => {
    try {
      for (let space = queue.shift(); space !== undefined; space = queue.shift()) {
        for (const m of chain) {
          const sp = m.spaces.find((s) => s.space === space)
          if (!sp) continue
          sig.throwIfAborted()
          await extractArchive(repo, m, space, staging, syncs, hashes, onBytes, sig)
          for (const g of sp.gone) await rm(join(staging, space, 'wal', g), {force: true})
        }
      }
    } catch (error) {
      if (!stop.signal.aborted) {
        firstError = error
        stop.abort(error)
      }
    }
  }
  await Promise.all(Array.from({length: Math.min(SPACE_CONCURRENCY, spaces.length)}, worker))
  await hashes.close()
  // Outstanding fsyncs finish (and close their files) before staging is removed or renamed.
  const synced = syncs.settle()
  if (stop.signal.aborted) {
    await synced.catch(() => {})
    throw firstError
  }
  await synced
  for (const space of spaces) {
    for (const sub of SPACE_SUBDIRS) await mkdir(join(staging, space, sub), {recursive: true, mode: 0o755})
  }
}
