#!/usr/bin/env node
// Part of `npm run build`, after tsc: bundles the path that runs `backup full|incremental` without
// oclif (dist/backup-fast-path.js and everything it imports) into dist/fast/backup.js, and the scan
// worker into dist/fast/scan-worker.js beside it (the worker is found next to the code that starts
// it). A small incremental backup's time is mostly start-up, and a good part of that was loading ~50
// small ES modules one by one; docs/architecture.md has the figures.
// - The AWS SDK and oclif stay in node_modules (external): the SDK is large and only S3 repositories
//   need it; oclif is not on this path. The N-API addons are required by a name esbuild does not
//   follow (src/lib/native.ts), so they stay there too.
// - Splitting keeps the S3 backend, which is imported only for s3:// repositories, in a chunk of its
//   own, so its static imports of the SDK are not hoisted into the start-up bundle (a single-file
//   bundle would load the SDK at every start). The code it shares with the bundle (errors, the backend
//   interface) is one chunk of both, so there is one copy of each class and `instanceof` holds.
// - The worker is built on its own: a thread of its own, sharing no objects with the main thread.
import {build} from 'esbuild'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const common = {
  absWorkingDir: join(dirname(fileURLToPath(import.meta.url)), '..'),
  outdir: 'dist/fast',
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  external: ['@aws-sdk/*', '@smithy/*', '@oclif/*'],
  logLevel: 'warning',
}
await Promise.all([
  build({...common, entryPoints: {backup: 'dist/backup-fast-path.js'}, splitting: true}),
  build({...common, entryPoints: {'scan-worker': 'dist/lib/backup/scan-worker.js'}}),
])
