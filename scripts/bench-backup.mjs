// Backup benchmark (issue 3): full backup against `tar -cf - DIR | zstd -3 -T0` on the same data,
// peak RSS at two data sizes, incremental after a 1 % append, restore against `zstd -dc | tar -x`,
// and level-3 verification and PITR throughput.
import {mkdirSync, readdirSync, rmSync, statSync} from 'node:fs'
import {join} from 'node:path'

import {fmtMiB, fmtMiBs, fmtS, machine, median, MiB, pass, runCli, scratch, sh, walBytes, writeSection} from './bench-lib.mjs'

const storedBytes = (repo) => {
  const dir = join(repo, 'backups')
  return readdirSync(dir).reduce((a, id) => a + readdirSync(join(dir, id)).reduce((b, f) => b + statSync(join(dir, id, f)).size, 0), 0)
}

/**
 * A full backup into a new repository at `repo`, after removing the one the previous run left there.
 * The removal comes just before the run, as the baseline's `zstd -f` frees its previous archive as it
 * opens the new one: on this VM, writing into memory freed moments before costs far less system time
 * than writing into memory freed while other steps ran (1.1-1.3 s against 2.5-3.0 s of system time per
 * 1 GiB backup, same code, two series of this script's steps run back to back), so removing our output
 * right after each run, as this script did before, charged that difference to engram-ops alone.
 */
async function fullBackup(data, repo, extra = []) {
  rmSync(repo, {recursive: true, force: true})
  await runCli(['repo', 'init', '--repo', repo, ...extra])
  const r = await runCli(['backup', 'full', '--data-dir', data, '--repo', repo, '--quiet'])
  return {...r, repo, stored: storedBytes(repo)}
}

/**
 * Runs the steps in turn, `runs` times; returns each step's results (in the order of `steps`). Dirty
 * pages are written out before every step (untimed): otherwise a step pays for the write-back of the
 * previous step's output (its fsyncs queue behind it), which made the order of the steps decide the
 * ratios. The order also rotates from round to round (round i starts with step i): on this VM a step's
 * system time depends on what the step before it freed and when (memory the host has taken back is
 * slow to touch again), and in a fixed order one step always followed the same other step. In two
 * runs of this script with a fixed order, `restore --no-sync` took 2.06-2.79 s and the default restore,
 * which does strictly more work, 1.57-1.78 s (besides one outlier of 3.5-3.8 s each); a shell loop on
 * the same machine in another order gave the reverse (1.54-2.16 s against 2.26-3.50 s).
 */
async function alternate(runs, ...steps) {
  const out = steps.map(() => [])
  for (let i = 0; i < runs; i++) {
    for (let j = 0; j < steps.length; j++) {
      const k = (i + j) % steps.length
      await sh('sync')
      out[k].push(await steps[k](i))
    }
  }
  return out
}

/**
 * Median time of `runs` incremental backups of the same appended data: each one but the last is
 * removed again (its directory under backups/), so every run has the same parent and the same work.
 */
async function incrementalMs(data, repo, runs) {
  const times = []
  for (let i = 0; i < runs; i++) {
    const before = new Set(readdirSync(join(repo, 'backups')))
    await sh('sync')
    times.push((await runCli(['backup', 'incremental', '--data-dir', data, '--repo', repo, '--quiet'])).ms)
    if (i < runs - 1) for (const d of readdirSync(join(repo, 'backups'))) if (!before.has(d)) rmSync(join(repo, 'backups', d), {recursive: true})
  }
  return {ms: median(times), times}
}

