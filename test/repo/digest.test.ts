/**
 * The hash functions a manifest can name: BLAKE3 and sha256 give the published test vectors, in
 * one piece and fed in several updates.
 */
import {describe, expect, it} from 'vitest'

import {createHasher, DEFAULT_HASH_ALGORITHM, hashOf} from '../../src/lib/digest.js'

// BLAKE3: the reference implementation's outputs for "" and "abc"; sha256: FIPS 180-2's for "abc".
const VECTORS = {
  blake3: {'': 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262', abc: '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85'},
  sha256: {'': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', abc: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'},
} as const

/** The BLAKE3 reference's test inputs: bytes 0, 1, ..., 250, 0, 1, ... */
const pattern = (n: number) => Uint8Array.from({length: n}, (_, i) => i % 251)
// From the BLAKE3 reference's test_vectors.json (the first 32 bytes of "hash"): more than one chunk
// (1 KiB) and many chunks, so the tree mode is exercised, not only the single-chunk path.
const LONG_BLAKE3 = {
  1025: 'd00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444',
  102400: 'bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085',
} as const

describe('digest', () => {
  it('BLAKE3 of multi-chunk inputs matches the reference vectors, whole and fed in uneven pieces', () => {
    for (const [length, hex] of Object.entries(LONG_BLAKE3)) {
      const data = pattern(Number(length))
      expect(hashOf('blake3', data)).toBe(hex)
      const h = createHasher('blake3')
      for (let at = 0; at < data.length; at += 1000) h.update(data.subarray(at, at + 1000))
      expect(h.digest()).toBe(hex)
    }
  })

  it('an unknown algorithm is refused', () => {
    expect(() => createHasher('md5' as never)).toThrow('unknown hash algorithm "md5"')
  })

  it('BLAKE3 is the default', () => {
    expect(DEFAULT_HASH_ALGORITHM).toBe('blake3')
  })

  for (const [algorithm, vectors] of Object.entries(VECTORS) as Array<[keyof typeof VECTORS, Record<string, string>]>) {
    it(`${algorithm}: published test vectors, whole and in pieces`, () => {
      for (const [text, hex] of Object.entries(vectors)) {
        expect(hashOf(algorithm, Buffer.from(text))).toBe(hex)
        const h = createHasher(algorithm)
        for (const c of text) h.update(Buffer.from(c))
        expect(h.digest()).toBe(hex)
      }
    })
  }
})
