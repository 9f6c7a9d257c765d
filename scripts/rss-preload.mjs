// Preloaded into a benchmarked process (node --import): on exit, append its peak RSS to $BENCH_RSS_FILE.
import {appendFileSync} from 'node:fs'

process.on('exit', () => {
  if (process.env.BENCH_RSS_FILE) appendFileSync(process.env.BENCH_RSS_FILE, `${process.resourceUsage().maxRSS * 1024}\n`)
})
