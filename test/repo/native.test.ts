/**
 * The napi-rs addons load from their platform package where one loads, and from the generic loader
 * otherwise, with the same functions either way.
 */
import {execFile} from 'node:child_process'
import {createRequire} from 'node:module'
import {promisify} from 'node:util'
import {describe, expect, it} from 'vitest'

import {platformPackages, requireNative} from '../../src/lib/native.js'

const require = createRequire(import.meta.url)
const run = promisify(execFile)

describe('native addons', () => {
  it('names the platform package as napi-rs does, by the C library on Linux', () => {
    const gnu = () => 'gnu' as const
    const musl = () => 'musl' as const
    expect(platformPackages('@node-rs/crc32', 'linux', 'x64', gnu)).toEqual(['@node-rs/crc32-linux-x64-gnu'])
    expect(platformPackages('@node-rs/crc32', 'linux', 'x64', musl)).toEqual(['@node-rs/crc32-linux-x64-musl'])
    expect(platformPackages('@node-rs/crc32', 'linux', 'arm64', gnu)).toEqual(['@node-rs/crc32-linux-arm64-gnu'])
    expect(platformPackages('@node-rs/crc32', 'linux', 'arm', gnu)).toEqual(['@node-rs/crc32-linux-arm-gnueabihf'])
    expect(platformPackages('@node-rs/crc32', 'linux', 'x64', () => null)).toEqual([])
    expect(platformPackages('@napi-rs/blake-hash', 'darwin', 'arm64')).toEqual(['@napi-rs/blake-hash-darwin-arm64'])
    expect(platformPackages('@napi-rs/blake-hash', 'win32', 'x64')).toEqual(['@napi-rs/blake-hash-win32-x64-msvc'])
    expect(platformPackages('@napi-rs/blake-hash', 'aix', 'ppc64')).toEqual([])
    // The loaders' own override of where the binary is: left to them.
    process.env.NAPI_RS_NATIVE_LIBRARY_PATH = '/opt/custom/crc32.node'
    try {
      expect(platformPackages('@node-rs/crc32', 'linux', 'x64', gnu)).toEqual([])
    } finally {
      delete process.env.NAPI_RS_NATIVE_LIBRARY_PATH
    }
  })

  // glibc: the machines this project's CI runs on (an Alpine machine would load the -musl packages).
  const glibc = process.platform === 'linux' && Boolean((process.report.getReport() as {header?: {glibcVersionRuntime?: string}}).header?.glibcVersionRuntime)
  it.runIf(glibc && process.arch === 'x64')('loads the platform packages themselves on linux-x64 (this machine), never the generic loaders', async () => {
    // In a process of its own (the built module), so that the modules it loaded are all it loaded.
    // Loaded through the generic loaders, the list would also hold their index.js files.
    const native = new URL('../../dist/lib/native.js', import.meta.url).href
    const script = `const {requireNative} = await import(${JSON.stringify(native)})
      requireNative('@node-rs/crc32'); requireNative('@napi-rs/blake-hash')
      const {createRequire} = await import('node:module')
      console.log(JSON.stringify(Object.keys(createRequire(${JSON.stringify(native)}).cache).map((k) => k.split('node_modules/').pop())))`
    const {stdout} = await run(process.execPath, ['--input-type=module', '-e', script])
    expect(JSON.parse(stdout)).toEqual(['@node-rs/crc32-linux-x64-gnu/crc32.linux-x64-gnu.node', '@napi-rs/blake-hash-linux-x64-gnu/blake.linux-x64-gnu.node'])
  })

  it('falls back to the generic loader when no platform package loads, with the same functions', () => {
    const direct = requireNative<{crc32c(data: Buffer, initial?: number): number}>('@node-rs/crc32')
    const generic = requireNative<{crc32c(data: Buffer, initial?: number): number}>('@node-rs/crc32', ['@node-rs/crc32-no-such-platform'])
    expect(generic).toBe(require('@node-rs/crc32'))
    // CRC-32C of "123456789" is e3069283 (the check value of the Castagnoli polynomial).
    const check = Buffer.from('123456789')
    expect(direct.crc32c(check, 0).toString(16)).toBe('e3069283')
    expect(generic.crc32c(check, 0).toString(16)).toBe('e3069283')
  })

  it('throws the generic loader’s error when the addon is not installed at all', () => {
    expect(() => requireNative('@node-rs/not-an-addon', ['@node-rs/not-an-addon-linux-x64-gnu'])).toThrow(/Cannot find module '@node-rs\/not-an-addon'/)
  })
})
