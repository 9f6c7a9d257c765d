/** Opens the backend a repository URL names: a path or file:// URL, s3://, or memory:// (tests). */
import {resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

import {UsageError} from '../errors.js'
import type {RepositoryBackend} from './backend.js'
import {FsBackend} from './backends/fs.js'
import {MemoryBackend} from './backends/memory.js'

const memoryRepos = new Map<string, MemoryBackend>()

/** The server-side encryption modes an S3 repository can ask for (--sse). */
export const SSE_MODES = ['AES256', 'aws:kms'] as const

/** Options that override what an s3:// URL says (from command-line flags). */
export interface S3Overrides {
  partSize?: number
  queueSize?: number
  storageClass?: string
  sse?: string
  sseKmsKeyId?: string
}

export async function openBackend(url: string, s3: S3Overrides = {}): Promise<RepositoryBackend> {
  if (url.startsWith('file://')) return new FsBackend(fileURLToPath(url))
  if (url.startsWith('s3://')) {
    const {S3Backend} = await import('./backends/s3.js') // the AWS SDK loads only when needed
    return S3Backend.fromUrl(url, Object.fromEntries(Object.entries(s3).filter(([, v]) => v !== undefined)))
  }
  if (url.startsWith('memory://')) {
    let m = memoryRepos.get(url)
    if (!m) memoryRepos.set(url, (m = new MemoryBackend(url)))
    return m
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    throw new UsageError(`unsupported repository URL scheme in ${redactUrl(url)}`, {
      code: 'BAD_REPO_URL',
      subject: redactUrl(url),
      suggestion: 'Use a local path, a file:// URL or an s3:// URL.',
    })
  }
  return new FsBackend(resolve(url))
}

/** Removes user:password and secret-looking query parameters from a URL for messages. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//***@').replace(/([?&](?:secret|key|token|password)[^=]*=)[^&]*/gi, '$1***')
}
