import { PreprocessInputError } from './preprocess/preprocessor.js';

/**
 * The errors the server answers with, in one place: each a status, a code and its message. They are
 * OpenAI's shape (`{ error: { message, type, param, code } }`), which the HTTP layer sends as they are.
 */

export type OpenAIErrorType = 'invalid_request_error' | 'authentication_error' | 'rate_limit_error' | 'server_error';

/** Every code the server answers with, and its HTTP status. */
const CATALOGUE = {
  // The request is not valid (400).
  invalid_value: 400,
  invalid_type: 400,
  missing_required_parameter: 400,
  unsupported_parameter: 400,
  unsupported_value: 400,
  empty_array: 400,
  invalid_json: 400,
  invalid_schema: 400,
  invalid_chat_template: 400,
  invalid_input: 400,
  context_length_exceeded: 400,
  limit_exceeded: 400,
  invalid_url: 400,
  invalid_http: 400,
  missing_host: 400,
  invalid_api_key: 401,
  model_not_found: 404,
  unknown_url: 404,
  request_timeout: 408,
  request_too_large: 413,
  unsupported_media_type: 415,
  expectation_failed: 417,
  queue_full: 429,
  headers_too_large: 431,
  /** nginx's code for a client that left before its answer (nobody reads it; logs and metrics count it). */
  client_closed_request: 499,
  server_shutting_down: 503,
  timeout: 504,
} as const;

export type ErrorCode = keyof typeof CATALOGUE;
/** The codes of a request that is not valid (400). */
export type InvalidRequestCode = { [C in ErrorCode]: (typeof CATALOGUE)[C] extends 400 ? C : never }[ErrorCode];

const typeOf = (status: number): OpenAIErrorType =>
  status === 401 ? 'authentication_error' : status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error';

export interface OpenAIErrorBody {
  error: { message: string; type: OpenAIErrorType; param: string | null; code: ErrorCode | null };
}

/** An error answered in OpenAI's shape: `{ error: { message, type, param, code } }`. */
export class OpenAIError extends Error {
  override readonly name = 'OpenAIError';
  readonly type: OpenAIErrorType;

  /** A status without a code of ours: a framework's client error passed on, or a 500. */
  constructor(
    readonly statusCode: number,
    message: string,
    readonly param: string | null = null,
    readonly code: ErrorCode | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.type = typeOf(statusCode);
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** The error of `code`, with its status from the catalogue. */
export const apiError = (code: ErrorCode, message: string, param: string | null = null, headers: Record<string, string> = {}) =>
  new OpenAIError(CATALOGUE[code], message, param, code, headers);

export const invalidRequest = (message: string, param: string | null, code: InvalidRequestCode) => apiError(code, message, param);

/** Seconds a client is asked to wait before retrying when the server is full. */
const RETRY_AFTER_SECONDS = 1;

export const serverBusy = () =>
  apiError('queue_full', 'The server is busy: every batch slot and queue place is taken. Retry shortly.', null, {
    'retry-after': String(RETRY_AFTER_SECONDS),
  });

export const serverShuttingDown = () =>
  apiError('server_shutting_down', 'The server is shutting down and takes no new requests. Retry on another replica.', null, {
    connection: 'close',
  });

/** A timed-out generation would only time out again: clients are told not to retry it (the openai SDKs read `x-should-retry`). */
export const requestTimedOut = (seconds: number) =>
  apiError('timeout', `The request did not complete within this server's limit of ${seconds} seconds and was cancelled.`, null, {
    'x-should-retry': 'false',
  });

/** The client went away before its answer was ready: nobody reads this one, but the logs and metrics count it. */
export const clientClosedRequest = () => apiError('client_closed_request', 'The client closed the request before it was answered.');

/** A request beyond one of the server's configured limits (`flag` names the setting). */
export const limitExceeded = (param: string, message: string, flag: string) =>
  invalidRequest(`${message} (this server's limit, set by --${flag}).`, param, 'limit_exceeded');

export const modelNotFound = (model: string) =>
  apiError('model_not_found', `The model \`${model}\` does not exist.`, 'model');

/** Any failure as the error the API answers with: one of ours as it is, a request that could not be prepared as a 400, anything else as a 500. */
export function toOpenAIError(err: unknown): OpenAIError {
  if (err instanceof OpenAIError) return err;
  if (err instanceof PreprocessInputError) return apiError('invalid_input', err.message);
  return new OpenAIError(500, `The server had an error while processing your request: ${(err as Error).message}`);
}
