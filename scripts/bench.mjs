#!/usr/bin/env node
// `npm run bench [-- suite...]`: runs the benchmark suites and rewrites their sections of
// docs/benchmarks.md. Suites: engine, backup, s3. Set BENCH_DIR to put scratch data on another filesystem,
// BENCH_SIZE_GIB to change the data size (default 1), BENCH_LARGE_GIB the size of the RSS comparison (default 4).
import {benchBackup} from './bench-backup.mjs'
import {benchEngine} from './bench-engine.mjs'
import {benchS3} from './bench-s3.mjs'

const suites = {engine: benchEngine, backup: benchBackup, s3: benchS3}
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'))
const sizeGiB = Number(process.env.BENCH_SIZE_GIB ?? 1)
const largeGiB = Number(process.env.BENCH_LARGE_GIB ?? 4)
for (const name of wanted.length > 0 ? wanted : Object.keys(suites)) {
  if (!suites[name]) {
    console.error(`unknown suite ${name}; known: ${Object.keys(suites).join(', ')}`)
    process.exit(2)
  }
  console.log(`== ${name}`)
  await suites[name]({sizeGiB, largeGiB})
}
console.log('results written to docs/benchmarks.md')
