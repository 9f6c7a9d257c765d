/**
 * Restore and point-in-time recovery into a target directory. Plan first (chain, objects, bytes),
 * then execute into a staging directory beside the target; only when everything verified does the
 * staging directory replace the target. A failed restore leaves the target exactly as it was.
 */
import {randomBytes} from 'node:crypto'
import {chmod, mkdir, readdir, rename, rm, stat} from 'node:fs/promises'
import {basename, dirname, join, resolve} from 'node:path'

import {ExitCode, OpsError, UsageError} from '../errors.js'
import {fsyncDir} from '../fsync.js'
import type {Manifest} from '../repo/manifest.js'
import type {Repository} from '../repo/repository.js'
import type {Reporter} from '../ui/reporter.js'
import {extractChain} from './extract.js'
import {chooseBase, cutToTarget, type PitrTarget} from './pitr.js'

export interface RestorePlan {
  backup: string
  chain: Array<{id: string; type: string; startedAt: string}>
  spaces: string[]
  objects: Array<{key: string; bytes: number}>
  bytes: number
  target: string
  targetState: 'missing' | 'empty' | 'not-empty'
  pitr?: {target: string; exclusive: boolean}
}

export interface RestoreResult extends RestorePlan {
  dryRun: boolean
  restoredBytes: number
  durationMs: number
  /** Where the previous contents of a non-empty target were moved (with --yes). */
  replacedMovedTo: string | null
  /** Whether every restored file was fsynced (false with --no-sync). */
  synced: boolean
  pitrResult?: {kept: number; dropped: number}
}

async function targetState(dir: string): Promise<RestorePlan['targetState']> {
  try {
    const st = await stat(dir)
    if (!st.isDirectory()) {
      throw new UsageError(`restore target ${dir} exists and is not a directory`, {code: 'TARGET_NOT_DIR', subject: dir, suggestion: 'Pass a directory path (it may not exist yet).'})
    }
    return (await readdir(dir)).length === 0 ? 'empty' : 'not-empty'
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing'
    throw error
  }
}

export async function planRestore(repo: Repository, id: string, spaces: string[], to: string, pitr?: RestorePlan['pitr']): Promise<{plan: RestorePlan; chain: Manifest[]}> {
  const chain = await repo.chain(id)
  const last = chain.at(-1)!
  const available = last.spaces.map((s) => s.space)
  const unknown = spaces.filter((s) => !available.includes(s))
  if (unknown.length > 0) {
    throw new UsageError(`backup ${id} has no space ${unknown.join(', ')} (it has ${available.join(', ')})`, {code: 'SPACE_NOT_IN_BACKUP', subject: id, suggestion: `Pass one of: ${available.join(', ')}.`})
  }
  const selected = spaces.length > 0 ? spaces : available
  const objects = chain.flatMap((m) => m.spaces.filter((s) => selected.includes(s.space) && s.archive).map((s) => ({key: s.archive!.key, bytes: s.archive!.size})))
  const target = resolve(to)
  return {
    chain,
    plan: {
      backup: id,
      chain: chain.map((m) => ({id: m.id, type: m.type, startedAt: m.startedAt})),
      spaces: selected,
      objects,
      bytes: objects.reduce((a, o) => a + o.bytes, 0),
      target,
      targetState: await targetState(target),
      ...(pitr ? {pitr} : {}),
    },
  }
}

export interface ExecuteOptions {
  yes: boolean
  dryRun: boolean
  reporter: Reporter
  signal?: AbortSignal
  /**
   * false (--no-sync): do not wait for the restored files to reach the disk. Faster, but a crash of
   * the machine soon after can leave them incomplete (as pg_basebackup's --no-sync warns).
   */
  sync?: boolean
}

