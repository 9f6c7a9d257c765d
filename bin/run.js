#!/bin/sh
":" //; export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-33554432}" MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-134217728}"; exec node "$0" "$@"
// The two lines above are read by sh, which sets glibc's malloc thresholds and execs Node on this file;
// Node skips the #! line and sees a string and a comment. Why: zlib hands out a new ~2 MiB Buffer for
// every compressed (or decompressed) frame. With glibc's defaults the heap's free top is returned to
// the kernel whenever it exceeds about twice the largest freed block, so nearly every frame was written
// into pages the kernel had to fault in and zero again: ~95,000 page faults in a 1 GiB backup and
// ~120,000 in its restore, 34,000 and 43,000 with these settings (allocations below 32 MiB from the
// heap; up to 128 MiB of free heap kept). Page faults are system time, and on a VM whose free pages are
// handed back to the host they are slow. Values already in the environment win; other C libraries
// ignore the variables. Running `node bin/run.js` skips this line and these settings.
// Checked here so an old Node fails with a sentence, not a stack trace from node:zlib (zstd came in 22.15).
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 15)) {
  process.stderr.write(`engram-ops needs Node.js 22.15 or newer (it uses zstd from node:zlib); this is Node.js ${process.versions.node} (${process.execPath}). Put a newer node first on PATH.\n`)
  process.exit(10)
}

// Start-up is most of a small incremental backup (a 1 GiB data directory's 1 % incremental takes about
// 0.25 s, 0.1 s of it loading oclif and our modules). Node's compile cache and skipping oclif's check of
// its own Node requirement (semver, loaded only for that; ours is checked above) took about 10 ms each
// off `--version` (20 runs each, alternating). The cache lives in the user's cache directory, not in
// the temporary directory, which a backup promises to leave alone; NODE_COMPILE_CACHE chooses another
// place and NODE_DISABLE_COMPILE_CACHE=1 turns it off. Where it cannot be made, Node goes without.
// The directories are made here one level at a time: Node's recursive mkdir (which the cache uses)
// spins forever where mkdir fails with ENOENT under an existing parent (HOME=/proc does that).
const {enableCompileCache} = await import('node:module')
if (process.env.NODE_COMPILE_CACHE) enableCompileCache?.()
else if (enableCompileCache && !process.env.NODE_DISABLE_COMPILE_CACHE) {
  const [{mkdirSync}, {homedir}, {join}] = await Promise.all([import('node:fs'), import('node:os'), import('node:path')])
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache')
  const dirs = [base, join(base, 'engram-ops'), join(base, 'engram-ops', 'node-compile-cache')]
  const made = dirs.every((dir) => {
    try {
      mkdirSync(dir, {mode: 0o700})
      return true
    } catch (error) {
      return error.code === 'EEXIST'
    }
  })
  if (made) enableCompileCache(dirs[2])
}
process.env.OCLIF_DISABLE_ENGINE_WARNING ??= '1'

// libuv's thread pool (4 threads by default) runs zstd as well as file writes and fsyncs. A restore
// (and a verification that restores) keeps fsyncs waiting on the disk while it decompresses, which
// left zstd short of threads: 8 made restores about 10 % faster here. Backups stay at 4 (more threads
// did not speed them up and cost memory). libuv reads this once, before the pool's first use.
const [first, second] = process.argv.slice(2)
if (process.env.UV_THREADPOOL_SIZE === undefined && (first === 'restore' || (first === 'backup' && second === 'verify'))) {
  process.env.UV_THREADPOOL_SIZE = '8'
}

// A backup of several spaces scans its first space on the main thread, a burst of short-lived
// objects after which V8 grows the young generation (up to 16 MiB semi-spaces). Young collections then come seldom, and the
// Buffers zlib returns for each compressed frame (their memory is freed only when the Buffer object is
// collected) pile up: peak RSS of a 1 GiB backup was 206-211 MiB with the growth and 183-188 MiB
// without it, at the same speed (4 alternating runs each). The flag is read at every young
// collection, so setting it here, before any work, takes effect.
if (first === 'backup' && (second === 'full' || second === 'incremental')) {
  const {setFlagsFromString} = await import('node:v8')
  setFlagsFromString('--semi-space-growth-factor=1')
}

// `engram-ops backup list | head` closes the pipe before the output ends: that is not an error.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(0)
  throw error
})

const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
