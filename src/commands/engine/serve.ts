import {mkdir} from 'node:fs/promises'

import {Flags} from '@oclif/core'

import {OpsCommand} from '../../base-command.js'
import {dataDirFlag} from '../../flags.js'
import {resolveDataDir} from '../../lib/engine/layout.js'
import {acquireDataDirLock} from '../../lib/engine/lock.js'
import {EngineStore} from '../../lib/engine/store.js'
import {fsError} from '../../lib/errors.js'
import {createEngramServer} from '../../lib/server/server.js'

export default class EngineServe extends OpsCommand {
  static override summary = 'Serve a data directory over an Engram-compatible HTTP API.'
  static override description = `Opens the data directory with the embedded engine (replaying every space as Engram does) and answers the
operational subset of Engram's HTTP API: health, metrics, spaces, remember, list and get memories, shutdown.
Writes go to the WAL in Engram's format, so the real Engram server can open the directory afterwards.

Runs until SIGTERM, SIGINT or POST /shutdown, then finishes in-flight requests, flushes the WAL, removes
the PID file and releases the data-directory lock. Exit 12 when another engram-ops process holds the data
directory or the port is taken.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --data-dir /var/lib/engram',
    '<%= config.bin %> <%= command.id %> --data-dir ./restored --port 0 --json',
    'ENGRAM_OPS_API_KEYS=engram_key_... <%= config.bin %> <%= command.id %> --host 0.0.0.0',
  ]

  static override flags = {
    'data-dir': dataDirFlag,
    host: Flags.string({summary: 'Address to bind (Engram: ENGRAM_HTTP_BIND, default 127.0.0.1).', env: 'ENGRAM_HTTP_BIND', default: '127.0.0.1'}),
    port: Flags.integer({summary: 'HTTP port; 0 picks a free one.', default: 7432, min: 0, max: 65_535}),
    'pid-file': Flags.string({summary: 'Write "<pid>:<port>" here while serving (Engram: ENGRAM_PID_PATH).', env: 'ENGRAM_PID_PATH', helpValue: 'PATH'}),
    'api-key': Flags.string({
      summary: 'Require this bearer key on every route (repeatable; default: $ENGRAM_OPS_API_KEYS, comma-separated).',
      multiple: true,
      helpValue: 'KEY',
    }),
    'truncate-torn': Flags.boolean({summary: 'Cut torn WAL tails instead of refusing to open the space (Engram refuses).'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(EngineServe)
    const root = resolveDataDir(flags['data-dir'])
    const apiKeys =
      flags['api-key'] ??
      (process.env.ENGRAM_OPS_API_KEYS ?? '')
        .split(',')
        .map((k) => k.trim())
        .filter(Boolean)

    // Engram creates its data root on first start.
    await mkdir(root, {recursive: true}).catch((error) => {
      throw fsError(error, 'create data directory', root)
    })
    const lock = await acquireDataDirLock(root, 'engine serve')
    try {
      if (lock.brokeStale) this.reporter.warn(`broke a stale lock of dead pid ${lock.brokeStale.pid} (${lock.brokeStale.command})`)
      const store = await EngineStore.open(root, {createDefault: true, truncateTorn: flags['truncate-torn']})
      for (const s of store.skipped) this.reporter.warn(`skipped ${s.path}: ${s.reason}`)
      for (const t of store.truncated) this.reporter.warn(`truncated torn tail of ${t.space}/${t.file} at offset ${t.offset}`)
      const server = await createEngramServer({
        store,
        host: flags.host,
        port: flags.port,
        apiKeys,
        pidFile: flags['pid-file'],
        onError: (error) => this.reporter.warn(`request failed: ${error instanceof Error ? error.message : String(error)}`),
      }).catch(async (error) => {
        await store.close()
        throw error
      })

      if (this.jsonEnabled()) process.stdout.write(`${JSON.stringify({url: server.url, port: server.port, pid: process.pid})}\n`)
      else this.out(`listening on ${server.url}`)
      this.reporter.info(
        `serving ${root} (${store.spaceIds().length} spaces) ${apiKeys.length > 0 ? `with ${apiKeys.length} API key(s)` : 'without authentication'}`,
      )

      let onSignal: (signal: NodeJS.Signals) => void = () => {}
      const signalled = new Promise<NodeJS.Signals>((resolve) => {
        onSignal = resolve
        process.once('SIGTERM', onSignal)
        process.once('SIGINT', onSignal)
      })
      const why = await Promise.race([signalled, server.closed.then(() => 'POST /shutdown')])
      process.off('SIGTERM', onSignal)
      process.off('SIGINT', onSignal)
      this.reporter.info(`stopping (${why}): finishing requests and flushing the WAL`)
      await server.close()
      this.reporter.info('stopped')
    } finally {
      await lock.release()
    }
  }
}
