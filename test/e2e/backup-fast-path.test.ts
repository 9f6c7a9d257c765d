/**
 * `backup full|incremental` run without oclif (src/backup-fast-path.ts). It must be the same command:
 * its flag table is checked against the oclif commands' definitions, command lines are parsed both
 * ways and must give the same flags (or be handed to oclif), and the built CLI must print the same
 * JSON, text and exit codes as the same command run through oclif.
 */
import {spawn} from 'node:child_process'
import {cp, mkdir, readdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'

import {Flags, Parser} from '@oclif/core'
import {beforeAll, describe, expect, it} from 'vitest'

import {FAST_BACKUP_FLAGS, parseFastBackupArgs} from '../../src/backup-fast-path.js'
import BackupFull from '../../src/commands/backup/full.js'
import BackupIncremental from '../../src/commands/backup/incremental.js'
import {FsBackend} from '../../src/lib/repo/backends/fs.js'
import {acquireRepoLock} from '../../src/lib/repo/lock.js'
import {fixturesRoot, repoRoot} from '../support/fixtures.js'
import {type CliRun, cliNodeArgs, runCli} from '../support/cli.js'
import {scratchDirs} from '../support/files.js'

/* eslint-disable @typescript-eslint/no-explicit-any */
const oclifFlags: Record<string, any> = {json: Flags.boolean(), ...BackupFull.baseFlags, ...BackupFull.flags}

/** oclif's parse of the flags after `backup full`, with `env` as the environment (its flags' env vars). */
async function oclifParse(argv: string[], env: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const saved = {...process.env}
  for (const k of ['ENGRAM_DATA_DIR', 'ENGRAM_OPS_REPO']) delete process.env[k]
  Object.assign(process.env, env)
  try {
    const {flags} = await Parser.parse(argv, {flags: oclifFlags, args: {}, strict: true})
    return Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined))
  } finally {
    process.env = saved
  }
}

/** The fast path's parse in oclif's shape (json/quiet/verbose back among the flags, false ones left out). */
function fastParse(argv: string[], env: Record<string, string> = {}): Record<string, unknown> | null {
  const r = parseFastBackupArgs(argv, env)
  if (!r) return null
  return {...r.flags, ...(r.json ? {json: true} : {}), ...(r.quiet ? {quiet: true} : {}), ...(r.verbose ? {verbose: true} : {})}
}

/** Runs the built CLI's command through oclif, as bin/main.js did before the fast path. */
const runThroughOclif = (args: string[]) => runCli(args, {throughOclif: true})

describe('the fast path flag table', () => {
  it('has exactly the oclif commands flags, with the same letters, env vars, repeatability, requirement, defaults and kinds', () => {
    for (const command of [BackupFull, BackupIncremental]) {
      expect(command.enableJsonFlag).toBe(true)
      expect(command.flags).toBe(BackupFull.flags)
      // Nothing the fast path does not implement: arguments, non-strict parsing, constraints.
      expect(Object.keys(command.args ?? {})).toEqual([])
      expect(command.strict).not.toBe(false)
    }
    expect([...FAST_BACKUP_FLAGS.keys()].sort()).toEqual(Object.keys(oclifFlags).sort())
    for (const [name, fast] of FAST_BACKUP_FLAGS) {
      const flag = oclifFlags[name]
      expect({name, char: fast.char, env: fast.env, multiple: fast.multiple ?? false, required: fast.required ?? false, default: fast.default, boolean: !fast.parse}).toEqual({
        name,
        char: flag.char,
        env: flag.env,
        multiple: flag.multiple ?? false,
        required: flag.required ?? false,
        default: flag.default,
        boolean: flag.type === 'boolean',
      })
      // Flag features that change parsing and that the fast path does not implement.
      for (const feature of ['dependsOn', 'exclusive', 'relationships', 'exactlyOne', 'atLeastOne', 'combinable', 'delimiter', 'allowStdin', 'deprecated', 'aliases', 'charAliases', 'allowNo', 'multipleNonGreedy']) {
        expect(flag[feature] === undefined || flag[feature] === false, `${name}.${feature}`).toBe(true)
      }
      // A flag with a list of options takes exactly those values.
      if (flag.options) {
        for (const option of flag.options) expect(fast.parse!(option), `${name} ${option}`).toBe(option)
        expect(fast.parse!('not-an-option')).toBeUndefined()
      }
    }
  })
})

