import { PreprocessInputError } from './preprocess/preprocessor.js';

/**
 * The errors the server answers with, in one place: each a status, a code and its message. They are
 * OpenAI's shape (`{ error: { message, type, param, code } }`), which the HTTP layer sends as they are.
 */

export type OpenAIErrorType = 'invalid_request_error' | 'authentication_error' | 'rate_limit_error' | 'server_error';

export interface OpenAIErrorBody {
  error: { message: string; type: OpenAIErrorType; param: string | null; code: string | null };
}

/** An error answered in OpenAI's shape: `{ error: { message, type, param, code } }`. */
export class OpenAIError extends Error {
  override readonly name = 'OpenAIError';

  constructor(
    readonly statusCode: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type: OpenAIErrorType = statusCode >= 500 ? 'server_error' : 'invalid_request_error',
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const invalidRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new OpenAIError(400, message, param, code);

/** Seconds a client is asked to wait before retrying when the server is full. */
const RETRY_AFTER_SECONDS = 1;

export const serverBusy = () =>
  new OpenAIError(429, 'The server is busy: every batch slot and queue place is taken. Retry shortly.', null, 'queue_full', 'rate_limit_error', {
    'retry-after': String(RETRY_AFTER_SECONDS),
  });

export const serverShuttingDown = () =>
  new OpenAIError(503, 'The server is shutting down and takes no new requests. Retry on another replica.', null, 'server_shutting_down', 'server_error', {
    connection: 'close',
  });

/** A timed-out generation would only time out again: clients are told not to retry it (the openai SDKs read `x-should-retry`). */
export const requestTimedOut = (seconds: number) =>
  new OpenAIError(504, `The request did not complete within this server's limit of ${seconds} seconds and was cancelled.`, null, 'timeout', 'server_error', {
    'x-should-retry': 'false',
  });

/** The client went away before its answer was ready: nobody reads this one, but the logs and metrics count it (nginx's 499). */
export const clientClosedRequest = () => new OpenAIError(499, 'The client closed the request before it was answered.', null, 'client_closed_request');

/** A request beyond one of the server's configured limits (`flag` names the setting). */
export const limitExceeded = (param: string, message: string, flag: string) =>
  invalidRequest(`${message} (this server's limit, set by --${flag}).`, param, 'limit_exceeded');

export const modelNotFound = (model: string) =>
  new OpenAIError(404, `The model \`${model}\` does not exist.`, 'model', 'model_not_found');

/** Any failure as the error the API answers with: one of ours as it is, a request that could not be prepared as a 400, anything else as a 500. */
export function toOpenAIError(err: unknown): OpenAIError {
  if (err instanceof OpenAIError) return err;
  if (err instanceof PreprocessInputError) return invalidRequest(err.message, null, 'invalid_input');
  return new OpenAIError(500, `The server had an error while processing your request: ${(err as Error).message}`);
}
