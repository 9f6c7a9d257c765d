/**
 * Encryption at rest, through the built CLI, on a filesystem repository and on S3 (s3rver):
 *  - after full + incremental backups, no object but engram-ops-repo.json holds any episode id,
 *    content string or 64-byte window of embedding bytes from the source WAL (checked to be found in
 *    an unencrypted repository of the same data), and the config holds only a salt and a wrapped key;
 *  - a wrong or missing passphrase exits 13 on list, backup and restore; --passphrase-file works;
 *  - the passphrase never appears in any stdout/stderr (text, --json, --verbose, errors);
 *  - level-2 verify catches a flipped byte through the authentication tag (exit 15);
 *  - `repo key change` rewraps the key: the old passphrase fails (13), the new one restores
 *    byte-identical data, and no backup object changes.
 */
import {randomBytes} from 'node:crypto'
import {mkdtemp, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, relative} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {generateData} from '../../src/lib/engine/generate.js'
import {decodeEpisode} from '../../src/lib/engine/payload.js'
import {WalFileReader} from '../../src/lib/engine/reader.js'
import {readAll, type RepositoryBackend} from '../../src/lib/repo/backend.js'
import {FsBackend} from '../../src/lib/repo/backends/fs.js'
import {S3Backend} from '../../src/lib/repo/backends/s3.js'
import {type EncryptionConfig, unwrapKey} from '../../src/lib/repo/crypto.js'
import {REPO_CONFIG_KEY} from '../../src/lib/repo/layout.js'
import {type CliRun, runCli, type S3rverHandle, startS3rver} from '../support/s3.js'
import {fileContents} from '../support/files.js'
import {sha256 as sha} from '../support/fixtures.js'

const MS = 1_000_000n
const PASS = `pass ${randomBytes(9).toString('hex')} phrase`
const WRONG = `wrong ${randomBytes(9).toString('hex')}`
const NEW_PASS = `new-${randomBytes(9).toString('hex')}-phrase`
const SECRETS = [PASS, WRONG, NEW_PASS]

let s3: S3rverHandle
let root: string
let data: string
const runs: Array<{args: string[]; run: CliRun}> = []

