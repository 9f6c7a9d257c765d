/**
 * Loading the two napi-rs addons (@node-rs/crc32, @napi-rs/blake-hash) from their platform packages
 * directly. Their generic packages are loaders that first work out the C library (glibc or musl) by
 * reading /usr/bin/ldd or by building a whole diagnostic report (`process.report.getReport()`), then
 * require the platform package npm installed. Going to that package first took 3-4 ms off each load
 * on the 2-core bench machine (medians of 15 loads: 9.9 against 6.9 ms and 9.7 against 5.4 ms), and
 * a small incremental backup, whose time is mostly start-up, loads both. Where no platform package
 * loads (another platform, a name this does not guess, a binary for the other C library), the generic
 * loader runs as before and reports what is missing in its own words.
 */
import {createRequire} from 'node:module'

const require = createRequire(import.meta.url)

/** The platform packages to try for `pkg` on this machine, most likely first (napi-rs's naming). */
export function platformPackages(pkg: string, platform: string = process.platform, arch: string = process.arch): string[] {
  switch (platform) {
    case 'linux': {
      return [`${pkg}-linux-${arch}-gnu`, `${pkg}-linux-${arch}-musl`]
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

/** Requires the napi-rs addon `pkg`: its platform package if one loads here, else its generic loader. */
export function requireNative<T>(pkg: string, candidates: string[] = platformPackages(pkg)): T {
  for (const name of candidates) {
    try {
      return require(name) as T
    } catch {
      // Not installed here, or built for the other C library: try the next, then the generic loader.
    }
  }
  return require(pkg) as T
}