describe('command lines parsed by the fast path and by oclif', () => {
  const taken: Array<[string, string[], Record<string, string>?]> = [
    ['the repository only', ['--repo', '/r']],
    ['letters, repeated spaces, --flag=value', ['-r', '/r', '-d', '/d', '-s', 'a', '--space', 'b', '--space=c']],
    [
      'every flag',
      [
        '--repo=s3://b/p',
        '--data-dir',
        'rel/dir',
        '--lock-wait',
        '5m',
        '--part-size',
        '16MiB',
        '--upload-concurrency',
        '64',
        '--sse',
        'aws:kms',
        '--sse-kms-key-id',
        'key',
        '--storage-class',
        'STANDARD_IA',
        '--hash',
        'sha256',
        '--label',
        'nightly run',
        '--compression',
        'zstd:3',
        '--passphrase-file',
        'pass.txt',
        '--json',
        '--quiet',
        '--verbose',
      ],
    ],
    ['the smallest upload concurrency', ['--repo', '/r', '--upload-concurrency', '1']],
    ['repository and data directory from the environment', [], {ENGRAM_OPS_REPO: '/env/repo', ENGRAM_DATA_DIR: '/env/data'}],
    ['a flag wins over its environment variable', ['--repo', '/flag/repo'], {ENGRAM_OPS_REPO: '/env/repo'}],
  ]
  for (const [what, argv, env] of taken) {
    it(`same flags: ${what}`, async () => {
      const fast = fastParse(argv, env)
      expect(fast).not.toBeNull()
      expect(fast).toEqual(await oclifParse(argv, env))
    })
  }

  const handedToOclif: Array<[string, string[], Record<string, string>?]> = [
    ['no repository', []],
    ['help', ['--repo', '/r', '--help']],
    ['an argument', ['--repo', '/r', 'extra']],
    ['a flag without its value', ['--repo']],
    ['an empty value', ['--repo=']],
    ['a value that looks like a flag', ['--repo', '/r', '--label', '--json']],
    ['an unknown flag', ['--repo', '/r', '--dry-run']],
    ['an unknown letter', ['--repo', '/r', '-x']],
    ['letters run together', ['-r/r']],
    ['a hash it does not know', ['--repo', '/r', '--hash', 'md5']],
    ['upload concurrency 0', ['--repo', '/r', '--upload-concurrency', '0']],
    ['upload concurrency 65', ['--repo', '/r', '--upload-concurrency', '65']],
    ['a duration it cannot read', ['--repo', '/r', '--lock-wait', 'soon']],
    ['a size it cannot read', ['--repo', '/r', '--part-size', 'big']],
    ['a flag given twice', ['--repo', '/r', '--label', 'a', '--label', 'b']],
    ['a boolean with a value', ['--repo', '/r', '--json=true']],
    ['a boolean twice', ['--repo', '/r', '--json', '--json']],
    ['two values after --space', ['--repo', '/r', '--space', 'a', 'b']],
    ['--', ['--repo', '/r', '--']],
    ['an empty environment variable', [], {ENGRAM_OPS_REPO: ''}],
    ['JSON asked for through the environment', ['--repo', '/r'], {ENGRAM_OPS_CONTENT_TYPE: 'json'}],
  ]
  for (const [what, argv, env] of handedToOclif) {
    it(`handed to oclif: ${what}`, () => {
      expect(parseFastBackupArgs(argv, env ?? {})).toBeNull()
    })
  }
})

