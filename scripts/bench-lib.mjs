// Shared helpers for `npm run bench`: timing external commands, medians, peak RSS, and writing one
// section of docs/benchmarks.md. Benchmarks are scripts, never timed tests.
import {spawn} from 'node:child_process'
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {cpus, totalmem, tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..')
export const cli = join(root, 'bin', 'run.js')
const preload = join(root, 'scripts', 'rss-preload.mjs')

/** Runs a shell command; resolves with wall time (ms). Rejects on a non-zero exit. */
export function sh(command, opts = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn('bash', ['-o', 'pipefail', '-c', command], {stdio: ['ignore', opts.stdout ?? 'ignore', 'pipe'], env: {...process.env, ...opts.env}})
    let err = ''
    child.stderr.on('data', (d) => (err += d))
    let out = ''
    child.stdout?.on('data', (d) => (out += d))
    child.on('close', (code) => {
      const ms = performance.now() - t0
      if (code === 0) resolve({ms, out, err})
      else reject(new Error(`${command} exited ${code}: ${err.slice(-2000)}`))
    })
  })
}

/**
 * Runs the built CLI as the installed `engram-ops` command runs (bin/run.js executed, so its launcher
 * lines set the malloc thresholds); resolves with wall time and the process's peak RSS in bytes.
 */
export async function runCli(args, opts = {}) {
  const rssFile = join(tmpdir(), `bench-rss-${process.pid}-${Math.random().toString(36).slice(2)}`)
  const quoted = args.map((a) => `'${String(a).replaceAll("'", "'\\''")}'`).join(' ')
  const env = {...opts.env, BENCH_RSS_FILE: rssFile, NODE_OPTIONS: `--import="${preload}"`}
  const r = await sh(`'${cli}' ${quoted}`, {...opts, env})
  const lines = existsSync(rssFile) ? readFileSync(rssFile, 'utf8').trim().split('\n').map((l) => l.split(' ').map(Number)) : []
  rmSync(rssFile, {force: true})
  const rss = lines.length > 0 ? Math.max(...lines.map((l) => l[0])) : NaN
  // CPU seconds of the process (all threads), user and system: tells a slow run on a busy machine from a slow program.
  const cpu = {user: lines.reduce((a, l) => a + l[1], 0) / 1e6, system: lines.reduce((a, l) => a + l[2], 0) / 1e6}
  return {...r, rss, cpu}
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

export const MiB = 1024 * 1024
export const GiB = 1024 * MiB
export const fmtMiBs = (bytes, ms) => `${((bytes / MiB) / (ms / 1000)).toFixed(0)} MiB/s`
export const fmtMiB = (bytes) => `${(bytes / MiB).toFixed(0)} MiB`
export const fmtS = (ms) => `${(ms / 1000).toFixed(2)} s`

/** The WAL files of an Engram data root (DIR/<space>/wal/*). */
export function walFiles(dir) {
  return readdirSync(dir).flatMap((space) => {
    const w = join(dir, space, 'wal')
    try {
      return readdirSync(w).map((f) => join(w, f))
    } catch {
      return []
    }
  })
}

export const bytesOf = (files) => files.reduce((a, f) => a + statSync(f).size, 0)
export const walBytes = (dir) => bytesOf(walFiles(dir))

/** The verdict cell of a bar in docs/benchmarks.md. */
export const pass = (ok) => (ok ? 'meets the bar' : '**misses the bar**')

export function scratch(name) {
  return mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), `engram-bench-${name}-`))
}

export async function machine() {
  const cpu = cpus()
  let disk = ''
  try {
    disk = (await sh('df -h --output=fstype,size,avail "${BENCH_DIR:-/tmp}" | tail -1', {stdout: 'pipe'})).out.trim()
  } catch {}
  return `${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB RAM, Node ${process.version}, ${process.platform}/${process.arch}; scratch filesystem ${disk}`
}

/** Replaces (or appends) the section between <!-- bench:NAME --> markers in docs/benchmarks.md. */
export function writeSection(name, markdown) {
  const file = join(root, 'docs', 'benchmarks.md')
  const begin = `<!-- bench:${name}:begin -->`
  const end = `<!-- bench:${name}:end -->`
  let doc = existsSync(file)
    ? readFileSync(file, 'utf8')
    : '# Benchmarks\n\nWritten by `npm run bench` (scripts/bench.mjs); every figure below was measured by that script in one run, beside its baseline on the same data. The machine is shared and noisy: figures are medians, and ratios matter more than absolute speeds.\n'
  const block = `${begin}\n${markdown.trim()}\n${end}`
  const i = doc.indexOf(begin)
  const j = doc.indexOf(end)
  doc = i >= 0 && j > i ? doc.slice(0, i) + block + doc.slice(j + end.length) : `${doc.trimEnd()}\n\n${block}\n`
  writeFileSync(file, doc)
}
