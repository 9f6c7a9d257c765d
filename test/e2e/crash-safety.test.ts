/**
 * Crash safety of backups, end to end with the built CLI (`node bin/run.js`, from dist/).
 *
 * A `backup full|incremental` is killed with SIGKILL (kill -9) at moments spread over its whole run:
 * process start-up, taking the repository lock, cleaning up, streaming each space's archive, writing
 * the manifest, releasing the lock. After every kill:
 *  - `backup list --json` never lists as complete a backup that fails `backup verify --level 3`
 *    (every backup a killed run managed to complete is verified with the CLI, and the newest one after
 *    each kill in-process);
 *  - the next `backup full` succeeds: it breaks the dead process's lock and says so, and it removes
 *    the objects of the incomplete backups and says so;
 * and at the end `backup prune --yes` leaves no object of an incomplete backup and no `*.tmp-*` file.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdtemp, readdir, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {generateData} from '../../src/lib/engine/generate.js'
import {FsBackend} from '../../src/lib/repo/backends/fs.js'
import {Repository} from '../../src/lib/repo/repository.js'
import {verifyBackup} from '../../src/lib/restore/verify.js'
import {createReporter} from '../../src/lib/ui/reporter.js'
import {unwrap} from '../support/cli.js'
import {repoRoot} from '../support/fixtures.js'
import {filesUnder} from '../support/files.js'

interface Run {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  ms: number
}

const BIN = join(repoRoot, 'bin', 'run.js')

function start(args: string[]): {child: ChildProcess; done: Promise<Run>} {
  const env: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1', CI: '1'}
  delete env.ENGRAM_DATA_DIR
  const t0 = Date.now()
  const child = spawn(process.execPath, [BIN, ...args], {cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (d) => (stdout += d))
  child.stderr!.setEncoding('utf8').on('data', (d) => (stderr += d))
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({code, signal, stdout, stderr, ms: Date.now() - t0}))
  })
  return {child, done}
}

const cli = (args: string[]) => start(args).done
const debug = (...a: unknown[]) => {
  if (process.env.CRASH_DEBUG) console.log(new Date().toISOString(), ...a)
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface ListRow {
  id: string
  type: string
  parent: string | null
  startedAt: string
}

const TRIALS = Number(process.env.CRASH_TRIALS ?? 20)
const SPACES = 3
const EPISODES = 1500
/**
 * Extra episodes in the second space (tenant-001), so its archive lands well after the first space's:
 * archives of a backup are written concurrently, and with equal spaces they land within milliseconds
 * of each other and of the manifest, which left almost no moment to kill a run with some archives
 * stored and no manifest (an incomplete backup).
 */
const BIG_EXTRA = 4500
/** The generator's default --start (ns): appends go after it, one hour window each. */
const GEN_START_MS = 1_795_000_000_000

let tmp: string
let data: string
let repo: string
let appends = 0

async function listBackups(): Promise<{backups: ListRow[]; incomplete: string[]}> {
  const r = await cli(['backup', 'list', '--repo', repo, '--json'])
  expect(r.code, r.stderr).toBe(0)
  return JSON.parse(r.stdout)
}

/** Appends `episodes` to the newest WAL file of every space (or of `only`), timestamped after everything so far. */
async function appendData(episodes: number, only?: string[]): Promise<void> {
  appends++
  const spaces = only ?? Array.from({length: SPACES}, (_, i) => (i === 0 ? 'default' : `tenant-${String(i).padStart(3, '0')}`))
  const startNs = BigInt(GEN_START_MS + appends * 2 * 3_600_000) * 1_000_000n
  const r = await generateData({root: data, spaces, episodes, seed: 100 + appends, startNs, windowNs: 3_600_000_000_000n, append: true, fsync: false})
  expect(r.episodes).toBe(spaces.length * episodes)
}

