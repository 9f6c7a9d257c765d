/**
 * `repo check`: a preflight an operator (or a cron job's first run) can trust. Each check is run and
 * reported on its own, so one failure does not hide another: put, get (byte-exact), list and delete
 * of a scratch object; free space (filesystem); clock skew against the storage server; the lock.
 */
import {randomBytes} from 'node:crypto'

import {ExitCode, type ExitCodeValue, OpsError} from '../errors.js'
import {readAll, type RepositoryBackend} from './backend.js'
import {readLease} from './lock.js'

export interface CheckItem {
  name: string
  ok: boolean
  detail: string
  exitCode?: ExitCodeValue
}

export interface CheckResult {
  repo: string
  ok: boolean
  checks: CheckItem[]
}

const exitOf = (error: unknown): ExitCodeValue => (error instanceof OpsError ? error.exitCode : ExitCode.unavailable)

export async function checkRepository(backend: RepositoryBackend, o: {minFreeBytes: number; maxSkewMs: number}): Promise<CheckResult> {
  const checks: CheckItem[] = []
  const key = `checks/preflight-${randomBytes(6).toString('hex')}`
  const body = randomBytes(4096)
  const step = async (name: string, fn: () => Promise<string>) => {
    try {
      checks.push({name, ok: true, detail: await fn()})
      return true
    } catch (error) {
      checks.push({name, ok: false, detail: (error as Error).message, exitCode: exitOf(error)})
      return false
    }
  }
  const put = await step('put', async () => {
    await backend.put(key, body)
    return `wrote ${key}`
  })
  if (put) {
    await step('get', async () => {
      const back = await readAll(await backend.get(key))
      if (!back.equals(body)) throw new OpsError(`read back ${key}: bytes differ from what was written`, {code: 'CHECK_GET', exit: ExitCode.integrity})
      return 'read back byte-exact'
    })
    await step('list', async () => {
      for await (const o of backend.list('checks/')) if (o.key === key) return 'listed'
      throw new OpsError(`list checks/: ${key} is missing right after it was written`, {code: 'CHECK_LIST', exit: ExitCode.unavailable})
    })
    await step('delete', async () => {
      await backend.delete([key])
      if (await backend.stat(key)) throw new OpsError(`delete ${key}: the object is still there`, {code: 'CHECK_DELETE', exit: ExitCode.permission})
      return 'deleted'
    })
  }
  if (backend.freeSpace) {
    await step('free space', async () => {
      const free = await backend.freeSpace!()
      if (free === null) return 'unknown'
      if (free < o.minFreeBytes) throw new OpsError(`only ${free} bytes free where the repository is (want at least ${o.minFreeBytes})`, {code: 'CHECK_SPACE', exit: ExitCode.unavailable})
      return `${free} bytes free`
    })
  }
  if (backend.serverTime) {
    await step('clock skew', async () => {
      const server = await backend.serverTime!()
      if (!server) return 'not measured (no storage server Date header)'
      const skew = server.getTime() - Date.now()
      if (Math.abs(skew) > o.maxSkewMs) {
        throw new OpsError(`this host's clock is ${Math.round(-skew / 1000)} s off the storage server's (signed requests fail past 15 minutes; lock leases rely on it)`, {code: 'CHECK_CLOCK', exit: ExitCode.unavailable})
      }
      return `${skew} ms`
    })
  }
  await step('lock', async () => {
    const lease = await readLease(backend)
    if (!lease) return 'free'
    const expired = Date.parse(lease.expiresAt) < Date.now()
    return `held by ${lease.owner.command} (pid ${lease.owner.pid} on ${lease.owner.host}), lease ${expired ? 'expired' : `until ${lease.expiresAt}`}`
  })
  return {repo: backend.url, ok: checks.every((c) => c.ok), checks}
}
