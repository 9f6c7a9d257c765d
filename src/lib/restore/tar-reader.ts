/**
 * A pull-based tar reader for restore and verification. We write archives with the `tar` package's
 * Header (standard ustar), but read them with this: an async generator that yields one entry at a
 * time and hands out its bytes only as the consumer asks, so backpressure reaches the decompressor and
 * the object store. (node-tar's Parser pushes entry data as it arrives; combined with an async,
 * per-entry consumer it dropped data in our tests.) It reads only what we write: plain-file ustar
 * entries. Anything else is returned with its type so the caller can refuse it; a header whose
 * checksum fails or an archive that ends early is an error.
 *
 * An entry's body hands out views of the source's chunks, valid until the consumer asks for more: a
 * source may free a chunk then (zstdUnframes does), so a consumer that keeps bytes must copy them.
 */
export interface TarEntry {
  path: string
  /** ustar typeflag: '0' (or '\0') is a regular file; '1' hard link, '2' symlink, '5' directory, 'x'/'g' pax, 'L' GNU long name… */
  type: string
  size: number
  mode: number
  body: AsyncIterable<Buffer>
}

export class TarFormatError extends Error {}

class ChunkReader {
  private buffered: Buffer[] = []
  private length = 0
  private done = false
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async fill(n: number): Promise<boolean> {
    while (this.length < n && !this.done) {
      // The source may free a chunk once the next one is asked for (zstdUnframes does): what is left
      // of it (less than a block, as only headers and padding are gathered across chunks) is copied.
      if (this.length > 0) this.buffered = [Buffer.concat(this.buffered, this.length)]
      const r = await this.it.next()
      if (r.done) this.done = true
      else if (r.value.length > 0) {
        this.buffered.push(r.value)
        this.length += r.value.length
      }
    }
    return this.length >= n
  }

  /** Exactly n bytes, or null at the end of input (an error if the input ends inside them). */
  async exact(n: number): Promise<Buffer | null> {
    if (!(await this.fill(n))) {
      if (this.length === 0) return null
      throw new TarFormatError(`archive ends ${this.length} bytes into a ${n}-byte block`)
    }
    return this.take(n)
  }

  /** Up to n bytes (at least 1), or throws at the end of input. */
  async some(n: number): Promise<Buffer> {
    if (!(await this.fill(1))) throw new TarFormatError('archive ends inside an entry')
    return this.take(Math.min(n, this.buffered[0].length))
  }

  private take(n: number): Buffer {
    let out: Buffer
    if (this.buffered[0].length >= n) {
      out = this.buffered[0].subarray(0, n)
      this.buffered[0] = this.buffered[0].subarray(n)
      if (this.buffered[0].length === 0) this.buffered.shift()
    } else {
      const all = Buffer.concat(this.buffered)
      out = all.subarray(0, n)
      this.buffered = all.length > n ? [all.subarray(n)] : []
    }
    this.length -= n
    return out
  }
}

function field(h: Buffer, start: number, len: number): string {
  const raw = h.subarray(start, start + len)
  const nul = raw.indexOf(0)
  return raw.subarray(0, nul < 0 ? len : nul).toString('utf8')
}

function octal(h: Buffer, start: number, len: number): number {
  if (h[start] & 0x80) {
    // base-256 (GNU), used for sizes of 8 GiB and more
    let v = 0
    for (let i = start + 1; i < start + len; i++) v = v * 256 + h[i]
    return v
  }
  const text = field(h, start, len).trim()
  if (!/^[0-7]*$/.test(text)) throw new TarFormatError(`bad numeric field ${JSON.stringify(text)}`)
  return text === '' ? 0 : Number.parseInt(text, 8)
}

export async function* readTar(source: AsyncIterable<Buffer>): AsyncGenerator<TarEntry> {
  const r = new ChunkReader(source[Symbol.asyncIterator]())
  for (;;) {
    const h = await r.exact(512)
    if (!h) throw new TarFormatError('archive ends without an end-of-archive marker')
    if (h.every((b) => b === 0)) return
    let sum = 0
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i]
    if (sum !== octal(h, 148, 8)) throw new TarFormatError('tar header checksum mismatch')
    const name = field(h, 0, 100)
    const prefix = field(h, 257, 6) === 'ustar' ? field(h, 345, 155) : ''
    const size = octal(h, 124, 12)
    const type = String.fromCharCode(h[156] || 48)
    let remaining = size
    const body = (async function* () {
      while (remaining > 0) {
        const c = await r.some(Math.min(remaining, 8 * 1024 * 1024))
        remaining -= c.length
        yield c
      }
    })()
    yield {path: prefix ? `${prefix}/${name}` : name, type, size, mode: octal(h, 100, 8), body}
    // Skip whatever the consumer did not read, then the padding to the next block.
    for await (const _ of body) {
      // drained
    }
    const pad = (512 - (size % 512)) % 512
    if (pad && !(await r.exact(pad))) throw new TarFormatError('archive ends inside padding')
  }
}
