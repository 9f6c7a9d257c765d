/**
 * End to end: the built CLI (`node bin/run.js`, from dist/, which `npm test` builds first) on the
 * golden fixtures and on bad input. Asserts exact output lines, JSON shapes, counts and exit codes
 * (docs/exit-codes.md: 0 ok, 2 usage, 3 damage found, 10 input invalid, 15 not a WAL).
 */
import {existsSync, readFileSync} from 'node:fs'
import {copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {fixturesRoot, type Json, loadExpected, repoRoot, sha256} from '../support/fixtures.js'
import {runCli} from '../support/cli.js'


const cli = runCli

const lines = (text: string) => text.split('\n').filter((l) => l !== '')
/** Errors are rendered as `Error: <message> [CODE]` then `Try this: <one next step>`, one unwrapped line each. */
const errorLines = (stderr: string) => lines(stderr).filter((l) => l.startsWith('Error: ') || l.startsWith('Try this: '))
/** A stack trace has "    at fn (file:line:col)" frames. */
const STACK_FRAME = /^\s+at .+[(:]/m
/** Warnings are "<ISO time> warning: ..." lines on stderr (CI=1: no TTY drawing). */
const warningLines = (stderr: string) => lines(stderr).filter((l) => / warning: /.test(l)).map((l) => l.replace(/^\S+ warning: /, ''))

const F = fixturesRoot
const basic = loadExpected('basic').spaces.default.files[0]
const BASIC_WAL = join(F, 'basic', basic.path)
const BASIC_FILE = 'wal-0000000065edbce0.log'

let tmp: string
beforeAll(async () => {
  if (!existsSync(join(repoRoot, 'dist', 'commands', 'engine', 'waldump.js'))) throw new Error('dist/ is not built: run `npm run build` (npm test does it first)')
  tmp = await mkdtemp(join(tmpdir(), 'engram-cli-'))
})
afterAll(async () => {
  if (tmp) await rm(tmp, {recursive: true, force: true})
})

describe.concurrent('engine waldump on the basic set', {timeout: 120_000}, () => {
  it('prints one line per record with offset, sequence, time, type, size, CRC and id', async () => {
    const r = await cli(['engine', 'waldump', join(F, 'basic')])
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('')
    const out = lines(r.stdout)
    expect(out).toHaveLength(15)
    const recs = out.slice(0, 14)
    expect(recs.every((l) => l.startsWith(`default ${BASIC_FILE} off=`))).toBe(true)
    expect(recs[0]).toBe(`default ${BASIC_FILE} off=0 seq=0 time=2024-03-10T14:00:01.333284242Z type=EpisodeStore size=3369 crc=ok id=ep-0000`)
    expect(recs[3]).toBe(`default ${BASIC_FILE} off=10622 seq=3 time=2024-03-10T14:00:04.708332497Z type=EpisodeStore size=3751 crc=ok id=mem-🧠-記憶-0003`)
    expect(recs[8]).toBe(`default ${BASIC_FILE} off=28919 seq=8 time=2024-03-10T14:00:08.447356065Z type=Checkpoint size=72 crc=ok`)
    expect(recs[12]).toBe(`default ${BASIC_FILE} off=39789 seq=12 time=2024-03-10T14:01:15.552109812Z type=MemoryDelete size=71 crc=ok id=ep-0008`)
    // Every line agrees with expected.json: offset, sequence, size and id.
    const parsed = recs.map((l) => /off=(\d+) seq=(\d+) .* size=(\d+) crc=ok(?: id=(.*))?$/.exec(l)!.slice(1))
    expect(parsed).toEqual(basic.records.map((e: Json) => [String(e.offset), e.sequence, String(e.record_size), e.episode?.id ?? e.delete_id]))
    expect(out[14]).toBe(
      '1 files, 42.4 KiB, 14 records (EpisodeStore 12, Checkpoint 1, MemoryDelete 1), 14 shown; 0 bad payload CRC, 0 undecodable, 0 files ending on damage',
    )
  })

  it('--json: one object per record with exact fields, plus stats', async () => {
    const r = await cli(['engine', 'waldump', join(F, 'basic'), '--json'])
    expect(r.code).toBe(0)
    const doc = JSON.parse(r.stdout)
    expect(Object.keys(doc)).toEqual(['records', 'target', 'kind', 'stats', 'ends', 'skipped', 'warnings'])
    expect(doc.records).toHaveLength(14)
    expect(doc.records[0]).toEqual({
      space: 'default',
      file: BASIC_FILE,
      offset: 0,
      sequence: '0',
      timestampNs: '1710079201333284242',
      entryType: 1,
      type: 'EpisodeStore',
      size: 3369,
      crc: 'ok',
      id: 'ep-0000',
      decode: 'ok',
    })
    expect(doc.records[8]).toEqual({
      space: 'default',
      file: BASIC_FILE,
      offset: 28_919,
      sequence: '8',
      timestampNs: '1710079208447356065',
      entryType: 5,
      type: 'Checkpoint',
      size: 72,
      crc: 'ok',
      decode: 'ok',
    })
    expect(doc.records.map((x: Json) => [x.offset, x.sequence, x.timestampNs, x.entryType, x.size, x.id])).toEqual(
      basic.records.map((e: Json) => [e.offset, e.sequence, e.timestamp_ns, e.entry_type, e.record_size, e.episode?.id ?? e.delete_id]),
    )
    expect(doc.target).toBe(join(F, 'basic'))
    expect(doc.kind).toBe('data-dir')
    expect(doc.stats).toEqual({
      files: 1,
      bytes: 43_439,
      records: 14,
      shown: 14,
      byType: {EpisodeStore: 12, Checkpoint: 1, MemoryDelete: 1},
      badPayloadCrc: 0,
      undecodable: 0,
      damagedFiles: 0,
    })
    expect([doc.ends, doc.skipped, doc.warnings]).toEqual([[], [], []])
  })

  it('--stats prints only the summary; with --json, no records', async () => {
    const text = await cli(['engine', 'waldump', BASIC_WAL, '--stats'])
    expect(text.code).toBe(0)
    expect(lines(text.stdout)).toEqual([
      '1 files, 42.4 KiB, 14 records (EpisodeStore 12, Checkpoint 1, MemoryDelete 1), 14 shown; 0 bad payload CRC, 0 undecodable, 0 files ending on damage',
    ])
    const json = await cli(['engine', 'waldump', BASIC_WAL, '--stats', '--json'])
    expect(json.code).toBe(0)
    const doc = JSON.parse(json.stdout)
    expect(doc).toEqual({
      target: BASIC_WAL,
      kind: 'file',
      stats: {files: 1, bytes: 43_439, records: 14, shown: 14, byType: {EpisodeStore: 12, Checkpoint: 1, MemoryDelete: 1}, badPayloadCrc: 0, undecodable: 0, damagedFiles: 0},
      ends: [],
      skipped: [],
      warnings: [],
    })
  })

  it('--type filters by name or number', async () => {
    const del = await cli(['engine', 'waldump', join(F, 'basic'), '--type', 'MemoryDelete'])
    expect(del.code).toBe(0)
    const out = lines(del.stdout)
    expect(out).toEqual([
      `default ${BASIC_FILE} off=39789 seq=12 time=2024-03-10T14:01:15.552109812Z type=MemoryDelete size=71 crc=ok id=ep-0008`,
      '1 files, 42.4 KiB, 14 records (EpisodeStore 12, Checkpoint 1, MemoryDelete 1), 1 shown; 0 bad payload CRC, 0 undecodable, 0 files ending on damage',
    ])
    const two = await cli(['engine', 'waldump', join(F, 'basic'), '--type', '5', '--type', 'memorydelete', '--json'])
    expect(two.code).toBe(0)
    const doc = JSON.parse(two.stdout)
    expect(doc.records.map((x: Json) => [x.offset, x.type])).toEqual([
      [28_919, 'Checkpoint'],
      [39_789, 'MemoryDelete'],
    ])
    expect(doc.stats.shown).toBe(2)
    const episodes = await cli(['engine', 'waldump', join(F, 'basic'), '--type', 'EpisodeStore', '--stats', '--json'])
    expect(JSON.parse(episodes.stdout).stats.shown).toBe(12)
  })

  it('--from/--to filter by record timestamp, inclusive', async () => {
    const ts = basic.records.map((e: Json) => BigInt(e.timestamp_ns))
    const from = 1_710_079_260_000_000_000n // 2024-03-10T14:01:00Z
    const to = 1_710_079_275_000_000_000n // 2024-03-10T14:01:15Z
    expect(ts.filter((t: bigint) => t >= from && t <= to)).toHaveLength(3)
    const both = await cli(['engine', 'waldump', join(F, 'basic'), '--from', '2024-03-10T14:01:00Z', '--to', '2024-03-10T14:01:15Z'])
    expect(both.code).toBe(0)
    const out = lines(both.stdout)
    expect(out).toHaveLength(4)
    expect(out.slice(0, 3).map((l) => /off=(\d+) seq=(\d+)/.exec(l)!.slice(1))).toEqual([
      ['28991', '9'],
      ['32629', '10'],
      ['36086', '11'],
    ])
    expect(out[3]).toContain('14 records (EpisodeStore 12, Checkpoint 1, MemoryDelete 1), 3 shown;')

    const fromOnly = await cli(['engine', 'waldump', join(F, 'basic'), '--from', '2024-03-10T14:01:00Z', '--json'])
    expect(JSON.parse(fromOnly.stdout).records.map((x: Json) => x.sequence)).toEqual(['9', '10', '11', '12', '13'])
    // Inclusive bounds, at nanosecond precision.
    const exact = await cli(['engine', 'waldump', join(F, 'basic'), '--from', '2024-03-10T14:00:08.427452094Z', '--to', '2024-03-10T14:00:08.447356065Z', '--json'])
    expect(JSON.parse(exact.stdout).records.map((x: Json) => x.sequence)).toEqual(['7', '8'])
    const toOnly = await cli(['engine', 'waldump', join(F, 'basic'), '--to', '2024-03-10', '--stats', '--json'])
    expect(JSON.parse(toOnly.stdout).stats.shown).toBe(0)
  })

  it('--space selects spaces of a data dir', async () => {
    const r = await cli(['engine', 'waldump', join(F, 'multi'), '--space', 'tenant-a', '--json'])
    expect(r.code).toBe(0)
    const doc = JSON.parse(r.stdout)
    expect(doc.records).toHaveLength(5)
    expect(new Set(doc.records.map((x: Json) => x.space))).toEqual(new Set(['tenant-a']))
    expect(doc.stats.byType).toEqual({EpisodeStore: 4, MemoryDelete: 1})
  })
})

describe.concurrent('engine stats', {timeout: 120_000}, () => {
  it('multi: exact memories per space (expected.json live_count), no damage, exit 0', async () => {
    const expected = loadExpected('multi')
    const r = await cli(['engine', 'stats', join(F, 'multi'), '--json'])
    expect(r.code).toBe(0)
    const doc = JSON.parse(r.stdout)
    const memories = Object.fromEntries(doc.spaces.map((s: Json) => [s.space, s.memories]))
    expect(memories).toEqual({'agent_memory-01': 3, default: 10, 'tenant-a': 4})
    expect(memories).toEqual(Object.fromEntries(Object.entries<Json>(expected.spaces).map(([k, v]) => [k, v.replay.state.live_count])))
    for (const s of doc.spaces) {
      const st = expected.spaces[s.space].replay.state
      expect(s.replay).toEqual({
        entriesScanned: st.entries_scanned,
        recovered: st.recovered,
        skipped: st.skipped,
        failed: st.failed,
        episodesStored: st.episodes_stored,
        duplicatesSkipped: st.duplicates_skipped,
        deletesApplied: st.deletes_applied,
        deletesThatRemoved: st.deletes_that_removed,
        ignoredEntryTypes: st.ignored_entry_types,
        liveCount: st.live_count,
      })
      expect(s.files.map((f: Json) => [f.name, f.bytes, f.end])).toEqual(expected.spaces[s.space].files.map((f: Json) => [f.name, f.size, 'eof']))
      expect([s.damage, s.engramOpens]).toEqual([[], true])
    }
    expect(doc.totals).toEqual({spaces: 3, files: 4, bytes: 76_199, records: 24, memories: 17, damage: 0})
    expect([doc.skipped, doc.warnings]).toEqual([[], []])
  })

  it('damaged: exit 3, every finding listed with its file and offset', async () => {
    const json = await cli(['engine', 'stats', join(F, 'damaged'), '--json'])
    expect(json.code).toBe(3)
    const [space] = JSON.parse(json.stdout).spaces
    expect(space.memories).toBe(loadExpected('damaged').spaces.default.replay.state.live_count)
    expect(space.memories).toBe(20)
    expect(space.engramOpens).toBe(false)
    expect(space.damage.map((d: Json) => [d.file, d.offset, d.kind])).toEqual([
      ['wal-0000000065f06373.log', 7099, 'bad_payload_crc'],
      ['wal-0000000065f068ef.log', 10_729, 'bad_header'],
      ['wal-0000000065f06dea.log', 10_577, 'torn_payload'],
      ['wal-0000000065f07a79.log', 10_938, 'partial_header'],
      ['wal-0000000065f0865c.log', 3586, 'undecodable'],
      ['wal-0000000065f0865c.log', 7168, 'undecodable'],
      ['wal-0000000065f0865c.log', 10_701, 'undecodable'],
      ['wal-0000000065f0865c.log', 18_039, 'undecodable'],
      ['wal-0000000065f09376.log', 7157, 'bad_header'],
    ])
    expect(space.damage[2].detail).toBe('payload has 1000 of 3274 bytes; Engram refuses to open the space (truncate to 10577)')

    const text = await cli(['engine', 'stats', join(F, 'damaged')])
    expect(text.code).toBe(3)
    const out = lines(text.stdout)
    expect(out).toContain('default wal-0000000065f068ef.log off=10729 bad_header: bad magic 0xdeadbeeb; 14208 bytes after it are unreadable')
    expect(out).toContain('default wal-0000000065f06dea.log off=10577 torn_payload: payload has 1000 of 3274 bytes; Engram refuses to open the space (truncate to 10577)')
    expect(out.at(-1)).toBe('1 spaces, 6 files, 106 KiB, 28 records, 20 memories, 9 damage findings')
  })

  it('waldump on damaged: exit 3 and the damage is printed where the walk met it', async () => {
    const r = await cli(['engine', 'waldump', join(F, 'damaged')])
    expect(r.code).toBe(3)
    const out = lines(r.stdout)
    expect(out.filter((l) => / (BAD HEADER|TORN PAYLOAD|partial header)/.test(l))).toEqual([
      'default wal-0000000065f068ef.log off=10729 BAD HEADER: bad magic 0xdeadbeeb; the remaining 14208 bytes are unreadable',
      'default wal-0000000065f06dea.log off=10577 TORN PAYLOAD: 1000 of 3274 payload bytes present; Engram will refuse to open this space (truncate to 10577)',
      'default wal-0000000065f07a79.log off=10938 partial header: 37 trailing bytes (a clean end for Engram)',
      'default wal-0000000065f09376.log off=7157 BAD HEADER: header_crc mismatch: stored 0xeba7bf3e, computed 0xcb59be40; the remaining 7229 bytes are unreadable',
    ])
    expect(out).toContain('default wal-0000000065f06373.log off=7099 seq=2 time=2024-03-12T14:15:20.035867155Z type=EpisodeStore size=3559 crc=bad')
    expect(out.filter((l) => / seq=\d+ /.test(l))).toHaveLength(28)

    // --json: the ends carry their header with u64 fields as strings (they were BigInts, which
    // JSON.stringify rejects: "Do not know how to serialize a BigInt").
    const json = await cli(['engine', 'waldump', join(F, 'damaged'), '--json'])
    expect(json.code).toBe(3)
    const all = JSON.parse(json.stdout)
    expect(all.records).toHaveLength(28)
    expect(all.records.filter((x: Json) => x.crc === 'bad').map((x: Json) => [x.file, x.offset])).toEqual([['wal-0000000065f06373.log', 7099]])
    expect(all.records.filter((x: Json) => x.decode === 'error').map((x: Json) => x.offset)).toEqual([3586, 7168, 10_701, 18_039])
    expect(all.ends.map((e: Json) => [e.file, e.end.kind, e.end.offset, e.end.header?.sequence ?? null])).toEqual([
      ['wal-0000000065f068ef.log', 'bad_header', 10_729, '3'],
      ['wal-0000000065f06dea.log', 'torn_payload', 10_577, '3'],
      ['wal-0000000065f07a79.log', 'partial_header', 10_938, null],
      ['wal-0000000065f09376.log', 'bad_header', 7157, '2'],
    ])
    expect(all.ends[0].end).toMatchObject({bytesDiscarded: 14_208, error: 'bad magic 0xdeadbeeb', header: {magic: 0xdeadbeeb, sequence: '3', payloadSize: 3407}})
    expect(all.stats).toEqual({
      files: 6,
      bytes: 108_395,
      records: 28,
      shown: 28,
      byType: {EpisodeStore: 22, MemoryDelete: 1, Unknown: 2, MemoryUpdate: 1, Consolidation: 1, CompactionMarker: 1},
      badPayloadCrc: 1,
      undecodable: 4,
      damagedFiles: 4,
    })

    // One file with a torn tail is damaged, not "not a WAL": exit 3, not 15.
    const torn = await cli(['engine', 'waldump', join(F, 'damaged', 'default', 'wal', 'wal-0000000065f06dea.log'), '--stats', '--json'])
    expect(torn.code).toBe(3)
    const doc = JSON.parse(torn.stdout)
    expect(doc.stats).toMatchObject({files: 1, bytes: 11_641, records: 3, damagedFiles: 1})
    expect(doc.ends).toHaveLength(1)
    expect(doc.ends[0]).toMatchObject({space: 'default', file: 'wal-0000000065f06dea.log', end: {kind: 'torn_payload', offset: 10_577, payloadBytesPresent: 1000, truncateTo: 10_577}})
    expect(out.at(-1)).toBe(
      '6 files, 106 KiB, 28 records (EpisodeStore 22, MemoryDelete 1, Unknown 2, MemoryUpdate 1, Consolidation 1, CompactionMarker 1), 28 shown; 1 bad payload CRC, 4 undecodable, 4 files ending on damage',
    )
  })
})

describe.concurrent('bad input', {timeout: 120_000}, () => {
  it('a missing data dir: exit 10, names the path, no stack trace, nothing created', async () => {
    const missing = join(tmp, 'missing', 'engram-data')
    for (const [args, action] of [
      [['engine', 'stats', missing], 'open data directory'],
      [['engine', 'waldump', missing], 'open'],
      [['engine', 'stats', '--data-dir', missing], 'open data directory'],
    ] as const) {
      const r = await cli([...args])
      expect({args, code: r.code}).toEqual({args, code: 10})
      expect(r.stdout).toBe('')
      expect(lines(r.stderr)).toEqual([
        `Error: ${action}: ${missing} does not exist [PATH_NOT_FOUND]`,
        'Try this: Check the path (or ENGRAM_DATA_DIR) and try again.',
      ])
      expect(r.stderr).not.toMatch(STACK_FRAME)
    }
    expect(existsSync(join(tmp, 'missing'))).toBe(false)

    // ENGRAM_DATA_DIR, and the ./engram-data default, are not created either.
    const viaEnv = await cli(['engine', 'stats'], {env: {ENGRAM_DATA_DIR: missing}})
    expect(viaEnv.code).toBe(10)
    expect(errorLines(viaEnv.stderr)[0]).toBe(`Error: open data directory: ${missing} does not exist [PATH_NOT_FOUND]`)
    // --verbose adds the stack of the error and of its cause.
    const verbose = await cli(['engine', 'stats', missing, '--verbose'])
    expect(verbose.code).toBe(10)
    expect(lines(verbose.stderr).slice(0, 3)).toEqual([
      `Error: open data directory: ${missing} does not exist [PATH_NOT_FOUND]`,
      'Try this: Check the path (or ENGRAM_DATA_DIR) and try again.',
      `EngineError: open data directory: ${missing} does not exist`,
    ])
    expect(verbose.stderr).toMatch(/^\s+at assertDataDir \(.*layout\.js:\d+:\d+\)$/m)
    expect(verbose.stderr).toContain(`Error: ENOENT: no such file or directory, stat '${missing}'`)
    const cwd = join(tmp, 'empty-cwd')
    await mkdir(cwd)
    const byDefault = await cli(['engine', 'stats', '--json'], {cwd})
    expect(byDefault.code).toBe(10)
    expect(JSON.parse(byDefault.stdout)).toEqual({
      error: {
        name: 'EngineError',
        code: 'PATH_NOT_FOUND',
        message: `open data directory: ${join(cwd, 'engram-data')} does not exist`,
        exitCode: 10,
        subject: join(cwd, 'engram-data'),
        suggestions: ['Check the path (or ENGRAM_DATA_DIR) and try again.'],
      },
    })
    expect(await readdir(cwd)).toEqual([])
  })

  it('a text file is not a WAL: exit 15, names the path and offset 0; --verbose adds the stack', async () => {
    const long = join(tmp, 'notes.txt')
    await writeFile(long, 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt\n')
    const r = await cli(['engine', 'waldump', long])
    expect(r.code).toBe(15)
    expect(errorLines(r.stderr)).toEqual([
      `Error: ${long} is not an Engram WAL: bad magic 0x65726f4c at offset 0 [NOT_A_WAL]`,
      'Try this: Pass a wal-<hex>.log file or an Engram data directory.',
    ])
    expect(lines(r.stdout)).toEqual(['- notes.txt off=0 BAD HEADER: bad magic 0x65726f4c; the remaining 90 bytes are unreadable'])
    expect(r.stderr).not.toMatch(STACK_FRAME)

    const short = join(tmp, 'short.txt')
    await writeFile(short, 'hello\n')
    const s = await cli(['engine', 'waldump', short])
    expect(s.code).toBe(15)
    expect(errorLines(s.stderr)[0]).toBe(`Error: ${short} is not an Engram WAL: only 6 bytes at offset 0 [NOT_A_WAL]`)

    const verbose = await cli(['engine', 'waldump', long, '--verbose'])
    expect(verbose.code).toBe(15)
    expect(errorLines(verbose.stderr)[0]).toBe(`Error: ${long} is not an Engram WAL: bad magic 0x65726f4c at offset 0 [NOT_A_WAL]`)
    expect(verbose.stderr).toContain(`IntegrityError: ${long} is not an Engram WAL: bad magic 0x65726f4c at offset 0\n    at `)
    expect(verbose.stderr).toMatch(STACK_FRAME)
    expect(verbose.stderr).toMatch(/at dumpWal \(.*inspect\.js:\d+:\d+\)/)
  })

  // Known bug (src/commands/engine/waldump.ts): in --json mode the `{"records": [` prelude is written
  // before the walk, so when the walk then fails (a FILE that is not a WAL) stdout holds that prelude
  // followed by the error object, which is not JSON. Drop `.fails` once the prelude is written lazily.
  it('a text file is not a WAL, with --json: stdout is exactly the error document', async () => {
    const long = join(tmp, 'notes-json.txt')
    await writeFile(long, 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt\n')
    const r = await cli(['engine', 'waldump', long, '--json'])
    expect(r.code).toBe(15)
    expect(JSON.parse(r.stdout)).toMatchObject({error: {code: 'NOT_A_WAL', exitCode: 15, subject: long}})
  })

  it('invalid space directory names: a warning naming each path, exit 3', async () => {
    const root = join(tmp, 'bad-spaces')
    await mkdir(join(root, 'Bad Space', 'wal'), {recursive: true})
    await mkdir(join(root, 'x'), {recursive: true})
    await mkdir(join(root, 'default', 'wal'), {recursive: true})
    await copyFile(BASIC_WAL, join(root, 'default', 'wal', BASIC_FILE))
    await copyFile(BASIC_WAL, join(root, 'Bad Space', 'wal', BASIC_FILE))
    const reason = 'not a valid memory space id (3-64 characters of a-z, 0-9, _ and -)'

    const text = await cli(['engine', 'stats', root])
    expect(text.code).toBe(3)
    expect(warningLines(text.stderr)).toEqual([`skipped ${join(root, 'Bad Space')}: ${reason}`, `skipped ${join(root, 'x')}: ${reason}`])
    expect(lines(text.stdout).at(-1)).toBe('1 spaces, 1 files, 42.4 KiB, 14 records, 11 memories, 0 damage findings')

    const json = await cli(['engine', 'stats', root, '--json'])
    expect(json.code).toBe(3)
    expect(json.stderr).toBe('')
    const doc = JSON.parse(json.stdout)
    expect(doc.skipped).toEqual([
      {name: 'Bad Space', path: join(root, 'Bad Space'), reason},
      {name: 'x', path: join(root, 'x'), reason},
    ])
    expect(doc.warnings).toEqual([`skipped ${join(root, 'Bad Space')}: ${reason}`, `skipped ${join(root, 'x')}: ${reason}`])
    expect(doc.spaces.map((s: Json) => [s.space, s.memories])).toEqual([['default', 11]])
    expect(doc.totals).toEqual({spaces: 1, files: 1, bytes: 43_439, records: 14, memories: 11, damage: 0})

    const dump = await cli(['engine', 'waldump', root, '--stats'])
    expect(dump.code).toBe(3)
    expect(warningLines(dump.stderr)).toHaveLength(2)
  })

  it('a WAL of random garbage in a valid space: damage at offset 0, exit 3', async () => {
    const root = join(tmp, 'garbage')
    const walDir = join(root, 'default', 'wal')
    await mkdir(walDir, {recursive: true})
    const garbage = Buffer.alloc(5000)
    let x = 12_345
    for (let i = 0; i < garbage.length; i++) {
      x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0
      garbage[i] = x >>> 24
    }
    garbage.writeUInt32LE(0x33221100, 0)
    await writeFile(join(walDir, 'wal-0000000000000001.log'), garbage)

    const stats = await cli(['engine', 'stats', root, '--json'])
    expect(stats.code).toBe(3)
    const [space] = JSON.parse(stats.stdout).spaces
    expect(space.damage).toEqual([
      {file: 'wal-0000000000000001.log', offset: 0, kind: 'bad_header', detail: 'bad magic 0x33221100; 5000 bytes after it are unreadable'},
    ])
    expect([space.records, space.memories, space.engramOpens]).toEqual([0, 0, true])

    const dump = await cli(['engine', 'waldump', root])
    expect(dump.code).toBe(3)
    expect(lines(dump.stdout)).toEqual([
      'default wal-0000000000000001.log off=0 BAD HEADER: bad magic 0x33221100; the remaining 5000 bytes are unreadable',
      '1 files, 4.88 KiB, 0 records (none), 0 shown; 0 bad payload CRC, 0 undecodable, 1 files ending on damage',
    ])
    // Damage is a finding, not an error: no stack even with --verbose.
    const verbose = await cli(['engine', 'waldump', root, '--verbose'])
    expect(verbose.code).toBe(3)
    expect(verbose.stderr).not.toMatch(STACK_FRAME)
    // Given as a FILE, a WAL that is garbage from its first byte is not a WAL at all: exit 15.
    const file = join(walDir, 'wal-0000000000000001.log')
    const asFile = await cli(['engine', 'waldump', file])
    expect(asFile.code).toBe(15)
    expect(errorLines(asFile.stderr)).toEqual([
      `Error: ${file} is not an Engram WAL: bad magic 0x33221100 at offset 0 [NOT_A_WAL]`,
      'Try this: The file is damaged from its first byte; restore it from a backup.',
    ])

    // Garbage after intact records: the records count, the damage is at the first garbage byte.
    await writeFile(join(walDir, 'wal-0000000000000001.log'), Buffer.concat([readFileSync(BASIC_WAL), garbage.subarray(0, 3000)]))
    const tail = await cli(['engine', 'stats', root, '--json'])
    expect(tail.code).toBe(3)
    const [t] = JSON.parse(tail.stdout).spaces
    expect(t.damage).toEqual([{file: 'wal-0000000000000001.log', offset: 43_439, kind: 'bad_header', detail: 'bad magic 0x33221100; 3000 bytes after it are unreadable'}])
    expect([t.records, t.memories]).toEqual([14, 11])
  })

  it('an unknown --space: exit 2, naming the space', async () => {
    for (const cmd of ['stats', 'waldump']) {
      const r = await cli(['engine', cmd, join(F, 'multi'), '--space', 'nope'])
      expect({cmd, code: r.code}).toEqual({cmd, code: 2})
      expect(r.stdout).toBe('')
      expect(errorLines(r.stderr)[0]).toBe(`Error: no memory space "nope" in ${join(F, 'multi')} [SPACE_NOT_FOUND]`)
      expect(r.stderr).not.toMatch(STACK_FRAME)
    }
  })

  it('an unknown flag, a bad --type or a bad --from: exit 2', async () => {
    const flag = await cli(['engine', 'stats', join(F, 'basic'), '--bogus'])
    expect(flag.code).toBe(2)
    expect(flag.stdout).toBe('')
    expect(lines(flag.stderr)[0]).toBe('Error: Nonexistent flag: --bogus')
    expect(flag.stderr).not.toMatch(STACK_FRAME)
    const type = await cli(['engine', 'waldump', join(F, 'basic'), '--type', 'Bogus'])
    expect(type.code).toBe(2)
    expect(errorLines(type.stderr)[0]).toBe('Error: unknown entry type "Bogus" [BAD_ENTRY_TYPE]')
    const time = await cli(['engine', 'waldump', join(F, 'basic'), '--from', 'yesterday'])
    expect(time.code).toBe(2)
    expect(time.stderr).toContain('not an RFC 3339 time: "yesterday"')
    expect(time.stderr).toContain('[BAD_TIME]')
  })
})

describe.concurrent('engine generate', {timeout: 120_000}, () => {
  const START = '2026-01-01T00:00:00Z'
  const WAL = `wal-${(1_767_225_600).toString(16).padStart(16, '0')}.log`
  const flags = ['--spaces', '2', '--episodes', '150', '--seed', '7', '--start', START, '--window', '1h']

  async function digests(root: string): Promise<Record<string, string>> {
    const out: Record<string, string> = {}
    for (const space of await readdir(root)) {
      for (const f of await readdir(join(root, space, 'wal'))) out[`${space}/${f}`] = sha256(await readFile(join(root, space, 'wal', f)))
    }
    return out
  }

  it('is deterministic: the same flags give byte-identical files; another seed does not', async () => {
    const a = join(tmp, 'gen-a')
    const b = join(tmp, 'gen-b')
    const c = join(tmp, 'gen-c')
    const ra = await cli(['engine', 'generate', '--data-dir', a, ...flags, '--json'])
    const rb = await cli(['engine', 'generate', '--data-dir', b, ...flags, '--json'])
    const rc = await cli(['engine', 'generate', '--data-dir', c, ...flags.slice(0, 4), '--seed', '8', ...flags.slice(6)])
    // Without fsyncs the bytes are the same (this shows both spellings are taken, not that fsyncs
    // were skipped); --no-fsync is the flag's first name, kept as an alias.
    const d = join(tmp, 'gen-d')
    const e = join(tmp, 'gen-e')
    const rd = await cli(['engine', 'generate', '--data-dir', d, ...flags, '--no-fsync'])
    const re = await cli(['engine', 'generate', '--data-dir', e, ...flags, '--no-sync'])
    expect([ra.code, rb.code, rc.code, rd.code, re.code]).toEqual([0, 0, 0, 0, 0])
    const ja = JSON.parse(ra.stdout)
    expect(ja.episodes).toBe(300)
    expect(ja.spaces.map((s: Json) => [s.space, s.file, s.episodes, s.firstSequence, s.lastSequence])).toEqual([
      ['default', WAL, 150, '0', '149'],
      ['tenant-001', WAL, 150, '0', '149'],
    ])
    const {durationMs: _a, ...restA} = ja
    const {durationMs: _b, ...restB} = JSON.parse(rb.stdout)
    expect(restA).toEqual(restB)

    const da = await digests(a)
    expect(Object.keys(da)).toEqual([`default/${WAL}`, `tenant-001/${WAL}`])
    expect(await digests(b)).toEqual(da)
    expect(await digests(d)).toEqual(da)
    expect(await digests(e)).toEqual(da)
    const dc = await digests(c)
    expect(Object.keys(dc)).toEqual(Object.keys(da))
    expect(dc[`default/${WAL}`]).not.toBe(da[`default/${WAL}`])
    // Engram's layout, and the lock is gone.
    expect((await readdir(a)).sort()).toEqual(['default', 'tenant-001'])
    expect((await readdir(join(a, 'default'))).sort()).toEqual(['cold', 'hot', 'wal', 'warm'])

    // The engine accepts what it wrote: no damage, one memory per episode.
    const stats = await cli(['engine', 'stats', a, '--json'])
    expect(stats.code).toBe(0)
    const doc = JSON.parse(stats.stdout)
    expect(doc.spaces.map((s: Json) => [s.space, s.records, s.memories, s.damage.length, s.engramOpens])).toEqual([
      ['default', 150, 150, 0, true],
      ['tenant-001', 150, 150, 0, true],
    ])
    expect(doc.totals.memories).toBe(300)
    expect(doc.totals.damage).toBe(0)
    expect(doc.totals.bytes).toBe(ja.bytes)
  })

  it('--append continues the newest file and its sequence; the result reads back contiguous and clean', async () => {
    const root = join(tmp, 'gen-append')
    const first = await cli(['engine', 'generate', '--data-dir', root, ...flags, '--json'])
    expect(first.code).toBe(0)
    const before = JSON.parse(first.stdout)
    const appended = await cli(['engine', 'generate', '--data-dir', root, '--spaces', '2', '--episodes', '100', '--seed', '7', '--start', '2026-01-01T01:00:00Z', '--window', '1h', '--append', '--json'])
    expect(appended.code).toBe(0)
    const after = JSON.parse(appended.stdout)
    expect(after.spaces.map((s: Json) => [s.space, s.file, s.episodes, s.firstSequence, s.lastSequence])).toEqual([
      ['default', WAL, 100, '150', '249'],
      ['tenant-001', WAL, 100, '150', '249'],
    ])

    const dump = await cli(['engine', 'waldump', root, '--json'])
    expect(dump.code).toBe(0)
    const doc = JSON.parse(dump.stdout)
    expect(doc.records).toHaveLength(500)
    for (const space of ['default', 'tenant-001']) {
      const recs = doc.records.filter((r: Json) => r.space === space)
      expect(recs).toHaveLength(250)
      expect(new Set(recs.map((r: Json) => r.file))).toEqual(new Set([WAL]))
      // Sequences 0..249 in file order, offsets back to back, ids all distinct.
      expect(recs.map((r: Json) => r.sequence)).toEqual(Array.from({length: 250}, (_, i) => String(i)))
      let offset = 0
      for (const r of recs) {
        expect(r.offset).toBe(offset)
        offset += r.size
      }
      const firstBytes = before.spaces.find((s: Json) => s.space === space).bytes
      expect(recs[150].offset).toBe(firstBytes)
      expect(offset).toBe(firstBytes + after.spaces.find((s: Json) => s.space === space).bytes)
      expect(new Set(recs.map((r: Json) => r.id)).size).toBe(250)
      expect(recs.every((r: Json) => r.crc === 'ok' && r.decode === 'ok' && r.type === 'EpisodeStore')).toBe(true)
    }
    expect(doc.stats).toMatchObject({files: 2, records: 500, badPayloadCrc: 0, undecodable: 0, damagedFiles: 0})

    const stats = await cli(['engine', 'stats', root, '--json'])
    expect(stats.code).toBe(0)
    const st = JSON.parse(stats.stdout)
    expect(st.spaces.map((s: Json) => [s.space, s.files.length, s.memories, s.damage.length])).toEqual([
      ['default', 1, 250, 0],
      ['tenant-001', 1, 250, 0],
    ])
  })
})