async function execute(repo: Repository, plan: RestorePlan, chain: Manifest[], o: ExecuteOptions, after?: (staging: string) => Promise<void>): Promise<RestoreResult> {
  const started = Date.now()
  // `=== true`: an unset CLI flag arrives as undefined, and the JSON result must still say false.
  const base: RestoreResult = {...plan, dryRun: o.dryRun === true, restoredBytes: 0, durationMs: 0, replacedMovedTo: null, synced: false}
  if (plan.targetState === 'not-empty' && !o.yes && !o.dryRun) {
    throw new OpsError(`restore target ${plan.target} is not empty`, {
      code: 'TARGET_NOT_EMPTY',
      exit: ExitCode.usage,
      subject: plan.target,
      suggestion: 'Pass --yes to replace it (its contents are moved aside, not deleted), or restore into an empty directory.',
    })
  }
  if (o.dryRun) return base
  const parent = dirname(plan.target)
  await mkdir(parent, {recursive: true})
  const staging = join(parent, `.${basename(plan.target)}.engram-ops-restore-${randomBytes(4).toString('hex')}`)
  await mkdir(staging, {mode: 0o755})
  const sync = o.sync !== false
  let restoredBytes = 0
  try {
    await extractChain(
      repo,
      chain,
      plan.spaces,
      staging,
      (n) => {
        restoredBytes += n
        o.reporter.progress({phase: 'restore', done: restoredBytes, unit: 'bytes'})
      },
      o.signal,
      sync,
    )
    if (after) await after(staging)
    o.signal?.throwIfAborted()
    await chmod(staging, 0o755)
    // The files are fsynced; their names are made durable too, bottom up, before they are moved into
    // place. Staging's own entries and the parent's matter only where staging itself is renamed.
    const stagingRenamed = plan.targetState !== 'empty'
    if (sync) {
      for (const space of plan.spaces) {
        await fsyncDir(join(staging, space, 'wal'))
        await fsyncDir(join(staging, space))
      }
      if (stagingRenamed) await fsyncDir(staging)
    }
    let replacedMovedTo: string | null = null
    if (plan.targetState === 'missing') {
      await rename(staging, plan.target)
    } else if (plan.targetState === 'empty') {
      for (const e of await readdir(staging)) await rename(join(staging, e), join(plan.target, e))
      await rm(staging, {recursive: true, force: true})
      if (sync) await fsyncDir(plan.target)
    } else {
      const stamp = `${plan.target}.replaced-${new Date().toISOString().replaceAll(':', '').replace(/\.\d+Z$/, 'Z')}`
      // Never reuse the name of an earlier restore's moved-aside copy (two restores in one second).
      replacedMovedTo = stamp
      for (let n = 2; await stat(replacedMovedTo).then(() => true, () => false); n++) replacedMovedTo = `${stamp}-${n}`
      await replaceTarget(staging, plan.target, replacedMovedTo)
      o.reporter.warn(`the previous contents of ${plan.target} were moved to ${replacedMovedTo}; delete it once the restore is checked`)
    }
    if (sync && stagingRenamed) await fsyncDir(parent)
    return {...base, restoredBytes, durationMs: Date.now() - started, replacedMovedTo, synced: sync}
  } catch (error) {
    // Staging holds the only copy of the restored data once a swap could not be undone: it stays.
    if (!(error instanceof OpsError && error.code === 'RESTORE_SWAP_FAILED')) await rm(staging, {recursive: true, force: true}).catch(() => {})
    throw error
  }
}

/**
 * Moves a non-empty target aside to `movedTo` and the staging directory into its place: two renames
 * (Node has no renameat2(RENAME_EXCHANGE)). Should the second fail, the first is undone, so the target
 * is as it was; should that fail too, the error names where both copies are and staging is kept.
 * `renameFn` is for tests.
 */
export async function replaceTarget(staging: string, target: string, movedTo: string, renameFn: typeof rename = rename): Promise<void> {
  await renameFn(target, movedTo)
  try {
    await renameFn(staging, target)
  } catch (error) {
    try {
      await renameFn(movedTo, target)
    } catch {
      throw new OpsError(`restore could not move ${staging} into place as ${target} (${(error as Error).message}), nor the previous contents back from ${movedTo}`, {
        code: 'RESTORE_SWAP_FAILED',
        exit: ExitCode.unexpected,
        subject: target,
        suggestion: `Nothing is lost: the restored data is in ${staging} and the previous contents in ${movedTo}; rename one of them to ${target}.`,
        cause: error,
      })
    }
    throw error
  }
}

export interface RestoreOptions extends ExecuteOptions {
  id?: string
  latest?: boolean
  spaces: string[]
  to: string
}

export async function runRestore(repo: Repository, o: RestoreOptions): Promise<RestoreResult> {
  const id = o.id ?? (await repo.requireBackups()).at(-1)!.id
  const {plan, chain} = await planRestore(repo, id, o.spaces, o.to)
  return execute(repo, plan, chain, o)
}

export interface PitrOptions extends ExecuteOptions {
  target: PitrTarget
  spaces: string[]
  to: string
}

export async function runPitr(repo: Repository, o: PitrOptions): Promise<RestoreResult> {
  const backups = await repo.requireBackups()
  let spaces = o.spaces
  if (o.target.kind === 'seq') {
    const file = o.target.file
    const holders = [...new Set(backups.flatMap((m) => m.spaces.filter((s) => s.files.some((f) => f.name === file)).map((s) => s.space)))]
    if (spaces.length === 0) {
      // A file no backup holds is a target no backup can reach: chooseBase says so (exit 16).
      if (holders.length > 1) {
        throw new UsageError(`spaces ${holders.join(', ')} have a WAL file ${file}`, {
          code: 'SEQ_TARGET_AMBIGUOUS',
          suggestion: 'Pass --space to say which space the position is in.',
        })
      }
      spaces = holders
    } else if (spaces.length !== 1) {
      throw new UsageError('a --target-seq position belongs to one space: pass exactly one --space', {code: 'SEQ_TARGET_AMBIGUOUS'})
    }
  }
  const base = chooseBase(backups, o.target, spaces)
  const description = o.target.kind === 'time' ? (await import('../engine/datetime.js')).formatRfc3339(o.target.ns) : `${o.target.file}:${o.target.sequence}`
  const {plan, chain} = await planRestore(repo, base.id, spaces, o.to, {target: description, exclusive: o.target.exclusive})
  let cut = {kept: 0, dropped: 0}
  const result = await execute(repo, plan, chain, o, async (staging) => {
    for (const space of plan.spaces) {
      const r = await cutToTarget(join(staging, space), o.target, o.sync !== false)
      cut = {kept: cut.kept + r.kept, dropped: cut.dropped + r.dropped}
    }
  })
  // A dry run cut nothing: no counts to report.
  return o.dryRun ? result : {...result, pitrResult: cut}
}
