/**
 * Point-in-time recovery: choosing the backup whose restored state contains every record up to the
 * target, and cutting restored WAL files down to exactly the records at or before it.
 *
 * Targets are a time (header timestamps, ns) or a position (WAL file + sequence). A time target is
 * recoverable from the first backup whose snapshot is at or after it, unless Engram compacted the
 * space between the target and that snapshot: compaction rewrites every record with the time it ran,
 * so original times before it are gone from later backups. Records keep their exact bytes; a record
 * is kept or dropped whole, and nothing is re-encoded.
 */
import {open, rename, rm, type FileHandle} from 'node:fs/promises'
import {join} from 'node:path'

import {formatRfc3339} from '../engine/datetime.js'
import {listWalFiles} from '../engine/layout.js'
import {WalFileReader} from '../engine/reader.js'
import {ExitCode, OpsError} from '../errors.js'
import type {Manifest} from '../repo/manifest.js'

export type PitrTarget = {kind: 'time'; ns: bigint; exclusive: boolean} | {kind: 'seq'; file: string; sequence: bigint; exclusive: boolean}

export interface RecoverablePoint {
  ns: string
  time: string
  why: string
}

export class TargetNotAvailableError extends OpsError {
  constructor(message: string, nearest: RecoverablePoint[]) {
    super(`${message}; nearest recoverable points: ${nearest.map((p) => `${p.time} (${p.why})`).join(', ') || 'none'}`, {
      code: 'PITR_TARGET_UNAVAILABLE',
      exit: ExitCode.targetNotAvailable,
      suggestion: nearest.length > 0 ? 'Pick one of the recoverable points above, or a time between backups (see `engram-ops backup list`).' : 'Take a backup first.',
      details: {nearest},
    })
  }
}

const point = (ns: bigint, why: string): RecoverablePoint => ({ns: String(ns), time: formatRfc3339(ns), why})

/** Earliest timestamp captured by a backup (over its own captures). */
function firstRecordNs(m: Manifest, spaces: string[]): bigint | null {
  let min: bigint | null = null
  for (const sp of m.spaces) {
    if (spaces.length > 0 && !spaces.includes(sp.space)) continue
    for (const f of sp.files) {
      if (f.firstTimestampNs === null) continue
      const t = BigInt(f.firstTimestampNs)
      if (min === null || t < min) min = t
    }
  }
  return min
}

/**
 * When Engram compacted between backup i-1 and backup i, the time it did, else null. Works for full
 * and incremental backups. Per selected space, the compaction time is the first timestamp of the
 * files that replaced the old ones; across spaces, the latest of them (a target before it lies
 * across the compaction of at least one selected space). Spaces that are not selected do not count.
 */
export function compactionTimes(backups: Manifest[], spaces: string[]): Array<bigint | null> {
  const out: Array<bigint | null> = []
  let previous = new Map<string, Set<string>>() // space -> file names in its state
  for (const m of backups) {
    let at: bigint | null = null
    const current = new Map<string, Set<string>>()
    for (const sp of m.spaces) {
      if (spaces.length > 0 && !spaces.includes(sp.space)) continue
      const before = previous.get(sp.space)
      const state = new Set(m.type === 'incremental' && before ? before : [])
      for (const g of sp.gone) state.delete(g)
      for (const f of sp.files) state.add(f.name)
      current.set(sp.space, state)
      // Engram's compaction deletes every file it replaces: a full backup compares names, an
      // incremental recorded the files it found gone or rewritten.
      const compacted = m.type === 'full' ? before !== undefined && [...before].some((name) => !state.has(name)) : sp.gone.length > 0 || sp.rewritten.length > 0
      if (!compacted) continue
      let spaceAt: bigint | null = null
      for (const f of sp.files) {
        const replacement = (f.offset === 0 && !before?.has(f.name)) || sp.rewritten.includes(f.name)
        if (!replacement || f.firstTimestampNs === null) continue
        const t = BigInt(f.firstTimestampNs)
        if (spaceAt === null || t < spaceAt) spaceAt = t
      }
      if (spaceAt !== null && (at === null || spaceAt > at)) at = spaceAt
    }
    out.push(at)
    previous = current
  }
  return out
}

