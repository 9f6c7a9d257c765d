// Backup benchmark (issue 3): full backup against `tar -cf - DIR | zstd -3 -T0` on the same data,
// peak RSS at two data sizes, incremental after a 1 % append, restore against `zstd -dc | tar -x`,
// and level-3 verification and PITR throughput.
import {mkdirSync, readdirSync, rmSync, statSync} from 'node:fs'
import {join} from 'node:path'

import {fmtMiB, fmtMiBs, fmtS, machine, median, MiB, runCli, scratch, sh, writeSection} from './bench-lib.mjs'

const walBytes = (dir) =>
  readdirSync(dir).reduce((a, space) => {
    const w = join(dir, space, 'wal')
    try {
      return a + readdirSync(w).reduce((b, f) => b + statSync(join(w, f)).size, 0)
    } catch {
      return a
    }
  }, 0)

async function fullBackupRuns(data, runs) {
  const out = []
  for (let i = 0; i < runs; i++) {
    const repo = scratch('repo')
    await runCli(['repo', 'init', '--repo', repo])
    const r = await runCli(['backup', 'full', '--data-dir', data, '--repo', repo, '--quiet'])
    out.push({...r, repo})
  }
  return out
}

export async function benchBackup({sizeGiB = 1, runs = 3, largeGiB = 4} = {}) {
  const log = (s) => console.log(s)
  const data = scratch('backup-data')
  await runCli(['engine', 'generate', '--data-dir', data, '--size', `${sizeGiB}GiB`, '--spaces', '4', '--no-fsync'])
  const bytes = walBytes(data)
  await sh(`cat $(find '${data}' -name '*.log') > /dev/null`)

  // Full backup vs tar | zstd -3 -T0, alternating.
  const baseline = []
  const ours = []
  const archive = join(scratch('baseline'), 'data.tar.zst')
  for (let i = 0; i < runs; i++) {
    baseline.push((await sh(`tar -cf - -C '${data}' . | zstd -3 -T0 -q -f -o '${archive}'`)).ms)
    const [r] = await fullBackupRuns(data, 1)
    ours.push(r)
    if (i < runs - 1) rmSync(r.repo, {recursive: true, force: true})
  }
  const fullMs = median(ours.map((r) => r.ms))
  const baseMs = median(baseline)
  const fullRss = Math.max(...ours.map((r) => r.rss))
  const repo = ours.at(-1).repo
  log(`full backup ${fmtMiB(bytes)}: ${fmtS(fullMs)} vs tar|zstd -T0 ${fmtS(baseMs)}: ratio ${(baseMs / fullMs).toFixed(2)}x, peak RSS ${fmtMiB(fullRss)}`)

  // Incremental after appending 1 % new records.
  await runCli(['engine', 'generate', '--data-dir', data, '--size', `${Math.round(bytes / 100)}`, '--spaces', '4', '--append', '--start', '2026-11-19T00:00:00Z', '--seed', '7'])
  const incr = await runCli(['backup', 'incremental', '--data-dir', data, '--repo', repo, '--quiet'])
  log(`incremental after 1 % append: ${fmtS(incr.ms)} = ${((100 * incr.ms) / fullMs).toFixed(1)} % of the full backup`)

  // Restore vs zstd -dc | tar -x.
  const restoreMs = []
  const baseRestoreMs = []
  for (let i = 0; i < runs; i++) {
    const dir = join(scratch('restore'), 'x')
    const r = await runCli(['restore', '--latest', '--repo', repo, '--to', dir, '--quiet'])
    restoreMs.push(r.ms)
    rmSync(dir, {recursive: true, force: true})
    const bdir = scratch('restore-baseline')
    baseRestoreMs.push((await sh(`zstd -dc '${archive}' | tar -x -C '${bdir}'`)).ms)
    rmSync(bdir, {recursive: true, force: true})
  }
  const rMs = median(restoreMs)
  const bMs = median(baseRestoreMs)
  log(`restore: ${fmtS(rMs)} vs zstd -dc|tar -x ${fmtS(bMs)}: ratio ${(bMs / rMs).toFixed(2)}x`)

  // Level-3 verification and PITR throughput.
  const v3 = await runCli(['backup', 'verify', '--latest', '--level', '3', '--repo', repo, '--quiet'])
  const pitrDir = join(scratch('pitr'), 'x')
  const pitr = await runCli(['restore', 'pitr', '--target-time', '2026-11-18T11:30:00Z', '--repo', repo, '--to', pitrDir, '--quiet'])
  log(`verify L3 ${fmtS(v3.ms)} (${fmtMiBs(bytes, v3.ms)}); PITR ${fmtS(pitr.ms)} (${fmtMiBs(bytes, pitr.ms)})`)
  rmSync(pitrDir, {recursive: true, force: true})
  rmSync(repo, {recursive: true, force: true})
  rmSync(data, {recursive: true, force: true})
  rmSync(archive, {force: true})

  // Peak RSS at a larger size.
  const big = scratch('backup-big')
  await runCli(['engine', 'generate', '--data-dir', big, '--size', `${largeGiB}GiB`, '--spaces', '4', '--no-fsync'])
  const bigBytes = walBytes(big)
  const [bigRun] = await fullBackupRuns(big, 1)
  log(`full backup ${fmtMiB(bigBytes)}: ${fmtS(bigRun.ms)} (${fmtMiBs(bigBytes, bigRun.ms)}), peak RSS ${fmtMiB(bigRun.rss)}`)
  rmSync(bigRun.repo, {recursive: true, force: true})
  rmSync(big, {recursive: true, force: true})

  const pass = (ok) => (ok ? 'meets the bar' : '**misses the bar**')
  const fullRatio = baseMs / fullMs
  const restoreRatio = bMs / rMs
  const incrPct = (100 * incr.ms) / fullMs
  writeSection(
    'backup',
    [
      '## Backup, restore, verification (issue 3)',
      '',
      `Measured ${new Date().toISOString().slice(0, 10)} on ${await machine()}.`,
      `Data: \`engine generate\`, 4 spaces. Local repository on the same filesystem. Times are wall clock of the whole CLI run (startup included), medians of ${runs} alternating runs.`,
      '',
      '| measurement | engram-ops | baseline in the same run | ratio | bar |',
      '|---|---|---|---|---|',
      `| full backup, ${fmtMiB(bytes)} | ${fmtS(fullMs)} (${fmtMiBs(bytes, fullMs)}) | \`tar -cf - DIR \\| zstd -3 -T0 > FILE\`: ${fmtS(baseMs)} (${fmtMiBs(bytes, baseMs)}) | ${fullRatio.toFixed(2)}x | >= 0.9x: ${pass(fullRatio >= 0.9)} |`,
      `| full backup peak RSS | ${fmtMiB(fullRss)} at ${fmtMiB(bytes)}; ${fmtMiB(bigRun.rss)} at ${fmtMiB(bigBytes)} | | | <= 200 MiB, same at both sizes: ${pass(Math.max(fullRss, bigRun.rss) <= 200 * MiB && bigRun.rss < fullRss * 1.25)} |`,
      `| incremental after appending 1 % | ${fmtS(incr.ms)} | the full backup: ${fmtS(fullMs)} | ${incrPct.toFixed(1)} % | <= 5 %: ${pass(incrPct <= 5)} |`,
      `| restore (latest: full + incremental) | ${fmtS(rMs)} (${fmtMiBs(bytes, rMs)}) | \`zstd -dc FILE \\| tar -x\` of the baseline archive: ${fmtS(bMs)} | ${restoreRatio.toFixed(2)}x | >= 0.9x: ${pass(restoreRatio >= 0.9)} |`,
      `| verify level 3 (read, decompress, unpack, every record's CRCs and payload) | ${fmtS(v3.ms)} (${fmtMiBs(bytes, v3.ms)}) | | | reported |`,
      `| PITR (restore + cut to a target time) | ${fmtS(pitr.ms)} (${fmtMiBs(bytes, pitr.ms)}) | | | reported |`,
      `| full backup, ${fmtMiB(bigBytes)} | ${fmtS(bigRun.ms)} (${fmtMiBs(bigBytes, bigRun.ms)}) | | | |`,
    ].join('\n'),
  )
}
