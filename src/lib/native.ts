/**
 * Loading the two napi-rs addons (@node-rs/crc32, @napi-rs/blake-hash) from their platform packages
 * directly. Their generic packages are loaders that first work out the C library (glibc or musl) by
 * reading /usr/bin/ldd or by building a whole diagnostic report (`process.report.getReport()`), then
 * require the platform package npm installed. Going to that package first took loading both from
 * 16.8 to 14.4 ms on the 2-core bench machine (medians of 30 alternating runs, this module's own
 * load included), and a small incremental backup, whose time is mostly start-up, loads both. Where no platform package
 * loads (another platform, a name this does not guess, a package manager layout that hides it from
 * us), the generic loader runs as before and reports what is missing in its own words.
 */
import {readFileSync} from 'node:fs'
import {createRequire} from 'node:module'

const require = createRequire(import.meta.url)

/**
 * The C library on Linux, told as the napi-rs loaders tell it first: glibc's and musl's ldd scripts
 * name their library. Null when /usr/bin/ldd cannot be read: then the generic loader decides.
 */
function linuxLibc(): 'gnu' | 'musl' | null {
  if (libc === undefined) {
    try {
      libc = readFileSync('/usr/bin/ldd', 'latin1').includes('musl') ? 'musl' : 'gnu'
    } catch {
      libc = null
    }
  }
  return libc
}

let libc: 'gnu' | 'musl' | null | undefined

/**
 * The platform package to try for `pkg` on this machine (napi-rs's naming), or none: then the
 * generic loader runs. None also where NAPI_RS_NATIVE_LIBRARY_PATH points the loaders elsewhere.
 */
export function platformPackages(pkg: string, platform: string = process.platform, arch: string = process.arch, libc: () => 'gnu' | 'musl' | null = linuxLibc): string[] {
  if (process.env.NAPI_RS_NATIVE_LIBRARY_PATH) return []
  switch (platform) {
    case 'linux': {
      const c = libc()
      if (!c) return []
      return [`${pkg}-linux-${arch}-${arch === 'arm' ? (c === 'gnu' ? 'gnueabihf' : 'musleabihf') : c}`]
    }
    case 'darwin': {
      return [`${pkg}-darwin-${arch}`]
    }
    case 'win32': {
      return [`${pkg}-win32-${arch}-msvc`]
    }
    default: {
      return []
    }
  }
}

/**
 * Requires the napi-rs addon `pkg`: its platform package if it loads here, else its generic loader.
 * The platform package is the one the generic loader would pick, at the version the lockfile pins
 * beside it; the loader's own version check is skipped with it.
 */
export function requireNative<T>(pkg: string, candidates: string[] = platformPackages(pkg)): T {
  for (const name of candidates) {
    try {
      return require(name) as T
    } catch {
      // Not installed here (another platform, or a layout where it is not reachable from us): the
      // generic loader finds what there is and reports what is missing in its own words.
    }
  }
  return require(pkg) as T
}
