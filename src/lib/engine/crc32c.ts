/**
 * CRC-32C (Castagnoli), the checksum of every WAL header and payload.
 *
 * Payloads go to @node-rs/crc32, which computes it with the SSE4.2/ARMv8 CRC instructions through
 * N-API (no node-gyp, ABI-stable across Node versions): 3.9 GB/s on large buffers on the 2-core bench
 * machine, which is what lets a full-CRC scan beat sha256sum (docs/benchmarks.md). Headers (52 bytes)
 * go to a table-driven loop in JavaScript: for so few bytes a call into native code costs 3-5x more
 * than the arithmetic (30 ms against 100-160 ms per 311,000 headers, two native calls each).
 */
import {requireNative} from '../native.js'

const {crc32c: nativeCrc32c} = requireNative<{crc32c(data: Buffer, initial?: number): number}>('@node-rs/crc32')

/** CRC-32C of `data`, continuing from `initial` (0 to start). Returns an unsigned 32-bit value. */
export function crc32c(data: Uint8Array, initial = 0): number {
  return nativeCrc32c(data as Buffer, initial) >>> 0
}

/** CRC-32C lookup table (reflected polynomial 0x82F63B78). */
const TABLE = new Int32Array(256)
for (let n = 0; n < 256; n++) {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
  TABLE[n] = c
}

/** CRC-32C of data[start, end) in JavaScript, continuing from `initial` (0 to start): for a few dozen bytes. */
export function crc32cRange(data: Uint8Array, start: number, end: number, initial = 0): number {
  let c = ~initial
  for (let i = start; i < end; i++) c = TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8)
  return ~c >>> 0
}
