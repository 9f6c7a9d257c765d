/**
 * An exclusive lock on a data directory, so two engram-ops writers (generate, serve) never append to
 * the same WAL. Engram itself has no lock; this file sits at the root, where Engram ignores files.
 * A lock whose holder is a dead process on this host is broken and reported.
 */
import {readFile, unlink, writeFile} from 'node:fs/promises'
import {hostname} from 'node:os'
import {join} from 'node:path'

import {fsError, LockedError} from '../errors.js'
import {processAlive} from '../process.js'

export const LOCK_FILE = '.engram-ops.lock'

export interface LockOwner {
  host: string
  pid: number
  command: string
  startedAt: string
}

export interface DataDirLock {
  path: string
  owner: LockOwner
  /** Set when a stale lock of a dead process was broken to take this one. */
  brokeStale?: LockOwner
  release(): Promise<void>
}


export async function acquireDataDirLock(root: string, command: string): Promise<DataDirLock> {
  const path = join(root, LOCK_FILE)
  const owner: LockOwner = {host: hostname(), pid: process.pid, command, startedAt: new Date().toISOString()}
  let brokeStale: LockOwner | undefined
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(path, `${JSON.stringify(owner)}\n`, {flag: 'wx', mode: 0o600})
      return {
        path,
        owner,
        brokeStale,
        async release() {
          try {
            const held = JSON.parse(await readFile(path, 'utf8')) as LockOwner
            if (held.pid === owner.pid && held.host === owner.host) await unlink(path)
          } catch {
            // already gone
          }
        },
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw fsError(error, 'create lock file', path)
    }
    let held: LockOwner | null = null
    try {
      held = JSON.parse(await readFile(path, 'utf8')) as LockOwner
    } catch {
      held = null // unreadable or half-written: treat as stale only if it stays that way
    }
    if (held && (held.host !== owner.host || processAlive(held.pid))) {
      throw new LockedError(
        `data directory ${root} is locked by engram-ops pid ${held.pid} on host ${held.host} (${held.command}, since ${held.startedAt})`,
        {
          code: 'DATA_DIR_LOCKED',
          subject: path,
          suggestion: `Stop that process first (or wait for it to finish); if it is gone, remove ${path}.`,
          details: {holder: held},
        },
      )
    }
    brokeStale = held ?? undefined
    await unlink(path).catch(() => {})
  }
  throw new LockedError(`could not take the lock ${path}`, {code: 'DATA_DIR_LOCKED', subject: path, suggestion: `Remove ${path} if no engram-ops process is running.`})
}
