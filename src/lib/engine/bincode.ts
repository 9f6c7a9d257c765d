/**
 * bincode 1.3 with the free-function defaults Engram uses: fixed-width little-endian integers,
 * u64 lengths for strings, sequences and maps, u8 tags for Option, u32 variant indexes for enums,
 * no size limit, trailing bytes allowed.
 */
import {isUtf8} from 'node:buffer'

export class DecodeError extends Error {}

export class BincodeReader {
  offset: number
  constructor(
    private readonly buf: Buffer,
    start = 0,
    private readonly end = buf.length,
  ) {
    this.offset = start
  }

  private need(n: number): number {
    const at = this.offset
    if (n > this.end - at) throw new DecodeError('io error: unexpected end of payload')
    this.offset = at + n
    return at
  }

  u8(): number {
    return this.buf[this.need(1)]
  }

  u32(): number {
    return this.buf.readUInt32LE(this.need(4))
  }

  u64(): bigint {
    return this.buf.readBigUInt64LE(this.need(8))
  }

  /** A u64 length or count that must fit what is left of the payload (`unit` bytes per element). */
  length(unit: number): number {
    const at = this.need(8)
    // Read as two u32 halves: cheaper than a BigInt, and any high bits make it too long anyway.
    const low = this.buf.readUInt32LE(at)
    const high = this.buf.readUInt32LE(at + 4)
    if (high !== 0 || low * unit > this.end - this.offset) throw new DecodeError('io error: length past end of payload')
    return low
  }

  f32(): number {
    return this.buf.readFloatLE(this.need(4))
  }

  str(): string {
    const n = this.length(1)
    const at = this.need(n)
    // Rust's String deserialisation rejects invalid UTF-8; Buffer#toString would replace it silently.
    if (!isUtf8(this.buf.subarray(at, at + n))) throw new DecodeError(`invalid utf-8 in string at payload offset ${at}`)
    return this.buf.toString('utf8', at, at + n)
  }

  option<T>(read: () => T): T | null {
    const tag = this.u8()
    if (tag === 0) return null
    if (tag === 1) return read()
    throw new DecodeError(`invalid Option tag ${tag}`)
  }

  /** A `Vec<f32>`/`[f32; N]` as raw little-endian bytes, copied out. */
  f32Array(): Float32Array {
    const n = this.length(4)
    const at = this.need(n * 4)
    const start = this.buf.byteOffset + at
    return new Float32Array(this.buf.buffer.slice(start, start + n * 4))
  }

  stringMap(): Array<[string, string]> {
    const n = this.length(16)
    const out: Array<[string, string]> = []
    for (let i = 0; i < n; i++) out.push([this.str(), this.str()])
    return out
  }

  get remaining(): number {
    return this.end - this.offset
  }
}

export class BincodeWriter {
  private buf: Buffer
  offset = 0
  constructor(initial = 4096) {
    this.buf = Buffer.allocUnsafe(initial)
  }

  private reserve(n: number): number {
    if (this.offset + n > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.offset + n))
      this.buf.copy(next, 0, 0, this.offset)
      this.buf = next
    }
    const at = this.offset
    this.offset += n
    return at
  }

  // Every write reserves first: reserve() may replace this.buf, and `this.buf.method(..., this.reserve(n))`
  // would evaluate the old buffer before the call and write into it.
  u8(v: number): void {
    const at = this.reserve(1)
    this.buf[at] = v
  }

  u32(v: number): void {
    const at = this.reserve(4)
    this.buf.writeUInt32LE(v >>> 0, at)
  }

  u64(v: bigint | number): void {
    const at = this.reserve(8)
    this.buf.writeBigUInt64LE(BigInt(v), at)
  }

  f32(v: number): void {
    const at = this.reserve(4)
    this.buf.writeFloatLE(v, at)
  }

  str(v: string): void {
    const n = Buffer.byteLength(v, 'utf8')
    this.u64(n)
    const at = this.reserve(n)
    this.buf.write(v, at, n, 'utf8')
  }

  option<T>(v: T | null | undefined, write: (value: T) => void): void {
    if (v === null || v === undefined) {
      this.u8(0)
    } else {
      this.u8(1)
      write(v)
    }
  }

  f32Array(v: Float32Array): void {
    this.u64(v.length)
    const at = this.reserve(v.length * 4)
    this.buf.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), at)
  }

  stringMap(v: ReadonlyArray<readonly [string, string]>): void {
    this.u64(v.length)
    for (const [k, val] of v) {
      this.str(k)
      this.str(val)
    }
  }

  bytes(v: Uint8Array): void {
    const at = this.reserve(v.length)
    this.buf.set(v, at)
  }

  /** The written bytes (a view; copy it if the writer is reused). */
  result(): Buffer {
    return this.buf.subarray(0, this.offset)
  }
}
