/**
 * ArchiveWriter: one set of frame buffers and zstd streams for every archive of a backup. Archives
 * written by the same writer, one after another or at once, are each a standard .tar.zst holding
 * exactly their own entries; after a failed archive the writer refuses further work instead of reusing a compressor that
 * may be left inside a frame.
 */
import {execFileSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {mkdtemp, open, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {ArchiveWriter, type ArchiveEntry} from '../../src/lib/backup/archive.js'
import {FsBackend} from '../../src/lib/repo/backends/fs.js'
import {blake3, sha256} from '../support/fixtures.js'

let tmp: string
const files: Record<string, Buffer> = {}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'engram-archive-writer-'))
  // Sizes around the 2 MiB frame: less than a frame, exactly one, and several with a remainder.
  for (const [name, size] of [['a', 1000], ['b', 2 * 1024 * 1024], ['c', 5 * 1024 * 1024 + 77]] as const) {
    const data = Buffer.alloc(size)
    for (let i = 0; i < size; i++) data[i] = (i * 2654435761) >>> 24
    files[name] = data
    await writeFile(join(tmp, name), data)
  }
})

afterAll(async () => {
  await rm(tmp, {recursive: true, force: true})
})

async function entry(name: string): Promise<ArchiveEntry> {
  return {path: `s/wal/wal-${name}.log`, handle: await open(join(tmp, name), 'r'), offset: 0, length: files[name].length, mtime: new Date(0)}
}

describe('ArchiveWriter', () => {
  it('writes several archives with one set of streams: each lists and extracts exactly its entries', async () => {
    const repo = join(tmp, 'repo')
    const backend = new FsBackend(repo)
    const writer = new ArchiveWriter({codec: 'zstd', level: 1})
    const groups = [['c'], ['a', 'b'], ['b', 'c', 'a']]
    try {
      for (const [i, names] of groups.entries()) {
        const entries = await Promise.all(names.map(entry))
        const w = await writer.write(backend, `x/${i}.tar.zst`, entries, 'blake3', () => {})
        for (const e of entries) await e.handle.close()
        const path = join(repo, 'x', `${i}.tar.zst`)
        const listed = execFileSync('sh', ['-c', `zstd -dc '${path}' | tar -t`]).toString().trim().split('\n')
        expect(listed).toEqual(names.map((n) => `s/wal/wal-${n}.log`))
        const out = join(tmp, `out${i}`)
        execFileSync('sh', ['-c', `mkdir -p '${out}' && zstd -dc '${path}' | tar -x -C '${out}'`])
        for (const n of names) expect(sha256(readFileSync(join(out, 's', 'wal', `wal-${n}.log`)))).toBe(sha256(files[n]))
        expect(w.hash).toBe(blake3(readFileSync(path)))
      }
    } finally {
      writer.close()
    }
  })

  it('writes archives concurrently with shared streams and buffers: each holds exactly its own entries', async () => {
    const repo = join(tmp, 'repo-concurrent')
    const backend = new FsBackend(repo)
    const groups = [['c', 'a'], ['b'], ['a', 'c', 'b'], ['c']]
    // Fewer archive slots than archives at once: frames wait for buffers and compressors.
    const writer = new ArchiveWriter({codec: 'zstd', level: 1}, 2)
    const opened: ArchiveEntry[][] = await Promise.all(groups.map((names) => Promise.all(names.map(entry))))
    try {
      const written = await Promise.all(opened.map((entries, i) => writer.write(backend, `y/${i}.tar.zst`, entries, 'sha256', () => {})))
      for (const [i, names] of groups.entries()) {
        const path = join(repo, 'y', `${i}.tar.zst`)
        expect(written[i]).toMatchObject({key: `y/${i}.tar.zst`, hash: sha256(readFileSync(path)), size: readFileSync(path).length})
        const out = join(tmp, `concurrent${i}`)
        execFileSync('sh', ['-c', `mkdir -p '${out}' && zstd -dc '${path}' | tar -x -C '${out}'`])
        const listed = execFileSync('sh', ['-c', `zstd -dc '${path}' | tar -t`]).toString().trim().split('\n')
        expect(listed).toEqual(names.map((n) => `s/wal/wal-${n}.log`))
        for (const n of names) expect(sha256(readFileSync(join(out, 's', 'wal', `wal-${n}.log`)))).toBe(sha256(files[n]))
      }
    } finally {
      writer.close()
      for (const e of opened.flat()) await e.handle.close()
    }
  })

  it('after a failed archive it refuses the next one, naming the key', async () => {
    const blocker = join(tmp, 'blocker')
    await writeFile(blocker, 'a file where the repository needs a directory')
    const writer = new ArchiveWriter({codec: 'zstd', level: 1})
    const first = await entry('c')
    await expect(writer.write(new FsBackend(blocker), 'x/0.tar.zst', [first], 'blake3', () => {})).rejects.toThrow()
    await first.handle.close()
    const second = await entry('a')
    await expect(writer.write(new FsBackend(join(tmp, 'repo2')), 'x/1.tar.zst', [second], 'blake3', () => {})).rejects.toThrow('x/1.tar.zst: the archive writer was closed (after a failed archive its buffers are not reused)')
    await second.handle.close()
  })
})
