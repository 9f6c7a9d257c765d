// Preloaded into a benchmarked process (node --import): on exit, append its peak RSS (bytes) and the
// CPU time of all its threads (user and system, microseconds) to $BENCH_RSS_FILE, one line per process.
import {appendFileSync} from 'node:fs'

process.on('exit', () => {
  if (!process.env.BENCH_RSS_FILE) return
  const u = process.resourceUsage()
  appendFileSync(process.env.BENCH_RSS_FILE, `${u.maxRSS * 1024} ${u.userCPUTime} ${u.systemCPUTime}\n`)
})
