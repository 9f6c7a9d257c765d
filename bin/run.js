#!/bin/sh
":" //; export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-33554432}" MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-134217728}"; exec node "$0" "$@"
// The two lines above are read by sh, which sets glibc's malloc thresholds and execs Node on this file;
// Node skips the #! line and sees a string and a comment. Why: zlib hands out a new ~2 MiB Buffer for
// every compressed (or decompressed) frame. With glibc's defaults the heap's free top is returned to
// the kernel whenever it exceeds about twice the largest freed block, so nearly every frame was written
// into pages the kernel had to fault in and zero again: ~95,000 page faults in a 1 GiB backup and
// ~120,000 in its restore, 34,000 and 43,000 with these settings (allocations below 32 MiB from the
// heap; up to 128 MiB of free heap kept). Page faults are system time, and on a VM whose free pages are
// handed back to the host they are slow. Values already in the environment win; other C libraries
// ignore the variables. Running `node bin/run.js` skips this line and these settings.

// Checked first, in syntax that old Nodes still parse (no top-level await, no ??=), so an old Node
// fails with a sentence and exit 10 instead of a syntax error or a stack trace from node:zlib (zstd
// came in 22.15). Everything else is in main.js.
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 15)) {
  process.stderr.write(`engram-ops needs Node.js 22.15 or newer (it uses zstd from node:zlib); this is Node.js ${process.versions.node} (${process.execPath}). Put a newer node first on PATH.\n`)
  process.exit(10)
}
import('./main.js')