/** Picks the backup to restore for a target; throws TargetNotAvailableError with the nearest points. */
export function chooseBase(backups: Manifest[], target: PitrTarget, spaces: string[]): Manifest {
  if (backups.length === 0) throw new TargetNotAvailableError('the repository has no complete backup', [])
  if (target.kind === 'seq') {
    // The first backup whose state holds the target record (or holds the target file and a later
    // file of the same space: the target file is finished). A later file alone is not enough: the
    // target file may never have been backed up, or a compaction may have removed it.
    const holding = new Set<string>() // spaces whose state (so far) holds target.file
    for (const m of backups) {
      for (const sp of m.spaces) {
        if (spaces.length > 0 && !spaces.includes(sp.space)) continue
        if (m.type === 'full' || sp.gone.includes(target.file)) holding.delete(sp.space)
        if (sp.files.some((f) => f.name === target.file)) holding.add(sp.space)
        for (const f of sp.files) {
          if (f.name > target.file && f.records > 0 && holding.has(sp.space)) return m
          if (f.name === target.file && f.lastSequence !== null && BigInt(f.lastSequence) >= target.sequence) return m
        }
      }
    }
    const last = backups.at(-1)!
    throw new TargetNotAvailableError(`no backup contains ${target.file} sequence ${target.sequence}`, [point(BigInt(last.snapshotNs), `snapshot of the last backup ${last.id}`)])
  }
  const t = target.ns
  // Timestamps are integers: "before t" is "at or before t - 1". Every comparison uses that.
  const upTo = target.exclusive ? t - 1n : t
  const first = firstRecordNs(backups[0], spaces)
  const last = backups.at(-1)!
  if (first !== null && upTo < first) {
    throw new TargetNotAvailableError(`target ${formatRfc3339(t)} is before the first backed-up record`, [point(first, `first record in backup ${backups[0].id}`)])
  }
  const index = backups.findIndex((m) => BigInt(m.snapshotNs) >= upTo)
  if (index < 0) {
    throw new TargetNotAvailableError(`target ${formatRfc3339(t)} is after the last backup`, [point(BigInt(last.snapshotNs), `snapshot of the last backup ${last.id}`)])
  }
  const rewrites = compactionTimes(backups, spaces)
  // A compaction after the target and no later than the chosen snapshot has rewritten the times.
  for (let i = 0; i <= index; i++) {
    const at = rewrites[i]
    if (at !== null && at > upTo) {
      const before = i > 0 ? backups[i - 1] : null
      throw new TargetNotAvailableError(
        `target ${formatRfc3339(t)} lies across a compaction at ${formatRfc3339(at)} that rewrote record timestamps, and no backup was taken between them`,
        [...(before ? [point(BigInt(before.snapshotNs), `last snapshot before the compaction, backup ${before.id}`)] : []), point(at, `the compaction (records from then on are recoverable)`)],
      )
    }
  }
  return backups[index]
}

async function copyRange(src: FileHandle, dst: FileHandle, from: number, length: number, at: number): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(length, 1024 * 1024) || 1)
  let done = 0
  while (done < length) {
    const {bytesRead} = await src.read(buf, 0, Math.min(buf.length, length - done), from + done)
    if (bytesRead === 0) throw new Error(`short read at ${from + done}`)
    let w = 0
    while (w < bytesRead) w += (await dst.write(buf, w, bytesRead - w, at + done + w)).bytesWritten
    done += bytesRead
  }
}

/**
 * Rewrites each WAL file of `spaceDir` keeping only the records at or before the target, byte for
 * byte (runs of kept records are copied as they are). Files left with no record are removed. Each
 * rewritten file is fsynced unless `sync` is false (--no-sync).
 */
export async function cutToTarget(spaceDir: string, target: PitrTarget, sync = true): Promise<{kept: number; dropped: number; files: number}> {
  let kept = 0
  let dropped = 0
  let files = 0
  for (const f of await listWalFiles(join(spaceDir, 'wal'))) {
    if (target.kind === 'seq' && f.name > target.file) {
      await rm(f.path)
      continue
    }
    const tmp = `${f.path}.pitr`
    const src = await open(f.path, 'r')
    const out = await open(tmp, 'w', 0o600)
    let size = 0
    let keptHere = 0
    try {
      let run: {from: number; length: number} | null = null
      const flush = async () => {
        if (!run) return
        await copyRange(src, out, run.from, run.length, size)
        size += run.length
        run = null
      }
      let passedTarget = false
      for await (const rec of new WalFileReader(f.path, {handle: src}).records()) {
        let keep: boolean
        if (target.kind === 'time') {
          const ts = rec.header.timestampNs
          keep = target.exclusive ? ts < target.ns : ts <= target.ns
        } else if (f.name < target.file) {
          keep = true
        } else {
          const isTarget = rec.header.sequence === target.sequence
          keep = !passedTarget && !(isTarget && target.exclusive)
          if (isTarget) passedTarget = true
        }
        if (!keep) {
          dropped++
          await flush()
          continue
        }
        kept++
        keptHere++
        if (run && run.from + run.length === rec.offset) run.length += rec.recordSize
        else {
          await flush()
          run = {from: rec.offset, length: rec.recordSize}
        }
      }
      await flush()
      if (sync) await out.sync()
    } finally {
      await out.close()
      await src.close()
    }
    if (keptHere === 0) {
      await rm(tmp)
      await rm(f.path)
      continue
    }
    await rename(tmp, f.path)
    files++
  }
  return {kept, dropped, files}
}
