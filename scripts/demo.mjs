#!/usr/bin/env node
// `npm run demo`: the main job end to end, in a temporary directory, narrated for a person.
// Generates an Engram data directory, serves it, takes a full backup while writes continue, writes
// more, takes an incremental, restores to a moment in between with PITR, verifies at level 4, and
// checks the restored state against what the server acknowledged.
import {spawn} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {createInterface} from 'node:readline'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const cli = join(root, 'bin', 'run.js')
const {AdminClient} = await import(join(root, 'dist', 'lib', 'admin', 'client.js'))

const work = mkdtempSync(join(tmpdir(), 'engram-ops-demo-'))
const dataDir = join(work, 'engram-data')
const repo = join(work, 'backups')
const started = Date.now()
const say = (s) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${s}`)
const indent = (s) => s.trimEnd().replace(/^/gm, '          ')

/** Runs the CLI without blocking this process (the writer loop keeps going meanwhile). */
function run(args, {show = true, json = false} = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args, ...(json ? ['--json'] : [])], {stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`engram-ops ${args.join(' ')} exited ${code}:\n${err}${out}`))
      if (show && !json && out.trim()) console.log(indent(out))
      resolve(json ? JSON.parse(out) : out)
    })
  })
}

/** Servers started; any still running when the demo ends (it failed halfway) are stopped then. */
const servers = new Set()

function serve(dir = dataDir) {
  const child = spawn(process.execPath, [cli, 'engine', 'serve', '--data-dir', dir, '--port', '0', '--json'], {stdio: ['ignore', 'pipe', 'inherit']})
  servers.add(child)
  child.once('exit', () => servers.delete(child))
  return new Promise((resolve, reject) => {
    createInterface({input: child.stdout}).once('line', (line) => resolve({child, ...JSON.parse(line)}))
    child.once('exit', (code) => reject(new Error(`engine serve exited ${code} before listening`)))
  })
}

/** Remembers memories in a loop until stopped; records what was acknowledged, and when. */
function writer(client, label) {
  const acked = []
  let stop = false
  const done = (async () => {
    for (let i = 0; !stop; i++) {
      const content = `${label} memory ${i}: the import at 14:02 touched ${i * 7} rows`
      const r = await client.remember({content, confidence: 0.8}, 'default')
      acked.push({id: r.memory_id, at: process.hrtime.bigint()})
    }
  })()
  return {acked, stop: async () => ((stop = true), await done)}
}

const wallNs = () => BigInt(Date.now()) * 1_000_000n
let failed = false

try {
  say(`working in ${work}`)
  say('1. generate a data directory: 3 spaces x 3000 episodes with 768-d embeddings (~30 MiB of WAL)')
  await run(['engine', 'generate', '--data-dir', dataDir, '--spaces', '3', '--episodes', '3000', '--start', new Date(Date.now() - 3_600_000).toISOString()])

  say('2. serve it with the Engram-compatible server and start writing memories continuously')
  const server = await serve()
  const client = new AdminClient({baseUrl: server.url})
  say(`   listening on ${server.url}`)
  let w = writer(client, 'before-full')
  await new Promise((r) => setTimeout(r, 500))

  say('3. repo init, then a full backup while the writes go on')
  await run(['repo', 'init', '--repo', repo])
  const ackedBeforeFull = w.acked.length
  const full = await run(['backup', 'full', '--data-dir', dataDir, '--repo', repo], {json: true})
  say(`   ${full.id}: ${full.totals.files} files, ${full.totals.records} records, ${full.totals.bytes} bytes -> ${full.totals.archiveBytes} stored, in ${full.durationMs} ms`)
  say(`   ${ackedBeforeFull} memories had been acknowledged when it started; ${w.acked.length} by the time it finished`)
  await w.stop()

  say('4. write more, note a moment in between, write more, then take an incremental')
  w = writer(client, 'batch-a')
  await new Promise((r) => setTimeout(r, 400))
  await w.stop()
  const batchA = w.acked.map((a) => a.id)
  await new Promise((r) => setTimeout(r, 50))
  const moment = wallNs()
  await new Promise((r) => setTimeout(r, 50))
  w = writer(client, 'batch-b')
  await new Promise((r) => setTimeout(r, 400))
  await w.stop()
  const batchB = w.acked.map((a) => a.id)
  say(`   batch A: ${batchA.length} memories before the moment, batch B: ${batchB.length} after it`)
  const incr = await run(['backup', 'incremental', '--data-dir', dataDir, '--repo', repo], {json: true})
  say(`   ${incr.id} (incremental on ${incr.parent}): only the new bytes, ${incr.totals.bytes} bytes -> ${incr.totals.archiveBytes} stored, in ${incr.durationMs} ms`)
  await client.shutdown()

  say('5. the repository now holds')
  await run(['backup', 'list', '--repo', repo])

  const isoMoment = new Date(Number(moment / 1_000_000n)).toISOString()
  say(`6. point-in-time restore to the moment between the batches (${isoMoment})`)
  const pitrDir = join(work, 'restored-pitr')
  const pitr = await run(['restore', 'pitr', '--repo', repo, '--target-time', isoMoment, '--to', pitrDir], {json: true})
  say(`   restored chain ${pitr.chain.map((c) => c.id).join(' -> ')}: ${pitr.pitrResult.kept} records kept, ${pitr.pitrResult.dropped} after the moment dropped`)

  say('7. serve the restored directory and check it against what the server acknowledged')
  const restoredServer = await serve(pitrDir)
  const rc = new AdminClient({baseUrl: restoredServer.url})
  let presentA = 0
  let presentB = 0
  for (const id of batchA) if (await rc.getMemory(id, 'default').then(() => true, () => false)) presentA++
  for (const id of batchB) if (await rc.getMemory(id, 'default').then(() => true, () => false)) presentB++
  await rc.shutdown()
  say(`   batch A present: ${presentA}/${batchA.length}; batch B present: ${presentB}/${batchB.length} (expected all of A, none of B)`)
  if (presentA !== batchA.length || presentB !== 0) throw new Error('point-in-time restore does not match what was acknowledged')

  say('8. verify the newest backup at level 4 (restore to scratch, open with the engine, serve, compare)')
  await run(['backup', 'verify', '--latest', '--level', '4', '--repo', repo])
  say('done: a hot full backup, an incremental of only the new bytes, and an exact point-in-time restore')
} catch (error) {
  failed = true
  console.error(`demo failed; its files are kept in ${work}`)
  throw error
} finally {
  // Every server gone (stopped by the demo or now) before its data directory is removed.
  await Promise.all([...servers].map((child) => new Promise((resolve) => {
    child.once('exit', resolve)
    child.kill('SIGTERM')
  })))
  if (!failed && !process.env.DEMO_KEEP) rmSync(work, {recursive: true, force: true})
}