/** Runs the CLI with exactly the passphrase environment given (none inherited), and records the output. */
async function cli(args: string[], env: {pass?: string; newPass?: string} = {}): Promise<CliRun> {
  const run = await runCli(args, {env: {ENGRAM_OPS_PASSPHRASE: env.pass, ENGRAM_OPS_NEW_PASSPHRASE: env.newPass}})
  runs.push({args, run})
  return run
}
async function json(args: string[], env: {pass?: string; newPass?: string}, code = 0): Promise<any> {
  const r = await cli([...args, '--json'], env)
  expect(r.code, `${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(code)
  return JSON.parse(r.stdout)
}

const files = fileContents
const digest = (m: Map<string, Buffer>) => Object.fromEntries([...m].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, sha(v)]))

/** Every object of a repository, raw (as stored, not decrypted). */
async function rawObjects(raw: RepositoryBackend): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>()
  for await (const o of raw.list('')) out.set(o.key, await readAll(await raw.get(o.key)))
  return out
}

interface Needle {
  what: string
  bytes: Buffer
}
let needles: Needle[] = []

/* eslint-disable @typescript-eslint/no-explicit-any */
beforeAll(async () => {
  s3 = await startS3rver()
  root = await mkdtemp(join(tmpdir(), 'engram-encryption-'))
  data = join(root, 'data')
  await generateData({root: data, spaces: ['default', 'tenant-a'], episodes: 120, seed: 21, startNs: BigInt(Date.now() - 3 * 3600_000) * MS, windowNs: 3600_000n * MS, fsync: false})
  needles = await collectNeedles()
})
afterAll(async () => {
  await s3?.close()
  await rm(root, {recursive: true, force: true})
})

/** Needles from the source WAL: episode ids, content strings and 64-byte windows of embeddings (each found in its WAL). */
async function collectNeedles(): Promise<Needle[]> {
  const out: Needle[] = []
  for (const space of ['default', 'tenant-a']) {
    const dir = join(data, space, 'wal')
    for (const name of await readdir(dir)) {
      const wal = await readFile(join(dir, name))
      const mine: Needle[] = []
      let i = 0
      for await (const rec of new WalFileReader(join(dir, name)).records()) {
        if (i++ % 37 !== 0) continue
        const e = decodeEpisode(Buffer.from(rec.payload!))
        const emb = Buffer.from(e.embedding.buffer, e.embedding.byteOffset, e.embedding.byteLength)
        mine.push({what: `episode id ${e.id}`, bytes: Buffer.from(e.id)})
        mine.push({what: `content of ${e.id}`, bytes: Buffer.from(e.what)})
        for (const at of [0, 1000, 3000]) mine.push({what: `embedding bytes ${at}..${at + 64} of ${e.id}`, bytes: Buffer.from(emb.subarray(at, at + 64))})
      }
      for (const n of mine) expect(wal.includes(n.bytes), `${n.what} is in the WAL`).toBe(true)
      out.push(...mine)
    }
  }
  return out
}

/** "key: needle" for every needle found in an object other than the config. */
function leaks(objects: Map<string, Buffer>): string[] {
  expect(needles.length).toBeGreaterThanOrEqual(20)
  const found: string[] = []
  for (const [key, body] of objects) {
    if (key === REPO_CONFIG_KEY) continue
    for (const n of needles) if (body.includes(n.bytes)) found.push(`${key}: ${n.what}`)
  }
  return found
}

/** Checks every raw object: no needle, no passphrase, no data key in any form; the encrypted format; the config's shape. */
async function checkObjects(objects: Map<string, Buffer>, passphrase: string): Promise<void> {
  expect(leaks(objects)).toEqual([])
  for (const [key, body] of objects) {
    if (key !== REPO_CONFIG_KEY) expect(body.subarray(0, 8).toString(), key).toBe('EOPSENC1')
    for (const secret of SECRETS) expect(body.includes(Buffer.from(secret)), `${key} holds a passphrase`).toBe(false)
  }
  const config = JSON.parse(objects.get(REPO_CONFIG_KEY)!.toString('utf8'))
  const enc = config.encryption as EncryptionConfig
  expect(Object.keys(config).sort()).toEqual(['checksum', 'compression', 'createdAt', 'encryption', 'format', 'id'])
  expect(Object.keys(enc).sort()).toEqual(['cipher', 'kdf', 'wrappedKey'])
  expect(enc.cipher).toBe('aes-256-gcm-chunked-1MiB')
  expect(enc.kdf).toEqual({name: 'scrypt', N: 32768, r: 8, p: 1, salt: expect.any(String)})
  expect(Buffer.from(enc.kdf.salt, 'base64')).toHaveLength(16)
  expect(Buffer.from(enc.wrappedKey, 'base64')).toHaveLength(12 + 32 + 16)
  const dataKey = await unwrapKey(enc, passphrase)
  for (const [key, body] of objects) {
    for (const form of [dataKey, Buffer.from(dataKey.toString('hex')), Buffer.from(dataKey.toString('base64')), Buffer.from(dataKey.toString('base64url'))]) {
      expect(body.includes(form), `${key} holds the data key`).toBe(false)
    }
  }
}

it('the scan finds every needle in an unencrypted repository of the same data (so its silence below means something)', {timeout: 120_000}, async () => {
  const repo = join(root, 'plain-repo')
  await json(['repo', 'init', '--repo', repo, '--compression', 'none'], {})
  await json(['backup', 'full', '--data-dir', data, '--repo', repo], {})
  const objects = await rawObjects(new FsBackend(repo))
  const found = new Set(leaks(objects).map((l) => l.slice(l.indexOf(': ') + 2)))
  expect(found.size).toBe(new Set(needles.map((n) => n.what)).size)
})

/** Backups of `data` into a new encrypted repository: init, full, append, incremental. */
async function encryptedRepoWithBackups(url: string, seed: number): Promise<{full: any; inc: any}> {
  const init = await json(['repo', 'init', '--repo', url, '--encryption', '--compression', 'none'], {pass: PASS})
  expect(init.config.encryption).toEqual({cipher: 'aes-256-gcm-chunked-1MiB', kdf: expect.any(Object), wrappedKey: expect.any(String)})
  const full = await json(['backup', 'full', '--data-dir', data, '--repo', url], {pass: PASS})
  await generateData({root: data, spaces: ['default', 'tenant-a'], episodes: 30, seed, startNs: BigInt(Date.now() - 60_000) * MS, windowNs: 10_000n * MS, append: true, fsync: false})
  const inc = await json(['backup', 'incremental', '--data-dir', data, '--repo', url], {pass: PASS})
  expect(inc).toMatchObject({type: 'incremental', parent: full.id, totals: {records: 60}})
  needles = await collectNeedles() // now including the appended records
  return {full, inc}
}

async function restoreAndCompare(url: string, env: {pass?: string}, extra: string[] = []): Promise<void> {
  const to = join(root, `restore-${randomBytes(4).toString('hex')}`)
  await json(['restore', '--latest', '--repo', url, '--to', to, ...extra], env)
  const got = await files(to)
  const want = await files(data)
  expect(got.size).toBe(2)
  expect(digest(got)).toEqual(digest(new Map([...got.keys()].map((k) => [k, want.get(k)!]))))
}

/** `repo key change`, then: old passphrase 13, new one restores byte-identical, no object but the config changed. */
async function keyChange(url: string, raw: RepositoryBackend): Promise<void> {
  const before = await rawObjects(raw)
  const oldConfig = JSON.parse(before.get(REPO_CONFIG_KEY)!.toString('utf8'))
  // A wrong current passphrase cannot change it.
  expect((await json(['repo', 'key', 'change', '--repo', url, '--verbose'], {pass: WRONG, newPass: NEW_PASS}, 13)).error.code).toBe('WRONG_PASSPHRASE')
  expect(await json(['repo', 'key', 'change', '--repo', url], {pass: PASS, newPass: NEW_PASS})).toEqual({repo: expect.any(String), changed: true, warnings: []})

  const after = await rawObjects(raw)
  const strip = (m: Map<string, Buffer>) => digest(new Map([...m].filter(([k]) => k !== REPO_CONFIG_KEY)))
  expect(strip(after)).toEqual(strip(before))
  expect(Object.keys(strip(after)).length).toBeGreaterThanOrEqual(6)
  await checkObjects(after, NEW_PASS)
  const newConfig = JSON.parse(after.get(REPO_CONFIG_KEY)!.toString('utf8'))
  expect(newConfig.id).toBe(oldConfig.id)
  expect(newConfig.encryption.kdf.salt).not.toBe(oldConfig.encryption.kdf.salt)
  expect(newConfig.encryption.wrappedKey).not.toBe(oldConfig.encryption.wrappedKey)
  // The same data key, wrapped anew: that is why no object had to change.
  expect((await unwrapKey(newConfig.encryption, NEW_PASS)).equals(await unwrapKey(oldConfig.encryption, PASS))).toBe(true)
  await expect(unwrapKey(newConfig.encryption, PASS)).rejects.toMatchObject({exitCode: 13})

  expect((await json(['backup', 'list', '--repo', url], {pass: PASS}, 13)).error.code).toBe('WRONG_PASSPHRASE')
  await restoreAndCompare(url, {pass: NEW_PASS})
}

describe('encrypted repository on the filesystem', {timeout: 150_000}, () => {
  let url: string
  let raw: RepositoryBackend
  let full: any
  let inc: any
  beforeAll(() => {
    url = join(root, 'enc-repo')
    raw = new FsBackend(url)
  })

  it('repo init --encryption needs a passphrase; after full + incremental no object leaks ids, content, embeddings or key material', async () => {
    const none = await json(['repo', 'init', '--repo', url, '--encryption'], {}, 13)
    expect(none.error.code).toBe('PASSPHRASE_MISSING')
    expect(await readdir(root)).not.toContain('enc-repo')
    ;({full, inc} = await encryptedRepoWithBackups(url, 22))
    const objects = await rawObjects(raw)
    expect([...objects.keys()].sort()).toEqual([REPO_CONFIG_KEY, ...[full.id, inc.id].flatMap((id) => [`backups/${id}/default.tar`, `backups/${id}/manifest.json`, `backups/${id}/tenant-a.tar`])].sort())
    await checkObjects(objects, PASS)
  })

  it('a wrong or missing passphrase exits 13 on list, backup and restore (also --verbose), and changes nothing', async () => {
    const before = digest(await rawObjects(raw))
    expect((await json(['backup', 'list', '--repo', url], {pass: WRONG}, 13)).error).toMatchObject({code: 'WRONG_PASSPHRASE', exitCode: 13})
    expect((await json(['backup', 'full', '--data-dir', data, '--repo', url, '--verbose'], {pass: WRONG}, 13)).error).toMatchObject({code: 'WRONG_PASSPHRASE', exitCode: 13})
    expect((await json(['restore', '--latest', '--repo', url, '--to', join(root, 'never')], {pass: WRONG}, 13)).error).toMatchObject({code: 'WRONG_PASSPHRASE', exitCode: 13})
    expect((await json(['backup', 'list', '--repo', url], {}, 13)).error).toMatchObject({code: 'PASSPHRASE_MISSING', exitCode: 13})
    // As text with --verbose: the message and a stack trace, exit 13 (and no passphrase: see the last test).
    const text = await cli(['backup', 'list', '--repo', url, '--verbose'], {pass: WRONG})
    expect(text.code).toBe(13)
    expect(text.stderr).toContain('wrong passphrase for this repository (its key does not unwrap) [WRONG_PASSPHRASE]')
    expect(text.stderr).toMatch(/at unwrapKey \(/)
    expect(await readdir(root)).not.toContain('never')
    expect(digest(await rawObjects(raw))).toEqual(before)
  })

  it('--passphrase-file works (its trailing newline is not part of it, and it wins over the environment)', async () => {
    const file = join(root, 'pass.txt')
    await writeFile(file, `${PASS}\n`, {mode: 0o600})
    const list = await json(['backup', 'list', '--repo', url, '--passphrase-file', file], {})
    expect(list.backups.map((b: any) => b.id)).toEqual([full.id, inc.id])
    await restoreAndCompare(url, {pass: WRONG}, ['--passphrase-file', file])
    const wrongFile = join(root, 'wrong.txt')
    await writeFile(wrongFile, WRONG, {mode: 0o600})
    expect((await json(['backup', 'list', '--repo', url, '--passphrase-file', wrongFile, '--verbose'], {pass: PASS}, 13)).error.code).toBe('WRONG_PASSPHRASE')
  })

  it('repo key change: the old passphrase fails with 13, the new one restores byte-identical data, no backup object changed', async () => {
    await keyChange(url, raw)
  })
})

describe('encrypted repository on S3', {timeout: 150_000}, () => {
  let url: string
  let raw: RepositoryBackend
  let full: any
  let inc: any
  beforeAll(() => {
    url = s3.url('enc/repo')
    raw = S3Backend.fromUrl(url)
  })
  afterAll(async () => {
    await raw.close()
  })

  it('after full + incremental backups, no object leaks ids, content, embeddings or key material', async () => {
    ;({full, inc} = await encryptedRepoWithBackups(url, 23))
    const objects = await rawObjects(raw)
    expect([...objects.keys()].sort()).toEqual([REPO_CONFIG_KEY, ...[full.id, inc.id].flatMap((id) => [`backups/${id}/default.tar`, `backups/${id}/manifest.json`, `backups/${id}/tenant-a.tar`])].sort())
    await checkObjects(objects, PASS)
  })

  it('level-2 verify detects a flipped byte in an encrypted archive through its authentication tag (exit 15)', async () => {
    const key = `backups/${full.id}/default.tar`
    const original = await readAll(await raw.get(key))
    const damaged = Buffer.from(original)
    damaged[Math.floor(damaged.length / 2)] ^= 0x01
    await raw.put(key, damaged)
    try {
      const v = await json(['backup', 'verify', inc.id, '--level', '2', '--repo', url, '--verbose'], {pass: PASS}, 15)
      expect(v.error).toMatchObject({code: 'VERIFY_FAILED', exitCode: 15, subject: key})
      const findings = v.error.details.results[0].findings
      expect(findings).toEqual([{backup: inc.id, level: 2, object: key, problem: expect.stringMatching(/chunk \d+ fails its authentication tag/)}])
      // A restore of it fails as integrity too, and leaves nothing behind.
      const r = await json(['restore', '--latest', '--repo', url, '--to', join(root, 'never')], {pass: PASS}, 15)
      expect(r.error.code).toBe('AUTH_TAG_MISMATCH')
      expect(await readdir(root)).not.toContain('never')
    } finally {
      await raw.put(key, original)
    }
  })

  it('repo key change: the old passphrase fails with 13, the new one restores byte-identical data, no backup object changed', async () => {
    await keyChange(url, raw)
  })
})

it('no command printed a passphrase: not in stdout or stderr, text or --json, --verbose, success or error', () => {
  expect(runs.length).toBeGreaterThanOrEqual(25)
  expect(runs.filter((r) => r.args.includes('--verbose') && r.run.code !== 0).length).toBeGreaterThanOrEqual(5)
  expect(runs.filter((r) => r.args.includes('--json') && r.run.code !== 0).length).toBeGreaterThanOrEqual(10)
  for (const {args, run} of runs) {
    for (const secret of SECRETS) {
      expect(run.stdout.includes(secret), `passphrase in stdout of ${args.join(' ')}`).toBe(false)
      expect(run.stderr.includes(secret), `passphrase in stderr of ${args.join(' ')}`).toBe(false)
    }
  }
})
