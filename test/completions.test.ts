/**
 * Shell completion: completions/ must be what scripts/gen-completions.mjs produces from the current
 * commands (a stale file fails here), and each script must load and complete in its real shell.
 */
import {execFileSync, spawnSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {repoRoot} from './support/fixtures.js'
import {serviceUnavailable} from './support/services.js'

const FILES = ['engram-ops.bash', '_engram-ops', 'engram-ops.fish']
const out = mkdtempSync(join(tmpdir(), 'engram-ops-completions-'))
afterAll(() => rmSync(out, {recursive: true, force: true}))

function has(shell: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${shell}`]).status === 0
}

describe('completions', () => {
  it('completions/ is up to date with the commands (run `npm run completions` after changing flags)', () => {
    execFileSync(process.execPath, [join(repoRoot, 'scripts', 'gen-completions.mjs'), out], {cwd: repoRoot})
    for (const f of FILES) {
      expect(readFileSync(join(repoRoot, 'completions', f), 'utf8'), `completions/${f} is stale`).toBe(readFileSync(join(out, f), 'utf8'))
    }
  })

  it('bash completes topics, commands and flags', () => {
    const script = join(repoRoot, 'completions', 'engram-ops.bash')
    const complete = (words: string[]) =>
      execFileSync('bash', ['-c', `source '${script}'; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _engram-ops_autocomplete; printf '%s\\n' "\${COMPREPLY[@]}"`], {encoding: 'utf8'})
        .trim()
        .split('\n')
        .filter((w, i, all) => all.indexOf(w) === i) // readline shows each match once
    expect(complete(['engram-ops', 'engine', 'wal'])).toEqual(['waldump'])
    expect(complete(['engram-ops', 'engine', 'waldump', '--st'])).toEqual(['--stats'])
    expect(complete(['engram-ops', 'eng'])).toEqual(['engine'])
  })

  it('fish completes commands and flags with descriptions', (ctx) => {
    if (!has('fish')) return serviceUnavailable(ctx, 'fish', 'not installed (apt-get install fish)')
    const script = join(repoRoot, 'completions', 'engram-ops.fish')
    const complete = (line: string) => execFileSync('fish', ['-c', `source '${script}'; complete -C '${line}'`], {encoding: 'utf8'}).trim().split('\n')
    expect(complete('engram-ops engine ').map((l) => l.split('\t')[0])).toEqual(expect.arrayContaining(['generate', 'stats', 'waldump']))
    expect(complete('engram-ops engine waldump --sta')).toEqual(['--stats\tPrint only the summary, not one line per record.'])
  })

  it('zsh accepts the completion function', (ctx) => {
    if (!has('zsh')) return serviceUnavailable(ctx, 'zsh', 'not installed (apt-get install zsh)')
    const r = spawnSync('zsh', ['-n', join(repoRoot, 'completions', '_engram-ops')], {encoding: 'utf8'})
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(readFileSync(join(repoRoot, 'completions', '_engram-ops'), 'utf8')).toContain('"waldump[Print WAL records one per line, like pg_waldump.]"')
  })

  it('`engram-ops autocomplete bash` prints setup instructions', () => {
    const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'run.js'), 'autocomplete', 'bash'], {
      encoding: 'utf8',
      env: {...process.env, XDG_CACHE_HOME: out, HOME: out},
    })
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('engram-ops autocomplete')
  })
})
