#!/usr/bin/env node
// `npm run demo`: the main job, end to end, in a temporary directory, narrated for a person.
// Generates a data directory, serves it with `engine serve`, stores memories through the HTTP API
// while the server runs, shows them in the WAL, restarts the server and checks they survived.
import {spawn, spawnSync} from 'node:child_process'
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
const started = Date.now()
const say = (s) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${s}`)

function run(args, {quiet = false} = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], {encoding: 'utf8'})
  if (!quiet && r.stdout.trim()) console.log(r.stdout.trimEnd().replace(/^/gm, '        '))
  if (r.status !== 0 && r.status !== 3) throw new Error(`engram-ops ${args.join(' ')} exited ${r.status}: ${r.stderr}`)
  return r
}

function serve() {
  const child = spawn(process.execPath, [cli, 'engine', 'serve', '--data-dir', dataDir, '--port', '0', '--json'], {stdio: ['ignore', 'pipe', 'inherit']})
  return new Promise((resolve, reject) => {
    const lines = createInterface({input: child.stdout})
    lines.once('line', (line) => resolve({child, ...JSON.parse(line)}))
    child.once('exit', (code) => reject(new Error(`engine serve exited ${code} before listening`)))
  })
}

const stopped = (child) => new Promise((resolve) => child.once('exit', (code) => resolve(code)))

try {
  say(`working in ${work}`)
  say('1. generate a realistic data directory: 2 spaces x 2000 episodes, 768-d embeddings')
  run(['engine', 'generate', '--data-dir', dataDir, '--spaces', '2', '--episodes', '2000'])

  say('2. start the Engram-compatible server on a free port')
  let server = await serve()
  say(`   listening on ${server.url} (pid ${server.pid})`)
  const client = new AdminClient({baseUrl: server.url})
  const health = await client.health()
  say(`   GET /health -> ${health.status}, version ${health.version}`)

  say('3. remember three memories through the HTTP API')
  const ids = []
  for (const content of ['The 14:02 import was the bad one', 'Restore drill passed on Tuesday', 'Rotate the API keys on Friday']) {
    const r = await client.remember({content, confidence: 0.9}, 'default')
    ids.push(r.memory_id)
    say(`   stored ${r.memory_id}: "${content}"`)
  }

  say('4. the records are in the WAL (engine waldump, last 3 records of space default)')
  const dump = JSON.parse(run(['engine', 'waldump', dataDir, '--space', 'default', '--json'], {quiet: true}).stdout)
  for (const r of dump.records.slice(-3)) say(`   ${r.file} off=${r.offset} seq=${r.sequence} ${r.type} id=${r.id} crc=${r.crc}`)

  say('5. shut the server down over HTTP (POST /shutdown) and start it again')
  await client.shutdown()
  say(`   server exited with code ${await stopped(server.child)}`)
  server = await serve()
  const again = new AdminClient({baseUrl: server.url})
  for (const id of ids) {
    const m = await again.getMemory(id, 'default')
    say(`   after restart: ${m.id} -> "${m.content}"`)
  }
  await again.shutdown()
  await stopped(server.child)

  say('6. what the data directory holds now (engine stats)')
  run(['engine', 'stats', dataDir])
  say('done: every memory acknowledged by the server was on disk and came back after a restart')
} finally {
  rmSync(work, {recursive: true, force: true})
}
