// Engine benchmark (issue 2): writer throughput, WAL scan (full CRC + payload decode) against
// sha256sum of the same files, peak RSS at two data sizes, and raw CRC-32C speed.
import {rmSync} from 'node:fs'
import {crc32 as zlibCrc32} from 'node:zlib'

import {bytesOf, fmtMiB, fmtMiBs, fmtS, GiB, machine, median, MiB, pass, runCli, scratch, sh, walFiles, writeSection} from './bench-lib.mjs'

export async function benchEngine({sizeGiB = 1, runs = 3} = {}) {
  const lines = []
  const log = (s) => {
    console.log(s)
  }

  // 1. Writer: generate the big data dir (fsync per batch, as Engram's PerBatch mode).
  const big = scratch('engine-big')
  const gen = await runCli(['engine', 'generate', '--data-dir', big, '--size', `${sizeGiB}GiB`, '--spaces', '4'])
  const bigFiles = walFiles(big)
  const bigBytes = bytesOf(bigFiles)
  log(`generate ${fmtMiB(bigBytes)}: ${fmtS(gen.ms)} (${fmtMiBs(bigBytes, gen.ms)}), peak RSS ${fmtMiB(gen.rss)}`)
  const small = scratch('engine-small')
  const genSmall = []
  for (let i = 0; i < runs; i++) {
    rmSync(small, {recursive: true, force: true})
    genSmall.push(await runCli(['engine', 'generate', '--data-dir', small, '--size', '256MiB', '--spaces', '4', '--seed', String(i + 1)]))
  }
  const smallFiles = walFiles(small)
  const smallBytes = bytesOf(smallFiles)
  const genSmallMs = median(genSmall.map((r) => r.ms))
  log(`generate ${fmtMiB(smallBytes)} x${runs}: median ${fmtS(genSmallMs)} (${fmtMiBs(smallBytes, genSmallMs)})`)

  // 2. Scan with full CRC checks and payload decode vs sha256sum, alternating, same page-cache state.
  const quoted = bigFiles.map((f) => `'${f}'`).join(' ')
  await sh(`cat ${quoted} > /dev/null`) // warm the page cache for both sides
  const scan = []
  const sha = []
  for (let i = 0; i < runs; i++) {
    sha.push((await sh(`sha256sum ${quoted} > /dev/null`)).ms)
    scan.push(await runCli(['engine', 'waldump', big, '--stats']))
  }
  const scanMs = median(scan.map((r) => r.ms))
  const shaMs = median(sha)
  const scanRss = Math.max(...scan.map((r) => r.rss))
  log(`scan ${fmtMiB(bigBytes)}: median ${fmtS(scanMs)} (${fmtMiBs(bigBytes, scanMs)}); sha256sum median ${fmtS(shaMs)} (${fmtMiBs(bigBytes, shaMs)}); ratio ${(shaMs / scanMs).toFixed(2)}x`)
  const scanSmall = []
  for (let i = 0; i < runs; i++) scanSmall.push(await runCli(['engine', 'waldump', small, '--stats']))
  const scanSmallRss = Math.max(...scanSmall.map((r) => r.rss))
  log(`scan peak RSS: ${fmtMiB(scanSmallRss)} at ${fmtMiB(smallBytes)}, ${fmtMiB(scanRss)} at ${fmtMiB(bigBytes)}`)

  // 3. Raw CRC-32C speed (native, SSE4.2) beside zlib's CRC-32 (IEEE, also native).
  const {crc32c} = await import('../dist/lib/engine/crc32c.js')
  const buf = Buffer.alloc(64 * MiB, 7)
  const time = (fn) => {
    const t = []
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now()
      fn()
      t.push(performance.now() - t0)
    }
    return median(t)
  }
  const crcBig = time(() => crc32c(buf))
  const crcSmall = time(() => {
    for (let o = 0; o + 3400 <= buf.length; o += 3400) crc32c(buf.subarray(o, o + 3400))
  })
  const zlibBig = time(() => zlibCrc32(buf))
  log(`crc32c: ${fmtMiBs(buf.length, crcBig)} on 64 MiB, ${fmtMiBs(buf.length, crcSmall)} in 3.4 KB records; zlib crc32 ${fmtMiBs(buf.length, zlibBig)}`)

  rmSync(big, {recursive: true, force: true})
  rmSync(small, {recursive: true, force: true})

  const scanRatio = shaMs / scanMs
  lines.push(
    `## Engine: WAL writer and scan (issue 2)`,
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} on ${await machine()}.`,
    `Data: \`engine generate\` output, 4 spaces, unit-length PRNG embeddings (zstd -3 compresses it about 1.2:1, like real data).`,
    '',
    '| measurement | result | baseline in the same run | ratio | bar |',
    '|---|---|---|---|---|',
    `| WAL scan, full header+payload CRC-32C and payload decode (\`engine waldump --stats\`), ${fmtMiB(bigBytes)}, median of ${runs} | ${fmtS(scanMs)} (${fmtMiBs(bigBytes, scanMs)}) | \`sha256sum\` of the same files: ${fmtS(shaMs)} (${fmtMiBs(bigBytes, shaMs)}) | ${scanRatio.toFixed(2)}x | >= 1.0x: ${pass(scanRatio >= 1)} |`,
    `| scan peak RSS | ${fmtMiB(scanSmallRss)} at ${fmtMiB(smallBytes)}; ${fmtMiB(scanRss)} at ${fmtMiB(bigBytes)} | | | <= 150 MiB, flat: ${pass(scanRss <= 150 * MiB && scanRss < scanSmallRss * 1.25)} |`,
    `| writer (\`engine generate\`, fsync per 512-record batch), ${fmtMiB(bigBytes)} | ${fmtS(gen.ms)} (${fmtMiBs(bigBytes, gen.ms)}), peak RSS ${fmtMiB(gen.rss)} | | | 1 GiB well under a minute: ${pass(gen.ms < 60_000 * (bigBytes / GiB))} |`,
    `| writer, ${fmtMiB(smallBytes)}, median of ${runs} | ${fmtS(genSmallMs)} (${fmtMiBs(smallBytes, genSmallMs)}) | | | |`,
    `| CRC-32C (@node-rs/crc32), 64 MiB buffer / 3.4 KB records | ${fmtMiBs(buf.length, crcBig)} / ${fmtMiBs(buf.length, crcSmall)} | zlib CRC-32 (IEEE): ${fmtMiBs(buf.length, zlibBig)} | | |`,
    '',
    'The writer figure includes generating the episodes (PRNG embeddings, bincode encoding) as well as writing them.',
  )
  writeSection('engine', lines.join('\n'))
  return {scanRatio, scanRss}
}
