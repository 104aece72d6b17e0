import { PreprocessInputError } from './preprocess/preprocessor.js';

/**
 * The errors the server answers with, in one place: each a status, a code and its message. They are
 * OpenAI's shape (`{ error: { message, type, param, code } }`), which the HTTP layer sends as they are.
 */

export type OpenAIErrorType = 'invalid_request_error' | 'authentication_error' | 'rate_limit_error' | 'server_error';

/**
 * Every code the server answers with: its HTTP status and, where the wording is the same wherever
 * it is raised, its message template. Codes without one take a message that states the field's own
 * rule (`invalid_value`, say).
 */
const CATALOGUE = {
  // The request is not valid (400).
  invalid_value: { status: 400 },
  invalid_type: { status: 400 },
  missing_required_parameter: { status: 400, message: (param: string) => `Missing required parameter: '${param}'.` },
  unsupported_parameter: { status: 400 },
  unsupported_value: { status: 400 },
  empty_array: { status: 400, message: (param: string) => `Invalid '${param}': empty array. Expected an array with minimum length 1, but got an empty array instead.` },
  invalid_json: { status: 400, message: (reason: string) => `We could not parse the JSON body of your request: ${reason}` },
  invalid_schema: { status: 400, message: (param: string, reason: string) => `Invalid schema for '${param}': ${reason}` },
  invalid_chat_template: { status: 400, message: (what: string, reason: string) => `The chat template rejected the ${what}: ${reason}` },
  invalid_input: { status: 400 },
  context_length_exceeded: { status: 400 },
  limit_exceeded: { status: 400, message: (what: string, flag: string) => `${what} (this server's limit, set by --${flag}).` },
  invalid_url: { status: 400, message: (url: string) => `The request URL is not valid: ${url} has a malformed percent-escape.` },
  invalid_http: { status: 400, message: (reason: string) => `The request is not valid HTTP: ${reason}` },
  missing_host: { status: 400, message: () => 'The request has no Host header, which HTTP/1.1 requires.' },
  invalid_api_key: { status: 401 },
  model_not_found: { status: 404, message: (model: string) => `The model \`${model}\` does not exist.` },
  unknown_url: { status: 404, message: (method: string, url: string) => `Unknown request URL: ${method} ${url}.` },
  model_in_use: { status: 409, message: (model: string, requests: number) => `The model \`${model}\` is serving ${requests} request${requests === 1 ? '' : 's'}; unload it once ${requests === 1 ? 'it is' : 'they are'} done.` },
  request_timeout: { status: 408, message: () => 'The request was not received in time.' },
  request_too_large: { status: 413, message: (reason: string, limit: number) => `${reason}: the limit is ${limit} bytes (this server's limit, set by --max-body-bytes).` },
  unsupported_media_type: { status: 415, message: (reason: string) => `${reason}; send the body as application/json.` },
  expectation_failed: { status: 417, message: (expectation: string) => `The expectation '${expectation}' cannot be met; only 100-continue is supported.` },
  queue_full: { status: 429, message: () => 'The server is busy: every batch slot and queue place is taken. Retry shortly.' },
  headers_too_large: { status: 431, message: () => 'The request headers are too large.' },
  /** nginx's code for a client that left before its answer (nobody reads it; logs and metrics count it). */
  client_closed_request: { status: 499, message: () => 'The client closed the request before it was answered.' },
  model_load_failed: { status: 503, message: (model: string, reason: string) => `The model \`${model}\` could not be loaded: ${reason}` },
  models_busy: { status: 503, message: (model: string, reason: string) => `The model \`${model}\` cannot be loaded now: ${reason}. Retry shortly.` },
  server_shutting_down: { status: 503, message: () => 'The server is shutting down and takes no new requests. Retry on another replica.' },
  timeout: { status: 504, message: (seconds: number) => `The request did not complete within this server's limit of ${seconds} seconds and was cancelled.` },
} as const satisfies Record<string, { status: number; message?: (...args: never[]) => string }>;

type Catalogue = typeof CATALOGUE;
export type ErrorCode = keyof typeof CATALOGUE;
/** The codes whose message is the catalogue's template. */
type TemplatedCode = { [C in ErrorCode]: Catalogue[C] extends { message: (...args: never[]) => string } ? C : never }[ErrorCode];
/** The codes of a request that is not valid (400) whose message states the field's own rule. */
export type InvalidRequestCode = Exclude<{ [C in ErrorCode]: Catalogue[C]['status'] extends 400 ? C : never }[ErrorCode], TemplatedCode>;
type TemplateArguments<C extends TemplatedCode> = Catalogue[C] extends { message: (...args: infer A) => string } ? A : never;

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

/** The error of `code`, with its status from the catalogue and a message that states the rule broken. */
export const apiError = (code: Exclude<ErrorCode, TemplatedCode>, message: string, param: string | null = null, headers: Record<string, string> = {}) =>
  new OpenAIError(CATALOGUE[code].status, message, param, code, headers);

/** The error of `code`, its message written from the catalogue's template. */
export function catalogueError<C extends TemplatedCode>(code: C, args: TemplateArguments<C>, param: string | null = null, headers: Record<string, string> = {}): OpenAIError {
  const template = CATALOGUE[code].message as (...values: TemplateArguments<C>) => string;
  return new OpenAIError(CATALOGUE[code].status, template(...args), param, code, headers);
}

export const invalidRequest = (message: string, param: string | null, code: InvalidRequestCode) => apiError(code, message, param);

/** Seconds a client is asked to wait before retrying when the server is full. */
const RETRY_AFTER_SECONDS = 1;

export const serverBusy = () => catalogueError('queue_full', [], null, { 'retry-after': String(RETRY_AFTER_SECONDS) });

export const serverShuttingDown = () => catalogueError('server_shutting_down', [], null, { connection: 'close' });

/** A timed-out generation would only time out again: clients are told not to retry it (the openai SDKs read `x-should-retry`). */
export const requestTimedOut = (seconds: number) => catalogueError('timeout', [seconds], null, { 'x-should-retry': 'false' });

/** The client went away before its answer was ready: nobody reads this one, but the logs and metrics count it. */
export const clientClosedRequest = () => catalogueError('client_closed_request', []);

/** A request beyond one of the server's configured limits (`flag` names the setting). */
export const limitExceeded = (param: string, message: string, flag: string) => catalogueError('limit_exceeded', [message, flag], param);

export const modelNotFound = (model: string) => catalogueError('model_not_found', [model], 'model');
/** A model that failed to load fails again until it is loaded anew (`POST /models/load`): clients are told not to retry. */
export const modelLoadFailed = (model: string, reason: string) => catalogueError('model_load_failed', [model, reason], 'model', { 'x-should-retry': 'false' });
/** No room for a model while the others are in use: a retry may find it. */
export const modelsBusy = (model: string, reason: string) => catalogueError('models_busy', [model, reason], 'model', { 'retry-after': String(RETRY_AFTER_SECONDS) });
export const modelInUse = (model: string, requests: number) => catalogueError('model_in_use', [model, requests], 'model');

/** Any failure as the error the API answers with: one of ours as it is, a request that could not be prepared as a 400, anything else as a 500. */
export function toOpenAIError(err: unknown): OpenAIError {
  if (err instanceof OpenAIError) return err;
  if (err instanceof PreprocessInputError) return apiError('invalid_input', err.message);
  return new OpenAIError(500, `The server had an error while processing your request: ${(err as Error).message}`);
}
