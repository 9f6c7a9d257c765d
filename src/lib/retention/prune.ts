/**
 * Applies a retention policy to a repository: plans by default, deletes with `apply`. Runs under the
 * repository lock so it can run from cron beside a backup (it waits, then acts on what is there).
 * A backup's manifest is deleted first, so a half-deleted backup is never listed as complete; a
 * second run removes whatever a crash left. Running it twice in a row deletes nothing the second time.
 */
import {cleanupIncomplete} from '../backup/backup.js'
import {manifestKey} from '../repo/layout.js'
import {acquireRepoLock, type LeaseOwner} from '../repo/lock.js'
import type {Repository} from '../repo/repository.js'
import type {Reporter} from '../ui/reporter.js'
import {planRetention, type RetentionDecision, type RetentionPolicy} from './policy.js'

export interface PruneResult {
  dryRun: boolean
  policy: RetentionPolicy
  decisions: RetentionDecision[]
  kept: number
  deleted: string[]
  incomplete: string[]
  freedBytes: number
  brokenLocks: LeaseOwner[]
}

export async function runPrune(repo: Repository, policy: RetentionPolicy, o: {apply: boolean; lockWaitMs: number; reporter: Reporter; signal?: AbortSignal}): Promise<PruneResult> {
  const lock = o.apply
    ? await acquireRepoLock(repo.backend, {command: 'backup prune', waitMs: o.lockWaitMs, signal: o.signal, onWait: (h) => o.reporter.info(`repository is locked by ${h.command} (pid ${h.pid}); waiting`)})
    : null
  try {
    for (const b of lock?.broken ?? []) o.reporter.warn(`broke a stale repository lock held by ${b.command} (pid ${b.pid} on ${b.host})`)
    const all = await repo.backups()
    const complete = all.filter((b) => b.manifest).map((b) => b.manifest!)
    const incomplete = all.filter((b) => !b.complete)
    const decisions = planRetention(complete, policy)
    const doomed = decisions.filter((d) => !d.keep).map((d) => d.id)
    const sizes = new Map(all.map((b) => [b.id, b.bytes]))
    const keysOf = new Map(all.map((b) => [b.id, b.keys]))
    const freedBytes = [...doomed, ...incomplete.map((b) => b.id)].reduce((a, id) => a + (sizes.get(id) ?? 0), 0)
    if (o.apply) {
      for (const id of doomed) {
        o.signal?.throwIfAborted()
        await lock?.assertHeld()
        await repo.deleteManifest(id)
        await repo.backend.delete(keysOf.get(id)!.filter((k) => k !== manifestKey(id)))
        o.reporter.info(`deleted backup ${id}`)
      }
      const cleaned = await cleanupIncomplete(repo, incomplete)
      for (const id of cleaned) o.reporter.info(`deleted the objects of incomplete backup ${id}`)
    }
    return {
      dryRun: !o.apply,
      policy,
      decisions,
      kept: decisions.filter((d) => d.keep).length,
      deleted: doomed,
      incomplete: incomplete.map((b) => b.id),
      freedBytes,
      brokenLocks: lock?.broken ?? [],
    }
  } finally {
    await lock?.release()
  }
}
