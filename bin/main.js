// The CLI after bin/run.js (the launcher) has checked the Node version.

const [first, second] = process.argv.slice(2)
const backupCommand = first === 'backup' && (second === 'full' || second === 'incremental')

// Start-up is most of a small incremental backup (a 1 GiB data directory's 1 % incremental takes about
// 0.15 s, 0.06 s of it starting Node and loading our modules). Node's compile cache and skipping oclif's check of
// its own Node requirement (semver, loaded only for that; ours is checked in run.js) took about 10 ms each
// off `--version` (means of 20 runs, two rounds). The cache lives in the user's cache directory, not in
// the temporary directory, which a backup promises to leave alone; NODE_COMPILE_CACHE chooses another
// place and NODE_DISABLE_COMPILE_CACHE=1 turns it off. Where it cannot be made, Node goes without.
// The directories are made here one level at a time: Node's recursive mkdir (which the cache uses)
// spins forever where mkdir fails with ENOENT under an existing parent (HOME=/proc does that). Every
// command runs with the same V8 flags: V8 refuses code cached under other flags, and a cache shared by
// commands with different flags was thrown away and rewritten (115 files) at each change of command.
const {enableCompileCache} = await import('node:module')
if (process.env.NODE_COMPILE_CACHE) enableCompileCache?.()
else if (enableCompileCache && !process.env.NODE_DISABLE_COMPILE_CACHE) {
  const [{mkdirSync}, {homedir}, {dirname, isAbsolute, join}] = await Promise.all([import('node:fs'), import('node:os'), import('node:path')])
  let base = process.env.XDG_CACHE_HOME
  // A relative XDG_CACHE_HOME is to be ignored (XDG base directory spec); homedir() throws for a uid
  // without HOME or a passwd entry (containers with arbitrary uids): then there is no cache.
  if (!base || !isAbsolute(base)) {
    try {
      base = join(homedir(), '.cache')
    } catch {
      base = undefined
    }
  }
  const root = base && isAbsolute(base) ? join(base, 'engram-ops', 'node-compile-cache') : null
  const dirs = root ? [base, dirname(root), root] : []
  const made =
    dirs.length > 0 &&
    dirs.every((dir) => {
      try {
        mkdirSync(dir, {mode: 0o700})
        return true
      } catch (error) {
        return error.code === 'EEXIST'
      }
    })
  if (made) enableCompileCache(root)
}
process.env.OCLIF_DISABLE_ENGINE_WARNING ??= '1'

// libuv's thread pool (4 threads by default) runs zstd as well as file writes and fsyncs. A restore
// (and a verification that restores) keeps fsyncs waiting on the disk while it decompresses, which
// left zstd short of threads: 8 made restores about 10 % faster here. Backups stay at 4 (more threads
// did not speed them up and cost memory). libuv reads this once, before the pool's first use.
if (process.env.UV_THREADPOOL_SIZE === undefined && (first === 'restore' || (first === 'backup' && second === 'verify'))) {
  process.env.UV_THREADPOOL_SIZE = '8'
}

// `engram-ops backup list | head` closes the pipe before the output ends: that is not an error.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(0)
  throw error
})

// `backup full|incremental` (cron's commands) run without loading oclif where their command line is
// plain (src/backup-fast-path.ts says why and how it stays the same command), from a bundle of that
// module and the code it runs (scripts/bundle.mjs says why).
let ranWithoutOclif = false
if (backupCommand) {
  const {runBackupWithoutOclif} = await import('../dist/fast/backup.js')
  ranWithoutOclif = await runBackupWithoutOclif(process.argv.slice(2))
}
if (!ranWithoutOclif) {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
