#!/usr/bin/env -S node --experimental-strip-types --no-warnings
// Development entry: runs the TypeScript sources directly (Node's type stripping), no build step.
import {execute} from '@oclif/core'

await execute({development: true, dir: import.meta.url})
