/**
 * `engram-ops engine serve` as a user runs it: the BUILT CLI (dist/, built by `npm test`'s pretest) in
 * a child process, driven through AdminClient and checked with `engine waldump`.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createInterface} from 'node:readline'

import {afterEach, describe, expect, it} from 'vitest'

import {AdminClient} from '../../src/lib/admin/client.js'
import {repoRoot} from '../support/fixtures.js'

const BIN = join(repoRoot, 'bin', 'run.js')

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!()
})

function cli(args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], {cwd: repoRoot, env: {...process.env, CI: '1', ...env}, stdio: ['ignore', 'pipe', 'pipe']})
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited(child)
    }
  })
  return child
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode)
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)))
}

function collect(child: ChildProcess): {stdout: () => string; stderr: () => string} {
  let out = ''
  let err = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (err += d))
  return {stdout: () => out, stderr: () => err}
}

async function run(args: string[]): Promise<{code: number | null; stdout: string; stderr: string}> {
  const child = cli(args)
  const io = collect(child)
  const code = await exited(child)
  return {code, stdout: io.stdout(), stderr: io.stderr()}
}

interface Serving {
  child: ChildProcess
  url: string
  port: number
  pid: number
  stderr: () => string
}

/** Starts `engine serve --json` and waits for its one-line `{url, port, pid}` announcement. */
async function serve(dir: string, extra: string[] = []): Promise<Serving> {
  const child = cli(['engine', 'serve', '--data-dir', dir, '--port', '0', '--json', ...extra])
  let err = ''
  child.stderr!.on('data', (d) => (err += d))
  const lines = createInterface({input: child.stdout!})
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve)
    child.once('exit', (code) => reject(new Error(`engine serve exited with ${code} before listening: ${err}`)))
  })
  const info = JSON.parse(first) as {url: string; port: number; pid: number}
  expect(info.url).toBe(`http://127.0.0.1:${info.port}`)
  expect(info.pid).toBe(child.pid)
  return {child, ...info, stderr: () => err}
}

describe('engine serve (built CLI)', () => {
  it('remembers through the API, shows the record in waldump, survives /shutdown and a restart, and holds the lock', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'engram-e2e-serve-'))
    cleanups.push(() => rm(dir, {recursive: true, force: true}))
    const pidFile = join(dir, 'engram.pid')

    const first = await serve(dir, ['--pid-file', pidFile])
    expect(await readFile(pidFile, 'utf8')).toBe(`${first.pid}:${first.port}`)
    const api = new AdminClient({baseUrl: first.url, space: 'e2e-space'})
    cleanups.push(() => api.close())
    const stored = await api.remember({id: 'e2e-memory-1', content: 'written through engine serve', confidence: 0.8})
    expect(stored.memory_id).toBe('e2e-memory-1')

    // A second server on the same data directory is refused while the first runs.
    const second = await run(['engine', 'serve', '--data-dir', dir, '--port', '0'])
    expect(second.code).toBe(12)
    expect(second.stderr).toContain(`pid ${first.pid}`)

    const dump = await run(['engine', 'waldump', dir, '--json'])
    expect(dump.code).toBe(0)
    const records = JSON.parse(dump.stdout).records as Array<{space: string; entryType: number; id?: string; crc: string}>
    expect(records).toContainEqual(expect.objectContaining({space: 'e2e-space', entryType: 1, id: 'e2e-memory-1', crc: 'ok'}))

    expect((await api.shutdown()).status).toBe('shutdown_initiated')
    expect(await exited(first.child)).toBe(0)
    expect(existsSync(pidFile)).toBe(false)
    expect(existsSync(join(dir, '.engram-ops.lock'))).toBe(false)

    const again = await serve(dir)
    const api2 = new AdminClient({baseUrl: again.url})
    cleanups.push(() => api2.close())
    expect(await api2.getMemory('e2e-memory-1', 'e2e-space')).toEqual({
      id: 'e2e-memory-1',
      content: 'written through engine serve',
      confidence: 0.8,
      timestamp: expect.any(String),
      memory_type: 'episodic',
    })
    again.child.kill('SIGTERM')
    expect(await exited(again.child)).toBe(0)
    expect(existsSync(join(dir, '.engram-ops.lock'))).toBe(false)
  })

  it('prints a plain "listening on" line without --json and requires the configured key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'engram-e2e-serve-'))
    cleanups.push(() => rm(dir, {recursive: true, force: true}))
    const key = `engram_key_${'e'.repeat(24)}_${'F'.repeat(32)}`
    const withKey = cli(['engine', 'serve', '--data-dir', dir, '--port', '0'], {ENGRAM_OPS_API_KEYS: key})
    const line = await new Promise<string>((resolve) => createInterface({input: withKey.stdout!}).once('line', resolve))
    const m = /^listening on (http:\/\/127\.0\.0\.1:(\d+))$/.exec(line)
    expect(m).not.toBeNull()
    const anonymous = new AdminClient({baseUrl: m![1], retries: 0})
    const keyed = new AdminClient({baseUrl: m![1], apiKey: key})
    cleanups.push(() => anonymous.close(), () => keyed.close())
    await expect(anonymous.alive()).rejects.toMatchObject({exitCode: 13, status: 401})
    await keyed.alive()
    withKey.kill('SIGINT')
    expect(await exited(withKey)).toBe(0)
  })
})
