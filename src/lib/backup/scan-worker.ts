/**
 * The worker thread that runs pass 1 of a backup (scanCapture: CRCs, cut, counts, hashes) over
 * descriptors the main thread opened. Descriptors are process-wide, so the worker reads the same open
 * file (an unlinked WAL file included) without opening it again. See scan-client.ts for the other side.
 */
import {fstat, read} from 'node:fs'
import {promisify} from 'node:util'
import {parentPort} from 'node:worker_threads'

import type {ReadHandle} from '../engine/reader.js'
import {type Sample, scanCapture} from './capture.js'
import type {ScanReply, ScanRequest} from './scan-client.js'

const fstatAsync = promisify(fstat)

/** The two FileHandle methods the reader uses, over a raw descriptor this thread does not own. */
function descriptorHandle(fd: number): ReadHandle {
  const handle = {
    read: (buffer: Buffer, offset: number, length: number, position: number) =>
      new Promise<{bytesRead: number; buffer: Buffer}>((resolve, reject) => {
        read(fd, buffer, offset, length, position, (error, bytesRead) => (error ? reject(error) : resolve({bytesRead, buffer})))
      }),
    stat: () => fstatAsync(fd),
  }
  return handle as unknown as ReadHandle
}

parentPort!.on('message', async (req: ScanRequest) => {
  let reply: ScanReply
  try {
    const samples: Sample[] = req.samples
    const seen = {n: req.seen}
    const scan = await scanCapture({name: req.name, size: req.size, handle: descriptorHandle(req.fd)}, req.start, req.algorithm, samples, req.sampleSize, seen)
    reply = {id: req.id, ok: true, scan, samples, seen: seen.n}
  } catch (error) {
    // Errors do not cross threads with their class: send the system error underneath, if any.
    const root = ((error as {cause?: unknown}).cause ?? error) as NodeJS.ErrnoException
    reply = {id: req.id, ok: false, message: root?.message ?? String(error), errno: root?.code}
  }
  parentPort!.postMessage(reply)
})