beforeAll(async () => {
  if (!existsSync(join(repoRoot, 'dist', 'commands', 'backup', 'full.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json`')
  tmp = await mkdtemp(join(tmpdir(), 'engram-crash-'))
  data = join(tmp, 'data')
  repo = join(tmp, 'repo')
  const g = await cli(['engine', 'generate', '--data-dir', data, '--spaces', String(SPACES), '--episodes', String(EPISODES), '--no-sync'])
  expect(g.code, g.stderr).toBe(0)
  await appendData(BIG_EXTRA, ['tenant-001'])
  const init = await cli(['repo', 'init', '--repo', repo])
  expect(init.code, init.stderr).toBe(0)
})

afterAll(async () => {
  if (tmp) await rm(tmp, {recursive: true, force: true})
})

describe('backups killed with SIGKILL at random moments', () => {
  it(`${TRIALS} kill -9 trials: nothing incomplete is ever listed, the next backup recovers, prune leaves no debris`, {timeout: 420_000}, async () => {
    const t0 = Date.now()
    // Baselines: how long an unkilled run takes (process start-up included), to spread the kills.
    const base = await cli(['backup', 'full', '--data-dir', data, '--repo', repo, '--json'])
    expect(base.code, base.stderr).toBe(0)
    const baseFull = JSON.parse(base.stdout)
    expect(baseFull.totals.files).toBe(SPACES)
    expect(baseFull.totals.records).toBe(SPACES * EPISODES + BIG_EXTRA)
    let fullMs = base.ms
    await appendData(300)
    const baseIncr = await cli(['backup', 'incremental', '--data-dir', data, '--repo', repo, '--json'])
    expect(baseIncr.code, baseIncr.stderr).toBe(0)
    expect(JSON.parse(baseIncr.stdout)).toMatchObject({type: 'incremental', parent: baseFull.id, totals: {records: SPACES * 300}})
    const incrMs = baseIncr.ms
    // Big enough that a backup takes about 1-2 s (process start-up included), so kills land in every phase.
    expect(baseFull.totals.bytes).toBeGreaterThan(15 * 1024 * 1024)

    const verified = new Set<string>()
    const cliVerified = new Set<string>()
    /** `backup verify ID --level 3` (records the verification in the repository). */
    const verify3 = async (id: string) => {
      const v = await cli(['backup', 'verify', id, '--level', '3', '--repo', repo])
      debug(`  verify ${id} L3: ${v.code} in ${v.ms} ms`)
      expect(v.code, `backup verify ${id} --level 3:\n${v.stdout}\n${v.stderr}`).toBe(0)
      expect(v.stdout).toMatch(new RegExp(`^${id}: level 3 OK \\(\\d+ objects, \\d+ records\\)`))
      verified.add(id)
      cliVerified.add(id)
    }
    /** The same check in-process (no CLI start-up), for the newest backup after each kill. */
    const lib = await Repository.open(new FsBackend(repo))
    const verify3InProcess = async (id: string) => {
      const t = Date.now()
      const v = await verifyBackup(lib, id, 3, createReporter({json: true, quiet: true}))
      debug(`  verify ${id} L3 in-process in ${Date.now() - t} ms`)
      expect(v.findings, `verify ${id} --level 3`).toEqual([])
      expect(v.ok).toBe(true)
      verified.add(id)
    }

    const known0 = new Set((await listBackups()).backups.map((b) => b.id))
    let known = known0
    let newestId: string = JSON.parse(baseIncr.stdout).id
    const stats = {killed: 0, finishedBeforeKill: 0, completedByKilled: 0, incompleteLeft: 0, locksBroken: 0, cleanedUp: 0, full: 0, incremental: 0}
    const delays: number[] = []
    for (let i = 0; i < TRIALS; i++) {
      const type = i % 3 === 1 ? 'incremental' : 'full'
      stats[type]++
      if (type === 'incremental') await appendData(100)
      // Stratified over [50 ms, 110% of an unkilled run]: every phase gets hit, a few runs finish first.
      const span = (type === 'full' ? fullMs : incrMs) * 1.1 - 50
      const delay = Math.round(50 + span * ((Math.floor(i / 3) + Math.random()) / Math.ceil(TRIALS / 3)))
      delays.push(delay)
      const run = start(['backup', type, '--data-dir', data, '--repo', repo, '--json'])
      let exited = false
      void run.done.then(() => (exited = true))
      if (i % 5 === 2 || i % 5 === 4) {
        // Aimed at the archive phase: kill while the first archive streams into its temp file (the
        // backup is then invisible: no object yet), or soon after it landed (an incomplete backup).
        const t = Date.now()
        const inArchivePhase = async () => {
          for (const d of await readdir(join(repo, 'backups')).catch(() => [] as string[])) {
            if (known.has(d)) continue
            const names = await readdir(join(repo, 'backups', d)).catch(() => [] as string[])
            if (i % 5 === 2 ? names.some((f) => f.startsWith('default.tar.zst.tmp-')) : names.some((f) => f.endsWith('.tar.zst'))) return true
          }
          return false
        }
        while (!exited && !(await inArchivePhase()) && Date.now() - t < 30_000) await sleep(5)
        if (i % 5 === 4) await sleep(Math.random() * 30)
        delays[delays.length - 1] = Date.now() - t
      } else {
        await sleep(delay)
      }
      if (!exited) run.child.kill('SIGKILL')
      const r = await run.done
      debug(`trial ${i} ${type} delay ${delay} ms: ${r.signal ?? r.code} after ${r.ms} ms`)
      if (r.signal === 'SIGKILL') stats.killed++
      else {
        // It finished before the kill: it must have succeeded.
        expect(r.code, r.stderr).toBe(0)
        stats.finishedBeforeKill++
      }

      // What the dead process left: maybe a lock (with its pid) and objects of an unfinished backup.
      const lockPath = join(repo, 'locks', 'repository.lock')
      const lock = existsSync(lockPath) ? JSON.parse(await readFile(lockPath, 'utf8')) : null
      if (r.signal !== 'SIGKILL') expect(lock).toBeNull()
      if (lock) expect(lock.owner).toMatchObject({pid: run.child.pid, command: `backup ${type}`})

      // Never listed as complete unless it verifies at level 3 (the newest before this run is verified
      // meanwhile: both only read).
      const [list] = await Promise.all([listBackups(), verified.has(newestId) ? null : verify3InProcess(newestId)])
      const fresh = list.backups.filter((b) => !known.has(b.id))
      expect(fresh.length).toBeLessThanOrEqual(1) // only the killed run can have added one
      for (const b of fresh) {
        expect(b.type).toBe(type)
        stats.completedByKilled++
        await verify3(b.id)
      }
      const newest = list.backups.at(-1)!
      if (!verified.has(newest.id)) await verify3(newest.id)
      // A backup directory without a manifest is reported as incomplete, never as a backup.
      for (const id of list.incomplete) {
        expect(list.backups.some((b) => b.id === id)).toBe(false)
        expect(existsSync(join(repo, 'backups', id, 'manifest.json'))).toBe(false)
      }
      stats.incompleteLeft += list.incomplete.length

      // The next backup full succeeds, breaks the dead lock and removes the incomplete backups' objects.
      debug(`  listed and verified`)
      const next = await cli(['backup', 'full', '--data-dir', data, '--repo', repo])
      debug(`  recovery full ${next.ms} ms`)
      expect(next.code, next.stderr).toBe(0)
      const id = /^backup (\S+) \(full\) complete: 3 files, /m.exec(next.stdout)?.[1]
      expect(id, next.stdout).toBeDefined()
      const err = unwrap(next.stderr)
      if (lock) {
        expect(err).toContain(`warning: broke a stale repository lock held by backup ${type} (pid ${run.child.pid} on ${lock.owner.host}, since ${lock.owner.startedAt})`)
        stats.locksBroken++
      } else {
        expect(err).not.toContain('broke a stale repository lock')
      }
      for (const inc of list.incomplete) expect(err).toContain(`warning: removed the objects of incomplete backup ${inc} (a run that did not finish)`)
      expect(err.match(/removed the objects of incomplete backup/g)?.length ?? 0).toBe(list.incomplete.length)
      stats.cleanedUp += list.incomplete.length
      expect(existsSync(lockPath)).toBe(false)
      for (const inc of list.incomplete) {
        const left = existsSync(join(repo, 'backups', inc)) ? await filesUnder(join(repo, 'backups', inc)) : []
        expect(left, `objects of incomplete backup ${inc}`).toEqual([])
      }
      expect((await filesUnder(repo)).filter((f) => f.includes('.tmp-'))).toEqual([])
      known = new Set([...list.backups.map((b) => b.id), id!])
      newestId = id!
      fullMs = next.ms // track load and data growth
    }

    // Finally a run killed in its archive phase is left for prune (not a backup) to clean up: prune
    // (keeping every complete backup) breaks the dead lock and leaves no debris at all.
    const last = start(['backup', 'full', '--data-dir', data, '--repo', repo, '--json'])
    let lastExited = false
    void last.done.then(() => (lastExited = true))
    const lt = Date.now()
    // Killed while the second space's archive streams into its temp file, after the first one landed.
    const lastArchive = async () => {
      for (const d of await readdir(join(repo, 'backups'))) {
        if (known.has(d)) continue
        const names = await readdir(join(repo, 'backups', d)).catch(() => [] as string[])
        if (names.includes('default.tar.zst') && names.some((n) => n.startsWith('tenant-001.tar.zst.tmp-'))) return true
      }
      return false
    }
    while (!lastExited && !(await lastArchive()) && Date.now() - lt < 30_000) await sleep(5)
    last.child.kill('SIGKILL')
    const lastRun = await last.done
    const leftover = await listBackups()
    const lastLock = existsSync(join(repo, 'locks', 'repository.lock'))
    const lastDebris = (await filesUnder(repo)).filter((f) => f.includes('.tmp-') || leftover.incomplete.some((id) => f.startsWith(`backups/${id}/`)))
    debug(`last run: ${lastRun.signal ?? lastRun.code}, incomplete ${leftover.incomplete.join(', ')}, lock ${lastLock}`)
    const prune = await cli(['backup', 'prune', '--repo', repo, '--yes', '--keep-last', '100', '--json'])
    expect(prune.code, prune.stderr).toBe(0)
    const pruned = JSON.parse(prune.stdout)
    expect(pruned).toMatchObject({dryRun: false, deleted: [], incomplete: leftover.incomplete})
    if (lastRun.signal === 'SIGKILL') {
      // The kill landed after the first archive was stored, while the second was being written.
      expect(lastLock).toBe(true)
      // (Almost always a temp file too; the log line shows what prune had to remove.)
      expect(lastDebris.length).toBeGreaterThan(0)
      expect(pruned.brokenLocks).toEqual([expect.objectContaining({pid: last.child.pid, command: 'backup full'})])
      if (leftover.backups.every((b) => known.has(b.id))) expect(leftover.incomplete).toHaveLength(1)
    }
    const lastCompleted = leftover.backups.filter((b) => !known.has(b.id)).map((b) => b.id)
    known = new Set(leftover.backups.map((b) => b.id))
    const final = await listBackups()
    expect(final.incomplete).toEqual([])
    // The newest backup (and the last run's, had it completed) verify at level 3.
    for (const id of [...lastCompleted, final.backups.at(-1)!.id]) if (!verified.has(id)) await verify3(id)
    const ids = new Set(final.backups.map((b) => b.id))
    expect(ids).toEqual(known)
    expect(ids.size).toBeGreaterThanOrEqual(2 + TRIALS + stats.completedByKilled)
    const files = await filesUnder(repo)
    expect(files.filter((f) => f.includes('.tmp-'))).toEqual([])
    expect(files.filter((f) => f.startsWith('locks/'))).toEqual([])
    const byBackup = new Map<string, string[]>()
    for (const f of files) {
      if (f === 'engram-ops-repo.json') continue
      const m = /^backups\/([^/]+)\/([^/]+)$/.exec(f)
      expect(m, `unexpected file ${f}`).not.toBeNull()
      expect(ids.has(m![1]), `${f} belongs to no complete backup`).toBe(true)
      byBackup.set(m![1], [...(byBackup.get(m![1]) ?? []), m![2]])
    }
    for (const b of final.backups) {
      const own = byBackup.get(b.id) ?? []
      expect(own).toContain('manifest.json')
      const manifest = JSON.parse(await readFile(join(repo, 'backups', b.id, 'manifest.json'), 'utf8'))
      const archives = manifest.spaces.filter((s: {archive: unknown}) => s.archive).map((s: {archive: {key: string}}) => s.archive.key.split('/').pop())
      // Exactly the manifest, its archives, and the record of the last verification if one ran.
      expect(own.filter((f) => f !== 'verification.json').sort()).toEqual(['manifest.json', ...archives].sort())
      expect(own.includes('verification.json')).toBe(cliVerified.has(b.id))
    }
    // Every backup directory still on disk is a complete backup's: cleanup removes the emptied ones.
    expect((await readdir(join(repo, 'backups'))).sort()).toEqual([...ids].sort())

    const ms = Date.now() - t0
    console.log(
      `crash safety: ${TRIALS} trials (${stats.full} full, ${stats.incremental} incremental), ${stats.killed} killed, ${stats.finishedBeforeKill} finished before the kill; ` +
        `${stats.completedByKilled} completed by a killed run (verified L3), ${stats.incompleteLeft} incomplete left and cleaned up, ${stats.locksBroken} dead locks broken; ` +
        `unkilled full ${base.ms} ms (last ${fullMs} ms), incremental ${incrMs} ms; kill delays ${delays.join(', ')} ms; ${verified.size} backups verified at L3 (${cliVerified.size} through the CLI); ` +
        `left for prune: ${lastRun.signal === 'SIGKILL' ? `lock ${lastLock}, ${lastDebris.join(', ') || 'nothing'}` : 'nothing (the last run finished)'}; ${ms} ms`,
    )
    expect(stats.killed).toBeGreaterThanOrEqual(Math.ceil(TRIALS / 2))
    expect(stats.locksBroken).toBeGreaterThan(0)
    expect(stats.cleanedUp).toBeGreaterThan(0)
  })
})