export async function benchBackup({sizeGiB = 1, runs = 5, largeGiB = 4} = {}) {
  const log = (s) => console.log(s)
  const data = scratch('backup-data')
  await runCli(['engine', 'generate', '--data-dir', data, '--size', `${sizeGiB}GiB`, '--spaces', '4', '--no-sync'])
  const bytes = walBytes(data)
  await sh(`cat $(find '${data}' -name '*.log') > /dev/null`)

  // Full backup (default zstd:1, and zstd:3) against tar | zstd -3 -T0 (the bar) and tar | zstd -1 -T0.
  const bdir = scratch('baseline')
  const archive3 = join(bdir, 'data3.tar.zst')
  const archive1 = join(bdir, 'data1.tar.zst')
  const repos = scratch('repo')
  const repo = join(repos, 'default')
  const repo3 = join(repos, 'zstd3')
  const archive3d = join(bdir, 'data3-durable.tar.zst')
  const [base3, base1, ours1, ours3, base3durable] = await alternate(
    runs,
    async () => (await sh(`tar -cf - -C '${data}' . | zstd -3 -T0 -q -f -o '${archive3}'`)).ms,
    async () => (await sh(`tar -cf - -C '${data}' . | zstd -1 -T0 -q -f -o '${archive1}'`)).ms,
    // The last run's repository stays for the incremental and the restores.
    async () => fullBackup(data, repo),
    async () => fullBackup(data, repo3, ['--compression', 'zstd:3']),
    // The baseline made as durable as a backup (which fsyncs its objects before it commits).
    async () => (await sh(`tar -cf - -C '${data}' . | zstd -3 -T0 -q -f -o '${archive3d}' && sync '${archive3d}'`)).ms,
  )
  const fullMs = median(ours1.map((r) => r.ms))
  const full3Ms = median(ours3.map((r) => r.ms))
  const baseMs = median(base3)
  const baseDurableMs = median(base3durable)
  const base1Ms = median(base1)
  const fullRss = Math.max(...ours1.map((r) => r.rss))
  const size3 = statSync(archive3).size
  const size1 = statSync(archive1).size
  log(`full backup ${fmtMiB(bytes)}: ${fmtS(fullMs)} vs tar|zstd -3 -T0 ${fmtS(baseMs)}: ratio ${(baseMs / fullMs).toFixed(2)}x, peak RSS ${fmtMiB(fullRss)}, stored ${ours1[0].stored} bytes (baseline archive ${size3})`)
  const runsOf = (ms) => ms.map((x) => (x / 1000).toFixed(2)).join(', ')
  const cpuOf = (rs) => rs.map((r) => `${r.cpu.user.toFixed(1)}+${r.cpu.system.toFixed(1)}`).join(', ')
  log(`  single runs (s): engram-ops ${runsOf(ours1.map((r) => r.ms))}; tar|zstd -3 -T0 ${runsOf(base3)}; engram-ops CPU user+system (s): ${cpuOf(ours1)}`)
  log(`  against tar|zstd -3 -T0 followed by an fsync of the archive: ${fmtS(baseDurableMs)}, ratio ${(baseDurableMs / fullMs).toFixed(2)}x`)
  log(`  same with --compression zstd:3: ${fmtS(full3Ms)}, ratio ${(baseMs / full3Ms).toFixed(2)}x, stored ${ours3[0].stored} bytes; tar|zstd -1 -T0 ${fmtS(base1Ms)} (${size1} bytes), ratio to it ${(base1Ms / fullMs).toFixed(2)}x`)

  // Incremental after appending 1 % new records.
  await runCli(['engine', 'generate', '--data-dir', data, '--size', `${Math.round(bytes / 100)}`, '--spaces', '4', '--append', '--start', '2026-11-19T00:00:00Z', '--seed', '7'])
  await sh('sync')
  const incr = await incrementalMs(data, repo, runs)
  log(`incremental after 1 % append: ${fmtS(incr.ms)} = ${((100 * incr.ms) / fullMs).toFixed(1)} % of the full backup`)
  log(`  single runs (s): ${runsOf(incr.times)}`)

  // Restore (it fsyncs every file) vs zstd -dc | tar -x followed by an fsync of every file, and
  // restore --no-sync vs zstd -dc | tar -x: each against the baseline that does the same work.
  const rdir = scratch('restore')
  // Each step removes its previous output just before it runs (untimed), as the full backups do.
  const ourRestore = async (extra, name) => {
    const to = join(rdir, name)
    rmSync(to, {recursive: true, force: true})
    return (await runCli(['restore', '--latest', '--repo', repo, '--to', to, '--quiet', ...extra])).ms
  }
  const tarRestore = async (name, after = '') => {
    const to = join(rdir, name)
    rmSync(to, {recursive: true, force: true})
    mkdirSync(to)
    return (await sh(`zstd -dc '${archive3}' | tar -x -C '${to}'${after && ` && ${after.replaceAll('DIR', `'${to}'`)}`}`)).ms
  }
  const [restores, baseRestores, durableRestores, unsyncedRestores] = await alternate(
    runs,
    () => ourRestore([], 'ours'),
    () => tarRestore('tar'),
    () => tarRestore('tar-fsync', 'find DIR -type f -exec sync {} +'),
    () => ourRestore(['--no-sync'], 'ours-no-sync'),
  )
  rmSync(rdir, {recursive: true, force: true})
  const rMs = median(restores)
  const bMs = median(baseRestores)
  const dMs = median(durableRestores)
  const nMs = median(unsyncedRestores)
  log(`restore: ${fmtS(rMs)} vs zstd -dc|tar -x ${fmtS(bMs)}: ratio ${(bMs / rMs).toFixed(2)}x; with an fsync of each file ${fmtS(dMs)}: ratio ${(dMs / rMs).toFixed(2)}x`)
  log(`restore --no-sync: ${fmtS(nMs)} vs zstd -dc|tar -x ${fmtS(bMs)}: ratio ${(bMs / nMs).toFixed(2)}x`)
  log(`  single runs (s): restore ${runsOf(restores)}; --no-sync ${runsOf(unsyncedRestores)}; zstd -dc|tar -x ${runsOf(baseRestores)}; with fsyncs ${runsOf(durableRestores)}`)

  // Level-3 verification and PITR throughput.
  await sh('sync')
  const v3 = await runCli(['backup', 'verify', '--latest', '--level', '3', '--repo', repo, '--quiet'])
  const pitrDir = join(scratch('pitr'), 'x')
  await sh('sync')
  const pitr = await runCli(['restore', 'pitr', '--target-time', '2026-11-18T11:30:00Z', '--repo', repo, '--to', pitrDir, '--quiet'])
  log(`verify L3 ${fmtS(v3.ms)} (${fmtMiBs(bytes, v3.ms)}); PITR ${fmtS(pitr.ms)} (${fmtMiBs(bytes, pitr.ms)})`)
  rmSync(pitrDir, {recursive: true, force: true})
  rmSync(repos, {recursive: true, force: true})
  rmSync(data, {recursive: true, force: true})
  rmSync(bdir, {recursive: true, force: true})

  // Peak RSS, and the incremental's share, at a larger size.
  const big = scratch('backup-big')
  await runCli(['engine', 'generate', '--data-dir', big, '--size', `${largeGiB}GiB`, '--spaces', '4', '--no-sync'])
  const bigBytes = walBytes(big)
  await sh('sync')
  const bigRepos = scratch('repo')
  const bigRun = await fullBackup(big, join(bigRepos, 'big'))
  await runCli(['engine', 'generate', '--data-dir', big, '--size', `${Math.round(bigBytes / 100)}`, '--spaces', '4', '--append', '--start', '2026-11-19T00:00:00Z', '--seed', '7'])
  await sh('sync')
  const bigIncr = await incrementalMs(big, bigRun.repo, 3)
  log(`full backup ${fmtMiB(bigBytes)}: ${fmtS(bigRun.ms)} (${fmtMiBs(bigBytes, bigRun.ms)}), peak RSS ${fmtMiB(bigRun.rss)}; incremental after 1 %: ${fmtS(bigIncr.ms)} = ${((100 * bigIncr.ms) / bigRun.ms).toFixed(1)} % (single runs (s): ${runsOf(bigIncr.times)})`)
  rmSync(bigRepos, {recursive: true, force: true})
  rmSync(big, {recursive: true, force: true})

  const fullRatio = baseMs / fullMs
  const restoreRatio = bMs / rMs
  const durableRestoreRatio = dMs / rMs
  const unsyncedRestoreRatio = bMs / nMs
  const incrPct = (100 * incr.ms) / fullMs
  const bigIncrPct = (100 * bigIncr.ms) / bigRun.ms
  const pct = (a, b) => `${((100 * a) / b).toFixed(1)} %`
  writeSection(
    'backup',
    [
      '## Backup, restore, verification (issue 3)',
      '',
      `Measured ${new Date().toISOString().slice(0, 10)} on ${await machine()}.`,
      `Data: \`engine generate\`, 4 spaces. Local repository on the same filesystem. Times are wall clock of the whole CLI run (startup included), medians of ${runs} alternating runs (the order rotated from round to round), each started after \`sync\` (so none pays for the previous one's write-back) and right after removing its own previous output (the baselines' \`zstd -f\` overwrites its archive; engram-ops' previous repository is removed just before the next run), so that each writes into memory it freed itself a moment earlier. engram-ops compresses with zstd level 1 by default (docs/architecture.md says why); the zstd:3 row shows the same job at the baseline's level.`,
      '',
      '| measurement | engram-ops | baseline in the same run | ratio | bar |',
      '|---|---|---|---|---|',
      `| full backup, ${fmtMiB(bytes)} | ${fmtS(fullMs)} (${fmtMiBs(bytes, fullMs)}), ${ours1[0].stored} bytes stored | \`tar -cf - DIR \\| zstd -3 -T0 > FILE\`: ${fmtS(baseMs)} (${fmtMiBs(bytes, baseMs)}), ${size3} bytes | ${fullRatio.toFixed(2)}x | >= 0.9x: ${pass(fullRatio >= 0.9)} |`,
      `| full backup, against a durable baseline | ${fmtS(fullMs)} | the same, then \`sync FILE\` (fsync of the archive; a backup fsyncs its objects before it commits): ${fmtS(baseDurableMs)} | ${(baseDurableMs / fullMs).toFixed(2)}x | |`,
      `| full backup with \`--compression zstd:3\` | ${fmtS(full3Ms)}, ${ours3[0].stored} bytes stored | the same: ${fmtS(baseMs)} | ${(baseMs / full3Ms).toFixed(2)}x | |`,
      `| full backup (default) against zstd -1 | ${fmtS(fullMs)} | \`tar -cf - DIR \\| zstd -1 -T0 > FILE\`: ${fmtS(base1Ms)}, ${size1} bytes | ${(base1Ms / fullMs).toFixed(2)}x | |`,
      `| full backup peak RSS | ${fmtMiB(fullRss)} at ${fmtMiB(bytes)}; ${fmtMiB(bigRun.rss)} at ${fmtMiB(bigBytes)} | | | <= 200 MiB, same at both sizes: ${pass(Math.max(fullRss, bigRun.rss) <= 200 * MiB && bigRun.rss < fullRss * 1.25)} |`,
      `| incremental after appending 1 % | ${fmtS(incr.ms)} at ${fmtMiB(bytes)}; ${fmtS(bigIncr.ms)} at ${fmtMiB(bigBytes)} | the full backup: ${fmtS(fullMs)}; ${fmtS(bigRun.ms)} | ${incrPct.toFixed(1)} %; ${bigIncrPct.toFixed(1)} % | <= 5 %: ${pass(incrPct <= 5)} at ${fmtMiB(bytes)}, ${pass(bigIncrPct <= 5)} at ${fmtMiB(bigBytes)} |`,
      `| restore (latest: full + incremental; every file fsynced) | ${fmtS(rMs)} (${fmtMiBs(bytes, rMs)}) | \`zstd -dc FILE \\| tar -x\` of the zstd -3 archive, then \`sync FILE…\` (fsync of each file, as restore does): ${fmtS(dMs)} | ${durableRestoreRatio.toFixed(2)}x | >= 0.9x: ${pass(durableRestoreRatio >= 0.9)} |`,
      `| restore \`--no-sync\` (no fsync, as tar) | ${fmtS(nMs)} (${fmtMiBs(bytes, nMs)}) | \`zstd -dc FILE \\| tar -x\`: ${fmtS(bMs)} | ${unsyncedRestoreRatio.toFixed(2)}x | >= 0.9x: ${pass(unsyncedRestoreRatio >= 0.9)} |`,
      `| restore (default, fsyncs) against the baseline without fsyncs | ${fmtS(rMs)} | \`zstd -dc FILE \\| tar -x\`: ${fmtS(bMs)} | ${restoreRatio.toFixed(2)}x | |`,
      `| verify level 3 (read, decompress, unpack, every record's CRCs and payload) | ${fmtS(v3.ms)} (${fmtMiBs(bytes, v3.ms)}) | | | reported |`,
      `| PITR (restore + cut to a target time) | ${fmtS(pitr.ms)} (${fmtMiBs(bytes, pitr.ms)}) | | | reported |`,
      `| full backup, ${fmtMiB(bigBytes)} | ${fmtS(bigRun.ms)} (${fmtMiBs(bigBytes, bigRun.ms)}) | | | |`,
      '',
      `Single full-backup runs, in order (s): engram-ops ${runsOf(ours1.map((r) => r.ms))} (CPU user+system: ${cpuOf(ours1)}); \`tar | zstd -3 -T0\` ${runsOf(base3)}. Incremental times are medians of ${runs} runs at ${fmtMiB(bytes)} and 3 at ${fmtMiB(bigBytes)}, each of the same appended data on the same parent.`,
      '',
      `Compressed size: the default level stores ${pct(ours1[0].stored, bytes)} of the WAL bytes, zstd:3 ${pct(ours3[0].stored, bytes)}; the zstd CLI ${pct(size1, bytes)} at -1 and ${pct(size3, bytes)} at -3.`,
    ].join('\n'),
  )
}
