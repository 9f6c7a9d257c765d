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

describe('digest', () => {
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
