import {open} from 'node:fs/promises'

/**
 * fsync of a directory: makes the names created, renamed or removed in it durable. An fsync of a file
 * covers its bytes, not the directory entry that names it.
 */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}
