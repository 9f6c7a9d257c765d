// S3 benchmark (issue 4): backup and restore to an S3-compatible server on loopback (s3rver, in this
// process) against the same to a local repository, peak RSS at two data sizes, and the cost of
// encryption against an unencrypted backup.
import {rmSync} from 'node:fs'
import {join} from 'node:path'

import S3rver from 's3rver'

import {fmtMiB, fmtMiBs, fmtS, machine, median, MiB, pass, runCli, scratch, sh, walBytes, writeSection} from './bench-lib.mjs'

export async function benchS3({sizeGiB = 1, runs = 3, largeGiB = 4} = {}) {
  const log = (s) => console.log(s)
  const s3dir = scratch('s3rver')
  const server = new S3rver({port: 0, address: '127.0.0.1', silent: true, directory: s3dir, configureBuckets: [{name: 'bench'}]})
  const {port} = await server.run()
  const env = {AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER'}
  let n = 0
  const s3url = () => `s3://bench/run-${n++}?endpoint=http://127.0.0.1:${port}&region=us-east-1&forcePathStyle=true&partSize=8MiB&queueSize=4`
  try {
    const data = scratch('s3-data')
    await runCli(['engine', 'generate', '--data-dir', data, '--size', `${sizeGiB}GiB`, '--spaces', '4', '--no-sync'])
    const bytes = walBytes(data)

    const local = []
    const s3 = []
    const enc = []
    let lastS3 = null
    let lastLocal = null
    for (let i = 0; i < runs; i++) {
      const repo = scratch('local-repo')
      await runCli(['repo', 'init', '--repo', repo])
      local.push(await runCli(['backup', 'full', '--data-dir', data, '--repo', repo, '--quiet']))
      if (lastLocal) rmSync(lastLocal, {recursive: true, force: true})
      lastLocal = repo
      const url = s3url()
      await runCli(['repo', 'init', '--repo', url], {env})
      s3.push(await runCli(['backup', 'full', '--data-dir', data, '--repo', url, '--quiet'], {env}))
      lastS3 = url
      const erepo = scratch('enc-repo')
      const eenv = {ENGRAM_OPS_PASSPHRASE: 'benchmark passphrase'}
      await runCli(['repo', 'init', '--repo', erepo, '--encryption'], {env: eenv})
      enc.push(await runCli(['backup', 'full', '--data-dir', data, '--repo', erepo, '--quiet'], {env: eenv}))
      rmSync(erepo, {recursive: true, force: true})
    }
    const localMs = median(local.map((r) => r.ms))
    const s3Ms = median(s3.map((r) => r.ms))
    const encMs = median(enc.map((r) => r.ms))
    const s3Rss = Math.max(...s3.map((r) => r.rss))
    log(`backup ${fmtMiB(bytes)}: local ${fmtS(localMs)}, S3 ${fmtS(s3Ms)} (ratio ${(localMs / s3Ms).toFixed(2)}), encrypted local ${fmtS(encMs)} (cost ${(encMs / localMs).toFixed(2)}x); S3 peak RSS ${fmtMiB(s3Rss)}`)

    const rl = []
    const rs = []
    for (let i = 0; i < runs; i++) {
      const a = join(scratch('restore-local'), 'x')
      rl.push(await runCli(['restore', '--latest', '--repo', lastLocal, '--to', a, '--quiet']))
      rmSync(a, {recursive: true, force: true})
      const b = join(scratch('restore-s3'), 'x')
      rs.push(await runCli(['restore', '--latest', '--repo', lastS3, '--to', b, '--quiet'], {env}))
      rmSync(b, {recursive: true, force: true})
    }
    const rlMs = median(rl.map((r) => r.ms))
    const rsMs = median(rs.map((r) => r.ms))
    const rsRss = Math.max(...rs.map((r) => r.rss))
    log(`restore: local ${fmtS(rlMs)}, S3 ${fmtS(rsMs)} (ratio ${(rlMs / rsMs).toFixed(2)}); S3 restore peak RSS ${fmtMiB(rsRss)}`)
    rmSync(lastLocal, {recursive: true, force: true})
    rmSync(data, {recursive: true, force: true})

    const big = scratch('s3-big')
    await runCli(['engine', 'generate', '--data-dir', big, '--size', `${largeGiB}GiB`, '--spaces', '4', '--no-sync'])
    const bigBytes = walBytes(big)
    const url = s3url()
    await runCli(['repo', 'init', '--repo', url], {env})
    const bigRun = await runCli(['backup', 'full', '--data-dir', big, '--repo', url, '--quiet'], {env})
    const bigRestoreDir = join(scratch('restore-s3-big'), 'x')
    const bigRestore = await runCli(['restore', '--latest', '--repo', url, '--to', bigRestoreDir, '--quiet'], {env})
    log(`S3 ${fmtMiB(bigBytes)}: backup ${fmtS(bigRun.ms)} RSS ${fmtMiB(bigRun.rss)}, restore ${fmtS(bigRestore.ms)} RSS ${fmtMiB(bigRestore.rss)}`)
    rmSync(bigRestoreDir, {recursive: true, force: true})
    rmSync(big, {recursive: true, force: true})

    const flat = (a, b) => b <= a * 1.25
    writeSection(
      's3',
      [
        '## S3 repositories and encryption (issue 4)',
        '',
        `Measured ${new Date().toISOString().slice(0, 10)} on ${await machine()}.`,
        `S3: s3rver 3.7 on 127.0.0.1 (in the benchmark process, storing on the same disk), partSize 8 MiB, queueSize 4. Data: \`engine generate\`, 4 spaces. Medians of ${runs} runs; wall clock of the whole CLI run.`,
        '',
        '| measurement | result | compared with | ratio | bar |',
        '|---|---|---|---|---|',
        `| full backup to S3, ${fmtMiB(bytes)} | ${fmtS(s3Ms)} (${fmtMiBs(bytes, s3Ms)}) | local repository: ${fmtS(localMs)} (${fmtMiBs(bytes, localMs)}) | ${(localMs / s3Ms).toFixed(2)}x of local throughput | reported |`,
        `| restore from S3 | ${fmtS(rsMs)} (${fmtMiBs(bytes, rsMs)}) | local repository: ${fmtS(rlMs)} | ${(rlMs / rsMs).toFixed(2)}x of local throughput | reported |`,
        `| peak RSS, S3 backup | ${fmtMiB(s3Rss)} at ${fmtMiB(bytes)}; ${fmtMiB(bigRun.rss)} at ${fmtMiB(bigBytes)} | | | bounded and the same at both sizes: ${pass(flat(s3Rss, bigRun.rss))} |`,
        `| peak RSS, S3 restore | ${fmtMiB(rsRss)} at ${fmtMiB(bytes)}; ${fmtMiB(bigRestore.rss)} at ${fmtMiB(bigBytes)} | | | bounded and the same at both sizes: ${pass(flat(rsRss, bigRestore.rss))} |`,
        `| encrypted full backup (AES-256-GCM, local repository) | ${fmtS(encMs)} | unencrypted: ${fmtS(localMs)} | ${(encMs / localMs).toFixed(2)}x the time | reported |`,
        '',
        `Memory model of an S3 upload: at most partSize x queueSize (${fmtMiB(8 * MiB * 4)}) of parts in flight, plus 4 compression frames of 2 MiB in flight (and one being filled).`,
      ].join('\n'),
    )
  } finally {
    await server.close()
    rmSync(s3dir, {recursive: true, force: true})
  }
}
