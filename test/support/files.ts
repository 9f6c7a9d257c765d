import {mkdtemp, readdir, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, relative, sep} from 'node:path'

import {afterAll} from 'vitest'

/**
 * Makes temporary directories `<prefix>-<name>-XXXXXX` for a test file, all removed after its tests
 * (call it at the top level of the file: it registers the afterAll).
 */
export function scratchDirs(prefix: string): (name: string) => Promise<string> {
  const made: string[] = []
  afterAll(async () => {
    while (made.length > 0) await rm(made.pop()!, {recursive: true, force: true})
  })
  return async (name) => {
    const dir = await mkdtemp(join(tmpdir(), `${prefix}-${name}-`))
    made.push(dir)
    return dir
  }
}

/** Every file under `dir`, as '/'-separated paths relative to it, sorted. */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = []
  const walk = async (d: string) => {
    for (const e of await readdir(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      if (e.isDirectory()) await walk(p)
      else out.push(relative(dir, p).split(sep).join('/'))
    }
  }
  await walk(dir)
  return out.sort()
}

/** Every file under `dir`: relative path → its bytes. */
export async function fileContents(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>()
  for (const f of await filesUnder(dir)) out.set(f, await readFile(join(dir, ...f.split('/'))))
  return out
}
