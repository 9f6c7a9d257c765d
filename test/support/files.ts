import {readdir, readFile} from 'node:fs/promises'
import {join, relative, sep} from 'node:path'

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
