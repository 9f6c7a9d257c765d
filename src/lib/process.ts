import {ExitCode, InterruptedError} from './errors.js'

/** Whether a process with this pid exists on this host (EPERM means it exists but is not ours). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Aborts `controller` on the first SIGINT or SIGTERM, with the exit-130 error as the reason (what
 * aborted work rethrows); a second signal exits 130 at once, giving up on cleanup.
 */
export function abortOnSignals(controller: AbortController): void {
  const stop = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(ExitCode.interrupted)
    controller.abort(new InterruptedError(`interrupted by ${signal}`))
  }
  process.once('SIGINT', () => stop('SIGINT'))
  process.once('SIGTERM', () => stop('SIGTERM'))
}
