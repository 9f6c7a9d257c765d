import {readdir} from 'node:fs/promises'
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
