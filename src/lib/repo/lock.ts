/**
 * One writer per repository, as a lease object: owner (host, pid, command, start), a token and an
 * expiry renewed by a heartbeat. Taken with a create-if-absent put. A lease that expired, or whose
 * owner is a dead process on this host, is broken and reported. Contention waits up to `waitMs`,
 * then fails with exit 12 naming the holder.
 *
 * Two races are closed here. Waiters that read the same stale lease do not both delete it (the
 * second delete could remove the lease the first had just taken): breaking needs a guard object
 * (see breakStale). And a holder that was paused past its lease does not renew it over another
 * process's lease: it stops renewing, and `assertHeld()` fails before the holder commits anything.
 * What remains: the window between reading a lease and writing or deleting it (milliseconds), and
 * two waiters removing the same expired guard (needs a waiter to have died mid-break first); closing
 * them needs conditional writes that not every backend has.
 */
import {randomUUID} from 'node:crypto'
import {hostname} from 'node:os'
import {setTimeout as sleep} from 'node:timers/promises'

import {LockedError} from '../errors.js'
import {processAlive} from '../process.js'
import {BackendError, readAll, type RepositoryBackend} from './backend.js'
import {LOCK_KEY} from './layout.js'

export interface LeaseOwner {
  host: string
  pid: number
  command: string
  startedAt: string
}

export interface Lease {
  owner: LeaseOwner
  token: string
  expiresAt: string
}

export interface RepoLock {
  owner: LeaseOwner
  /** Leases broken to take this one (dead or expired holders). */
  broken: LeaseOwner[]
  /** Rejects with LockedError (exit 12) if the lease lapsed, is about to, or another process took it over. */
  assertHeld(): Promise<void>
  release(): Promise<void>
}

export interface LockOptions {
  command: string
  /** How long to wait for a held lock before failing (ms). */
  waitMs: number
  /** Lease lifetime; renewed every ttl/6 while held. */
  ttlMs?: number
  signal?: AbortSignal
  onWait?: (holder: LeaseOwner) => void
}


/** How long a command waits for the repository lock unless told otherwise (--lock-wait). */
export const DEFAULT_LOCK_WAIT_MS = 30_000

/** Guards the deletion of a stale lease; see breakStale. */
const BREAK_KEY = `${LOCK_KEY}.break`
/** A guard older than this was left by a waiter that died while breaking a lease. */
const BREAK_TTL_MS = 30_000

/** The lease at `key` (default: the repository lock); null if free; an unreadable one reads as expired. */
export async function readLease(backend: RepositoryBackend, key = LOCK_KEY): Promise<Lease | null> {
  try {
    return JSON.parse((await readAll(await backend.get(key))).toString('utf8')) as Lease
  } catch (error) {
    if (error instanceof BackendError && error.kind === 'not-found') return null
    if (error instanceof SyntaxError) return {owner: {host: '?', pid: 0, command: '?', startedAt: '?'}, token: '', expiresAt: new Date(0).toISOString()}
    throw error
  }
}

/**
 * Deletes the stale lease `stale`, unless it changed in the meantime; true if this call deleted it.
 * Only the waiter that creates the guard (create-if-absent) may delete, and only after reading the
 * lease again and finding the same token. Another waiter finds the guard and waits as for a held lock.
 */
async function breakStale(backend: RepositoryBackend, stale: Lease, owner: LeaseOwner): Promise<boolean> {
  const guard: Lease = {owner, token: randomUUID(), expiresAt: new Date(Date.now() + BREAK_TTL_MS).toISOString()}
  try {
    await backend.put(BREAK_KEY, Buffer.from(`${JSON.stringify(guard)}\n`), {ifAbsent: true})
  } catch (error) {
    if (!(error instanceof BackendError && error.kind === 'exists')) throw error
    const other = await readLease(backend, BREAK_KEY)
    if (other && Date.parse(other.expiresAt) < Date.now()) await backend.delete([BREAK_KEY])
    return false
  }
  try {
    const again = await readLease(backend)
    if (!again || again.token !== stale.token) return false
    await backend.delete([LOCK_KEY])
    return true
  } finally {
    const mine = await readLease(backend, BREAK_KEY).catch(() => null)
    if (mine?.token === guard.token) await backend.delete([BREAK_KEY]).catch(() => {})
  }
}

