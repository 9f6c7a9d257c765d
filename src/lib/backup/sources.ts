/**
 * What a backup reads: every WAL file of the selected spaces, by path, plus WAL files that a running
 * process (Engram) still holds open after they were unlinked. Engram's startup compaction can delete
 * or rename over the file its live writer appends to (storage format §6.3); everything written after
 * that exists only behind the open descriptor, so we read it from /proc/<pid>/fd.
 */
import {readdirSync, readlinkSync} from 'node:fs'
import {realpath} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'

import {discoverSpaces, isWalFileName, listWalFiles, selectSpaces, type SpaceDir} from '../engine/layout.js'

export interface WalSource {
  space: string
  /** Name of the file in the space's wal/ directory (for unlinked files: the name it had). */
  name: string
  /** Path to open: the file itself, or /proc/<pid>/fd/<n> for an unlinked file. */
  openPath: string
  source: 'path' | 'unlinked'
  pid?: number
  /** Its size when listed (files grow: an estimate); null for an unlinked file, not stat'ed here. */
  listedSize: number | null
}

export interface SourceSet {
  spaces: SpaceDir[]
  files: Map<string, WalSource[]>
  skippedDirs: Array<{path: string; reason: string}>
}

/**
 * Unlinked `wal-*.log` files under `root` held open by other processes, from /proc. /proc is in
 * memory, so it is read with synchronous calls: one thread-pool round trip per descriptor of every
 * process took 40 ms, a sixth of a small incremental backup.
 */
export async function findUnlinkedWalFiles(root: string): Promise<Array<{space: string; name: string; fdPath: string; pid: number}>> {
  const found: Array<{space: string; name: string; fdPath: string; pid: number}> = []
  // /proc/<pid>/fd links name canonical paths: compare against the root with its symlinks resolved.
  root = await realpath(root).catch(() => root)
  let pids: string[]
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)
  } catch {
    return found // no /proc (not Linux): nothing we can do
  }
  const prefix = root.endsWith('/') ? root : `${root}/`
  for (const pid of pids) {
    let fds: string[]
    try {
      fds = readdirSync(`/proc/${pid}/fd`)
    } catch {
      continue // gone, or not ours to read
    }
    for (const fd of fds) {
      let target: string
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`)
      } catch {
        continue
      }
      if (!target.endsWith(' (deleted)') || !target.startsWith(prefix)) continue
      const path = target.slice(0, -' (deleted)'.length)
      const walDir = dirname(path)
      if (basename(walDir) !== 'wal' || !isWalFileName(basename(path))) continue
      if (dirname(walDir) !== join(root, basename(dirname(walDir)))) continue
      found.push({space: basename(dirname(walDir)), name: basename(path), fdPath: `/proc/${pid}/fd/${fd}`, pid: Number(pid)})
    }
  }
  return found
}

export async function collectSources(root: string, only: string[]): Promise<SourceSet> {
  const d = await discoverSpaces(root)
  const spaces = selectSpaces(d, only)
  const files = new Map<string, WalSource[]>()
  for (const sp of spaces) {
    files.set(
      sp.id,
      (await listWalFiles(sp.walDir)).map((f) => ({space: sp.id, name: f.name, openPath: f.path, source: 'path' as const, listedSize: f.size})),
    )
  }
  // The same inode can be open in several processes or descriptors: keep one per (space, name, inode)
  // — decided later when the files are opened and stat'ed.
  for (const u of await findUnlinkedWalFiles(root)) {
    const list = files.get(u.space)
    if (!list) continue
    list.push({space: u.space, name: u.name, openPath: u.fdPath, source: 'unlinked', pid: u.pid, listedSize: null})
  }
  return {spaces, files, skippedDirs: d.skipped.map((s) => ({path: s.path, reason: s.reason}))}
}
