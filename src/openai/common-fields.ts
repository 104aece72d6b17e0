import { invalidRequest } from '../errors.js';
import type { ReportingRequest, SamplingRequest } from '../generation/request.js';
import { stopStrings } from './schemas.js';

/** The fields chat and completions share, as the generation request groups them. */

/** What both endpoints' bodies carry in common (null: not given, as in OpenAI's SDKs). */
export interface CommonFields {
  n?: number | null;
  stop?: string | string[] | null;
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null | undefined } | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
}

/** `null` as not given. */
export const given = <T>(value: T | null | undefined): T | undefined => (value === null ? undefined : value);

export const unsupported = (param: string, what = `'${param}'`) => invalidRequest(`${what} is not supported by this server (yet).`, param, 'unsupported_parameter');

/** OpenAI's rule: `stream_options` only with `stream: true`. */
export function checkStreamOptions(body: CommonFields): void {
  if (body.stream_options !== null && body.stream_options !== undefined && !body.stream) {
    throw invalidRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.", 'stream_options', 'invalid_value');
  }
}

export function samplingFields(body: CommonFields): SamplingRequest {
  const fields: SamplingRequest = {};
  const set = <K extends keyof SamplingRequest>(key: K, value: SamplingRequest[K] | null | undefined) => {
    if (value !== null && value !== undefined) fields[key] = value;
  };
  set('temperature', body.temperature);
  set('topP', body.top_p);
  set('seed', body.seed);
  set('presencePenalty', body.presence_penalty);
  set('frequencyPenalty', body.frequency_penalty);
  set('logitBias', body.logit_bias);
  return fields;
}

export const stopFields = (body: CommonFields) => stopStrings(body.stop);

export const streamFields = (body: CommonFields): Pick<ReportingRequest, 'stream' | 'includeUsage'> => ({
  stream: !!body.stream,
  includeUsage: !!body.stream_options?.include_usage,
});