export async function acquireRepoLock(backend: RepositoryBackend, o: LockOptions): Promise<RepoLock> {
  const ttl = o.ttlMs ?? 60_000
  const owner: LeaseOwner = {host: hostname(), pid: process.pid, command: o.command, startedAt: new Date().toISOString()}
  const token = randomUUID()
  // When the lease we last wrote runs out: past it, another process may rightly have broken it.
  let leaseEnd = 0
  const body = () => {
    const end = Date.now() + ttl
    return {end, bytes: Buffer.from(`${JSON.stringify({owner, token, expiresAt: new Date(end).toISOString()} satisfies Lease)}\n`)}
  }
  const broken: LeaseOwner[] = []
  const deadline = Date.now() + o.waitMs
  let announced = false
  for (;;) {
    o.signal?.throwIfAborted()
    try {
      const b = body()
      await backend.put(LOCK_KEY, b.bytes, {ifAbsent: true})
      leaseEnd = b.end
      break
    } catch (error) {
      if (!(error instanceof BackendError && error.kind === 'exists')) throw error
    }
    const held = await readLease(backend)
    if (!held) continue // released between our put and read
    const expired = Date.parse(held.expiresAt) < Date.now()
    const dead = held.owner.host === owner.host && held.owner.pid > 0 && !processAlive(held.owner.pid)
    if ((expired || dead) && (await breakStale(backend, held, owner))) {
      broken.push(held.owner)
      continue
    }
    if (Date.now() >= deadline) {
      throw new LockedError(
        `repository ${backend.url} is locked by ${held.owner.command} (pid ${held.owner.pid} on ${held.owner.host}, since ${held.owner.startedAt}; lease until ${held.expiresAt})`,
        {
          code: 'REPO_LOCKED',
          subject: LOCK_KEY,
          suggestion: 'Wait for it to finish, or pass a longer --lock-wait; a dead holder is detected automatically.',
          details: {holder: held.owner, expiresAt: held.expiresAt},
        },
      )
    }
    if (!announced) o.onWait?.(held.owner)
    announced = true
    await sleep(Math.min(500, Math.max(0, deadline - Date.now())), undefined, {signal: o.signal})
  }
  // Heartbeat: renew the lease while it is ours and has not run out. A lease that ran out (this
  // process was paused, or the repository unreachable, for longer than the TTL) or that another
  // process holds is lost for good: renewing it could overwrite the new holder's lease.
  let stopped = false
  let lost: string | null = null
  // A lease is used (renewed, or relied on to commit) only while a third of its TTL remains: a
  // renewal that lands just as the lease runs out could overwrite one another process took meanwhile.
  const margin = Math.floor(ttl / 3)
  const checkExpiry = () => {
    if (!lost && Date.now() >= leaseEnd - margin) lost = `its lease was about to run out (at ${new Date(leaseEnd).toISOString()}) before it could be renewed`
  }
  const checkLease = (held: Lease | null) => {
    if (!lost && held?.token !== token) lost = held ? `${held.owner.command} (pid ${held.owner.pid} on ${held.owner.host}) holds it now` : 'its lease was deleted by another process'
  }
  const renew = async () => {
    checkExpiry()
    if (stopped || lost) return
    let held: Lease | null
    try {
      held = await readLease(backend)
    } catch {
      return // unreachable for now: try again at the next beat, while the lease lasts
    }
    if (stopped) return
    checkLease(held)
    checkExpiry()
    if (lost) return
    const b = body()
    await backend.put(LOCK_KEY, b.bytes).then(
      () => {
        leaseEnd = b.end
      },
      () => {},
    )
  }
  // The renewal in flight, if any: release() waits for it, or its put could land after the delete
  // and leave a live-looking lease behind.
  let renewing: Promise<void> = Promise.resolve()
  // Beats at a sixth of the TTL: with a third as the margin, a beat that fails (the repository briefly
  // unreachable) leaves room for two more before the lease counts as lost. Beating at a third, the
  // next beat after one failure already fell on the margin.
  const timer = setInterval(() => {
    renewing = renewing.then(renew)
  }, Math.max(100, Math.floor(ttl / 6)))
  timer.unref()
  return {
    owner,
    broken,
    async assertHeld() {
      // Read the lease itself, not only what this process remembers: it must still be ours, with a
      // margin left, when something is committed under it.
      checkExpiry()
      if (!lost) checkLease(await readLease(backend))
      checkExpiry()
      if (lost) {
        throw new LockedError(`lost the repository lock on ${backend.url}: ${lost}`, {
          code: 'LOCK_LOST',
          subject: LOCK_KEY,
          suggestion: 'Nothing was committed; run the command again (check for long pauses, e.g. a suspended VM, or an unreachable repository).',
        })
      }
    },
    async release() {
      stopped = true
      clearInterval(timer)
      await renewing
      const held = await readLease(backend).catch(() => null)
      if (held?.token === token) await backend.delete([LOCK_KEY])
    },
  }
}
