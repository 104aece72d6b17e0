import type { OpenAIError } from '../errors.js';

/**
 * Errors in Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`: the server's one
 * catalogue of errors (errors.ts), each typed by its status as Anthropic types them.
 */

export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'overloaded_error';

export interface AnthropicErrorBody {
  type: 'error';
  error: { type: AnthropicErrorType; message: string };
}

function typeOf(status: number): AnthropicErrorType {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 413) return 'request_too_large';
  if (status === 429) return 'rate_limit_error';
  if (status === 503 || status === 529) return 'overloaded_error';
  if (status >= 500) return 'api_error';
  return 'invalid_request_error';
}

export const anthropicErrorBody = (error: OpenAIError): AnthropicErrorBody => ({ type: 'error', error: { type: typeOf(error.statusCode), message: error.message } });
