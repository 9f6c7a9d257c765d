/**
 * One writer per repository, as a lease object: owner (host, pid, command, start), a token and an
 * expiry renewed by a heartbeat. Taken with a create-if-absent put. A lease that expired, or whose
 * owner is a dead process on this host, is broken and reported. Contention waits up to `waitMs`,
 * then fails with exit 12 naming the holder.
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

interface Lease {
  owner: LeaseOwner
  token: string
  expiresAt: string
}

export interface RepoLock {
  owner: LeaseOwner
  /** Leases broken to take this one (dead or expired holders). */
  broken: LeaseOwner[]
  release(): Promise<void>
}

export interface LockOptions {
  command: string
  /** How long to wait for a held lock before failing (ms). */
  waitMs: number
  /** Lease lifetime; renewed every ttl/3 while held. */
  ttlMs?: number
  signal?: AbortSignal
  onWait?: (holder: LeaseOwner) => void
}


async function readLease(backend: RepositoryBackend): Promise<Lease | null> {
  try {
    return JSON.parse((await readAll(await backend.get(LOCK_KEY))).toString('utf8')) as Lease
  } catch (error) {
    if (error instanceof BackendError && error.kind === 'not-found') return null
    if (error instanceof SyntaxError) return {owner: {host: '?', pid: 0, command: '?', startedAt: '?'}, token: '', expiresAt: new Date(0).toISOString()}
    throw error
  }
}

export async function acquireRepoLock(backend: RepositoryBackend, o: LockOptions): Promise<RepoLock> {
  const ttl = o.ttlMs ?? 60_000
  const owner: LeaseOwner = {host: hostname(), pid: process.pid, command: o.command, startedAt: new Date().toISOString()}
  const token = randomUUID()
  const body = () => Buffer.from(`${JSON.stringify({owner, token, expiresAt: new Date(Date.now() + ttl).toISOString()} satisfies Lease)}\n`)
  const broken: LeaseOwner[] = []
  const deadline = Date.now() + o.waitMs
  let announced = false
  for (;;) {
    o.signal?.throwIfAborted()
    try {
      await backend.put(LOCK_KEY, body(), {ifAbsent: true})
      break
    } catch (error) {
      if (!(error instanceof BackendError && error.kind === 'exists')) throw error
    }
    const held = await readLease(backend)
    if (!held) continue // released between our put and read
    const expired = Date.parse(held.expiresAt) < Date.now()
    const dead = held.owner.host === owner.host && held.owner.pid > 0 && !processAlive(held.owner.pid)
    if (expired || dead) {
      broken.push(held.owner)
      await backend.delete([LOCK_KEY])
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
  // Heartbeat: renew the lease while we hold it (only if it is still ours).
  let stopped = false
  const renew = async () => {
    const held = await readLease(backend).catch(() => null)
    if (!stopped && held?.token === token) await backend.put(LOCK_KEY, body()).catch(() => {})
  }
  // The renewal in flight, if any: release() waits for it, or its put could land after the delete
  // and leave a live-looking lease behind.
  let renewing: Promise<void> = Promise.resolve()
  const timer = setInterval(() => {
    renewing = renewing.then(renew)
  }, Math.max(1000, Math.floor(ttl / 3)))
  timer.unref()
  return {
    owner,
    broken,
    async release() {
      stopped = true
      clearInterval(timer)
      await renewing
      const held = await readLease(backend).catch(() => null)
      if (held?.token === token) await backend.delete([LOCK_KEY])
    },
  }
}
