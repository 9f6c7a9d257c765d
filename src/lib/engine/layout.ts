/**
 * Where Engram keeps things: `<root>/<space_id>/wal/wal-<16 hex unix secs>.log`, plus empty
 * `hot/ warm/ cold/` directories. Space ids follow MemorySpaceId: trimmed, 3–64 bytes of [a-z0-9_-].
 */
import {readdir, stat} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {EngineError, fsError, UsageError} from '../errors.js'

export const SPACE_ID_PATTERN = /^[a-z0-9_-]{3,64}$/
export const SPACE_SUBDIRS = ['wal', 'hot', 'warm', 'cold'] as const

export function isValidSpaceId(id: string): boolean {
  return SPACE_ID_PATTERN.test(id.trim())
}

export function walFileName(createdUnixSecs: number | bigint): string {
  return `wal-${BigInt(createdUnixSecs).toString(16).padStart(16, '0')}.log`
}

/** Engram reads files whose name starts with `wal-` and whose extension is exactly `log`. */
export function isWalFileName(name: string): boolean {
  return name.startsWith('wal-') && name.endsWith('.log')
}

/** The writer creation time encoded in a WAL file name, or null for a name Engram did not write. */
export function walFileCreatedSecs(name: string): bigint | null {
  const m = /^wal-([0-9a-f]{16})\.log$/.exec(name)
  return m ? BigInt(`0x${m[1]}`) : null
}

export interface SpaceDir {
  id: string
  /** The directory name on disk (differs from id only by surrounding whitespace). */
  dirName: string
  path: string
  walDir: string
}

export interface SkippedEntry {
  name: string
  path: string
  reason: string
}

export interface Discovery {
  root: string
  spaces: SpaceDir[]
  skipped: SkippedEntry[]
}

export async function assertDataDir(root: string): Promise<void> {
  let st
  try {
    st = await stat(root)
  } catch (error) {
    throw fsError(error, 'open data directory', root)
  }
  if (!st.isDirectory()) {
    throw new EngineError(`open data directory: ${root} is not a directory`, {
      code: 'NOT_A_DIRECTORY',
      subject: root,
      suggestion: 'Pass the Engram data root (ENGRAM_DATA_DIR), the directory that holds one folder per memory space.',
    })
  }
}

/** Lists memory spaces as Engram's recover_all does: every directory whose (trimmed) name is a valid id. */
export async function discoverSpaces(root: string): Promise<Discovery> {
  await assertDataDir(root)
  let entries
  try {
    entries = await readdir(root, {withFileTypes: true})
  } catch (error) {
    throw fsError(error, 'list data directory', root)
  }
  const spaces: SpaceDir[] = []
  const skipped: SkippedEntry[] = []
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (!e.isDirectory()) continue
    const path = join(root, e.name)
    if (!isValidSpaceId(e.name)) {
      skipped.push({name: e.name, path, reason: 'not a valid memory space id (3-64 characters of a-z, 0-9, _ and -)'})
      continue
    }
    spaces.push({id: e.name.trim(), dirName: e.name, path, walDir: join(path, 'wal')})
  }
  return {root, spaces, skipped}
}

export interface WalFileEntry {
  name: string
  path: string
  size: number
}

/** WAL files of a space in the order Engram reads them (name order). Missing wal/ means none. */
export async function listWalFiles(walDir: string): Promise<WalFileEntry[]> {
  let entries
  try {
    entries = await readdir(walDir, {withFileTypes: true})
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw fsError(error, 'list WAL directory', walDir)
  }
  const files: WalFileEntry[] = []
  for (const e of entries) {
    if (!e.isFile() || !isWalFileName(e.name)) continue
    const path = join(walDir, e.name)
    try {
      files.push({name: e.name, path, size: (await stat(path)).size})
    } catch (error) {
      // A file removed between readdir and stat (Engram's compaction) is simply gone.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw fsError(error, 'stat WAL file', path)
    }
  }
  return files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

/** The discovered spaces named in `only` (all when empty); an unknown name is a usage error (exit 2). */
export function selectSpaces(d: Discovery, only: readonly string[]): SpaceDir[] {
  const unknown = only.filter((s) => !d.spaces.some((sp) => sp.id === s))
  if (unknown.length > 0) {
    throw new UsageError(`no memory space ${unknown.map((s) => JSON.stringify(s)).join(', ')} in ${d.root}`, {
      code: 'SPACE_NOT_FOUND',
      subject: d.root,
      suggestion: `Run \`engram-ops engine stats ${d.root}\` to list the spaces it holds.`,
    })
  }
  return d.spaces.filter((s) => only.length === 0 || only.includes(s.id))
}

/** The data root a command works on: the flag's value (or ENGRAM_DATA_DIR), else ./engram-data, as Engram. */
export function resolveDataDir(value: string | undefined): string {
  return resolve(value ?? 'engram-data')
}
