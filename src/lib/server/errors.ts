/**
 * The two kinds of error body Engram's HTTP server produces (reference §6):
 *  - ApiError: the JSON envelope `{error:{code,message,educational_context,cognitive_guidance},documentation}`
 *    rendered by Engram's handlers, with `Retry-After` on every 503;
 *  - PlainError: axum's framework rejections (bad JSON 400, wrong JSON shape 422, missing content type 415,
 *    bad query string 400, body too large 413), which are plain text outside the envelope.
 */
import type {ErrorEnvelope} from '../admin/types.js'

/** What each code means to a caller, in Engram's "educational" style. */
const GUIDANCE: Record<string, [context: string, guidance: string]> = {
  INVALID_MEMORY_INPUT: [
    'A memory needs non-empty content, an embedding of exactly 768 dimensions and a valid memory space id (3-64 characters of a-z, 0-9, _ and -).',
    'Fix the field named in the message and send the request again.',
  ],
  BAD_REQUEST: ['The request parameters do not describe a valid operation.', 'Check the query parameters against the API reference.'],
  UNAUTHORIZED: [
    'When authentication is enabled every route needs an API key.',
    'Send `Authorization: Bearer engram_key_<key_id>_<secret>`.',
  ],
  FORBIDDEN: ['The API key is not allowed to use this memory space.', 'Use a key scoped to the space, or another space.'],
  MEMORY_NOT_FOUND: [
    'Memories are looked up by id inside one memory space; the same id in another space is a different memory.',
    'Check the id and the memory space (X-Memory-Space header or ?space=).',
  ],
  MEMORY_VALIDATION_ERROR: ['A parameter failed validation.', 'Memory space ids are 3-64 characters of a-z, 0-9, _ and -.'],
  MEMORY_SYSTEM_ERROR: ['The memory system hit an internal error.', 'Check the server log and its health endpoint, then retry.'],
  NOT_IMPLEMENTED: [
    'This Engram route is not provided by this server.',
    'engram-ops engine serve implements the operational subset of the API; use a full Engram server for this route.',
  ],
  FEATURE_NOT_ENABLED: ['This feature is disabled on this server.', 'Enable it in the server configuration, or treat the server as single-node.'],
  MEMORY_CLUSTER_UNAVAILABLE: ['The memory system cannot serve requests right now.', 'Retry after the number of seconds in the Retry-After header.'],
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Seconds, sent as Retry-After (always set on a 503). */
    readonly retryAfter?: number,
  ) {
    super(message)
  }

  envelope(): ErrorEnvelope {
    const [context, guidance] = GUIDANCE[this.code] ?? GUIDANCE.MEMORY_SYSTEM_ERROR
    return {
      error: {code: this.code, message: this.message, educational_context: context, cognitive_guidance: guidance},
      documentation: {api_guide: '/docs/api', memory_concepts: '/docs/memory-systems', examples: '/docs/examples'},
    }
  }
}

export const invalidInput = (message: string) => new ApiError(400, 'INVALID_MEMORY_INPUT', message)
export const badRequest = (message: string) => new ApiError(400, 'BAD_REQUEST', message)
export const unauthorized = (message: string) => new ApiError(401, 'UNAUTHORIZED', message)
export const memoryNotFound = (message: string) => new ApiError(404, 'MEMORY_NOT_FOUND', message)
export const validationError = (message: string) => new ApiError(422, 'MEMORY_VALIDATION_ERROR', message)
export const systemError = (message: string) => new ApiError(500, 'MEMORY_SYSTEM_ERROR', message)
export const notImplemented = (message: string) => new ApiError(501, 'NOT_IMPLEMENTED', message)
export const featureNotEnabled = (message: string) => new ApiError(501, 'FEATURE_NOT_ENABLED', message)
export const unavailable = (message: string, retryAfter = 5) => new ApiError(503, 'MEMORY_CLUSTER_UNAVAILABLE', message, retryAfter)

/** An axum-style plain-text rejection. */
export class PlainError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

export const jsonSyntaxError = (detail: string) => new PlainError(400, `Failed to parse the request body as JSON: ${detail}`)
export const jsonDataError = (detail: string) => new PlainError(422, `Failed to deserialize the JSON body into the target type: ${detail}`)
export const queryError = (detail: string) => new PlainError(400, `Failed to deserialize query string: ${detail}`)
export const missingJsonContentType = () => new PlainError(415, 'Expected request with `Content-Type: application/json`')
export const bodyTooLarge = () => new PlainError(413, 'Failed to buffer the request body: length limit exceeded')