describe('the start-up bundle (scripts/bundle.mjs)', () => {
  it('is what bin/main.js loads, and loads neither the AWS SDK nor oclif: only Node, the two addons and its own chunks', async () => {
    expect(await readFile(join(repoRoot, 'bin', 'main.js'), 'utf8')).toContain("await import('../dist/fast/backup.js')")
    // The static imports of the bundle and of the chunks it imports, followed through.
    const seen = new Set<string>()
    const external = new Set<string>()
    const follow = async (file: string) => {
      if (seen.has(file)) return
      seen.add(file)
      const text = await readFile(join(repoRoot, 'dist', 'fast', file), 'utf8')
      for (const m of text.matchAll(/^import\s+(?:[^'"]*?\s+from\s+)?["']([^"']+)["']/gm)) {
        if (m[1].startsWith('./')) await follow(m[1].slice(2))
        else external.add(m[1].startsWith('node:') ? 'node:*' : m[1])
      }
    }
    await follow('backup.js')
    // Node's modules only: the addons are not imported but required by name (src/lib/native.ts).
    expect([...external]).toEqual(['node:*'])
    for (const file of seen) expect(await readFile(join(repoRoot, 'dist', 'fast', file), 'utf8'), file).not.toMatch(/@aws-sdk\/|@smithy\/|@oclif\//)
    // The S3 backend is a chunk of its own, imported only for s3:// URLs.
    const s3 = (await readdir(join(repoRoot, 'dist', 'fast'))).filter((f) => f.startsWith('s3-'))
    expect(s3).toHaveLength(1)
    expect(seen.has(s3[0])).toBe(false)
    expect(await readFile(join(repoRoot, 'dist', 'fast', s3[0]), 'utf8')).toMatch(/from ["']@aws-sdk\/client-s3["']/)
  })
})

/**
 * The built CLI as a user runs it, checked to have run without oclif: NODE_DEBUG=module names every
 * CommonJS module loaded (oclif is CommonJS) on stderr, from where those lines are then removed.
 */
async function runFast(args: string[]): Promise<CliRun> {
  const r = await runCli(args, {env: {NODE_DEBUG: 'module'}})
  expect(r.stderr, `${args.join(' ')} loaded oclif`).not.toMatch(/@oclif/)
  expect(r.stderr, 'NODE_DEBUG=module had no effect: the check above proves nothing').toMatch(/^MODULE \d+: /m)
  return {...r, stderr: r.stderr.replace(/^MODULE \d+: .*\n/gm, '')}
}

describe('the built CLI, with and without oclif', {timeout: 120_000}, () => {
  const scratch = scratchDirs('engram-ops-fast')
  let root: string
  let data: string
  let repo: string
  beforeAll(async () => {
    root = await scratch('cli')
    data = join(root, 'data')
    repo = join(root, 'repo')
    const gen = await runCli(['engine', 'generate', '--data-dir', data, '--size', '256KiB', '--spaces', '2', '--no-sync'])
    expect(gen.code, gen.stderr).toBe(0)
    for (const r of [repo, join(root, 'repo-oclif')]) {
      const init = await runCli(['repo', 'init', '--repo', r])
      expect(init.code, init.stderr).toBe(0)
    }
  })

  /** A result with what differs from run to run (ids, times, durations) replaced. */
  const stable = (text: string) =>
    text
      .replace(/\d{8}T\d{6}Z-(full|incr)-[0-9a-f]{6}/g, 'ID')
      .replace(/in [\d.]+ m?s \([^)]*\)/g, 'in T (R)')
      .replace(/"(startedAt|finishedAt)": "[^"]*"/g, '"$1": "T"')
      .replace(/"durationMs": \d+/g, '"durationMs": 0')
  /** Progress notes without their timestamps, sorted: archives finish in any order. */
  const notes = (text: string) => stable(text).replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z /gm, '').split('\n').sort()

  it('backup full and incremental print what the oclif commands print, text and JSON', async () => {
    const other = join(root, 'repo-oclif')
    for (const type of ['full', 'incremental']) {
      for (const extra of [[], ['--json']]) {
        const fast = await runFast(['backup', type, '--data-dir', data, '--repo', repo, ...extra])
        const viaOclif = await runThroughOclif(['backup', type, '--data-dir', data, '--repo', other, ...extra])
        expect([fast.code, viaOclif.code], `${fast.stderr}\n${viaOclif.stderr}`).toEqual([0, 0])
        expect(stable(fast.stdout)).toBe(stable(viaOclif.stdout))
        expect(notes(fast.stderr)).toEqual(notes(viaOclif.stderr))
        if (extra.length > 0) {
          expect(fast.stdout).toMatch(/^\{\n {2}"id": /)
          expect(JSON.parse(fast.stdout).type).toBe(type)
        } else {
          expect(fast.stdout).toMatch(new RegExp(`^backup \\d{8}T\\d{6}Z-${type === 'full' ? 'full' : 'incr'}-[0-9a-f]{6} \\(${type}( on [^)]+)?\\) complete: \\d+ files, [\\d.]+ (KiB|B) captured, [\\d.]+ (KiB|B) stored, \\d+ records in `))
          expect(fast.stdout.trimEnd().split('\n')).toHaveLength(1)
        }
      }
    }
  })

  it('a backup of damaged WAL: the same exit code 3, warnings and notes, text and JSON', async () => {
    const damaged = join(root, 'damaged')
    await cp(join(fixturesRoot, 'damaged', 'default'), join(damaged, 'default'), {recursive: true})
    await mkdir(join(damaged, 'lost+found'))
    const repos = [join(root, 'repo-damaged'), join(root, 'repo-damaged-oclif')]
    for (const r of repos) expect((await runCli(['repo', 'init', '--repo', r])).code).toBe(0)
    for (const extra of [[], ['--json']]) {
      const fast = await runFast(['backup', 'full', '--data-dir', damaged, '--repo', repos[0], ...extra])
      const viaOclif = await runThroughOclif(['backup', 'full', '--data-dir', damaged, '--repo', repos[1], ...extra])
      expect([fast.code, viaOclif.code], `${fast.stderr}\n${viaOclif.stderr}`).toEqual([3, 3])
      expect(stable(fast.stdout)).toBe(stable(viaOclif.stdout).replaceAll(repos[1], repos[0]))
      expect(notes(fast.stderr)).toEqual(notes(viaOclif.stderr.replaceAll(repos[1], repos[0])))
      if (extra.length > 0) {
        const result = JSON.parse(fast.stdout)
        expect(result.warnings).toHaveLength(3)
        expect(result.skipped).toEqual([{path: join(damaged, 'lost+found'), reason: expect.any(String)}])
      } else {
        expect(fast.stderr.match(/warning: damaged WAL /g)).toHaveLength(3)
      }
    }
  })

  it('fails with the same text, JSON and exit codes', async () => {
    const missing = join(root, 'no-repo')
    for (const extra of [[], ['--json'], ['--verbose']]) {
      const args = ['backup', 'full', '--data-dir', data, '--repo', missing, ...extra]
      const fast = await runFast(args)
      const viaOclif = await runThroughOclif(args)
      expect(fast.code).toBe(11)
      expect(viaOclif.code).toBe(11)
      expect(fast.stdout).toBe(viaOclif.stdout)
      if (extra[0] === '--verbose') {
        // Stacks differ in their frames (oclif's own are in one of them); the first lines are the same.
        expect(fast.stderr.split('\n').slice(0, 3)).toEqual(viaOclif.stderr.split('\n').slice(0, 3))
        expect(fast.stderr).toMatch(/^\s+at /m)
      } else {
        expect(fast.stderr).toBe(viaOclif.stderr)
      }
    }
    const json = JSON.parse((await runFast(['backup', 'full', '--data-dir', data, '--repo', missing, '--json'])).stdout)
    expect(json).toEqual({
      error: {
        name: 'OpsError',
        code: 'REPO_MISSING',
        message: `no engram-ops repository at ${pathToFileURL(missing).href}`,
        exitCode: 11,
        subject: pathToFileURL(missing).href,
        suggestions: [`Create one with \`engram-ops repo init --repo ${pathToFileURL(missing).href}\`, or check the URL.`],
      },
    })
  })

  it('SIGINT while waiting for the repository lock exits 130, as through oclif', async () => {
    const holder = await acquireRepoLock(new FsBackend(repo), {command: 'backup full', waitMs: 0})
    try {
      for (const viaOclif of [false, true]) {
        const args = ['backup', 'incremental', '--data-dir', data, '--repo', repo, '--lock-wait', '60s']
        const child = spawn(process.execPath, cliNodeArgs(args, viaOclif), {cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, NODE_DEBUG: 'module'}})
        let stderr = ''
        const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
        await new Promise<void>((resolve) =>
          child.stderr.on('data', (c: Buffer) => {
            stderr += c.toString('utf8')
            if (stderr.includes('repository is locked by backup full')) resolve()
          }),
        )
        child.kill('SIGINT')
        expect(await exited, stderr).toBe(130)
        expect(stderr).toMatch(/^Error: interrupted by SIGINT \[INTERRUPTED\]$/m)
        if (!viaOclif) expect(stderr).not.toMatch(/@oclif/)
      }
    } finally {
      await holder.release()
    }
  })

  it('hands a command line it does not take to oclif, which reports a usage error (exit 2)', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--dry-run'], /^Error: Nonexistent flag: --dry-run$/m],
      [['--hash', 'md5'], /^Error: Expected --hash=md5 to be one of: /m],
      [['--label', 'a', '--label', 'b'], /^Error: Flag --label can only be specified once/m],
      [['--label'], /^Error: Flag --label expects a value/m],
    ]
    for (const [extra, message] of cases) {
      const r = await runCli(['backup', 'full', '--data-dir', data, '--repo', repo, ...extra], {env: {NODE_DEBUG: 'module'}})
      expect(r.stderr).toMatch(/@oclif\/core/)
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toMatch(message)
    }
  })
})
