#!/usr/bin/env node
// libuv's thread pool (4 threads by default) runs zstd as well as file writes and fsyncs. A restore
// (and a verification that restores) keeps fsyncs waiting on the disk while it decompresses, which
// left zstd short of threads: 8 made restores about 10 % faster here. Backups stay at 4 (more threads
// did not speed them up and cost memory). libuv reads this once, before the pool's first use.
const [first, second] = process.argv.slice(2)
if (process.env.UV_THREADPOOL_SIZE === undefined && (first === 'restore' || (first === 'backup' && second === 'verify'))) {
  process.env.UV_THREADPOOL_SIZE = '8'
}

// `engram-ops backup list | head` closes the pipe before the output ends: that is not an error.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(0)
  throw error
})

const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
