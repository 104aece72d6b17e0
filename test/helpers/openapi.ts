import { readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { OPENAPI_PATH } from '../../src/http/docs.js';

/** Checks real responses against the schemas of openapi.yaml, so the document cannot drift from the code. */

const document = parse(readFileSync(OPENAPI_PATH, 'utf8')) as { openapi: string; components: { schemas: Record<string, unknown> } };
const ajv = new Ajv2020({ strict: false, validateSchema: false, allErrors: true });
ajv.addSchema(document, 'openapi');
const validators = new Map<string, ValidateFunction>();

export const openapiDocument = document;

export function schemaErrors(schema: string, value: unknown): string[] {
  let validate = validators.get(schema);
  if (!validate) {
    if (!(schema in document.components.schemas)) throw new Error(`openapi.yaml has no schema ${schema}`);
    validate = ajv.compile({ $ref: `openapi#/components/schemas/${schema}` });
    validators.set(schema, validate);
  }
  if (validate(value)) return [];
  return (validate.errors ?? []).map((error) => `${schema}${error.instancePath} ${error.message} ${JSON.stringify(error.params)}`);
}

/** The schemas of an endpoint's plain and streamed bodies. */
function schemasFor(path: string): { body: string; chunk?: string; namedEvents?: true; numbered?: false } | undefined {
  const route = path.split('?')[0]!;
  if (route === '/v1/responses') return { body: 'Response', chunk: 'ResponseStreamEvent', namedEvents: true };
  if (route === '/v1/messages') return { body: 'AnthropicMessage', chunk: 'AnthropicStreamEvent', namedEvents: true, numbered: false };
  if (route === '/v1/messages/count_tokens') return { body: 'AnthropicTokenCount' };
  if (route === '/tokenize') return { body: 'TokenizeResponse' };
  if (route === '/detokenize') return { body: 'DetokenizeResponse' };
  if (route === '/v1/completions') return { body: 'Completion', chunk: 'CompletionChunk' };
  if (route === '/v1/chat/completions') return { body: 'ChatCompletion', chunk: 'ChatCompletionChunk' };
  if (/^\/v1\/engines\/[^/]+\/completions$/.test(route)) return { body: 'Completion', chunk: 'CompletionChunk' };
  if (/^\/v1\/engines\/[^/]+\/chat\/completions$/.test(route)) return { body: 'ChatCompletion', chunk: 'ChatCompletionChunk' };
  if (route === '/v1/engines') return { body: 'EngineList' };
  if (route.startsWith('/v1/engines/')) return { body: 'Engine' };
  if (route === '/v1/models') return { body: 'ModelList' };
  if (route.startsWith('/v1/models/')) return { body: 'Model' };
  if (route === '/health') return { body: 'Health' };
  return undefined;
}

/** Every problem of one response: its body, or each event of a stream (an error event included). */
export function responseErrors(path: string, status: number, contentType: string, text: string): string[] {
  if (path.split('?')[0] === '/ready') return schemaErrors('Readiness', JSON.parse(text));
  if (status >= 400) {
    try {
      return schemaErrors(path.startsWith('/v1/messages') ? 'AnthropicError' : 'Error', JSON.parse(text));
    } catch {
      return [`${path}: ${status} without a JSON error body`];
    }
  }
  const schemas = schemasFor(path);
  if (!schemas) return [];
  if (!contentType.startsWith('text/event-stream')) return schemaErrors(schemas.body, JSON.parse(text));
  const events = text.split('\n\n').filter((event) => event.trim() !== '');
  const problems: string[] = [];
  if (schemas.namedEvents) return namedEventErrors(path, events, schemas.chunk!, schemas.numbered ?? true);
  events.forEach((event, i) => {
    if (!event.startsWith('data: ')) problems.push(`${path}: event ${i} is not a data event`);
    const data = event.slice('data: '.length);
    if (data === '[DONE]') {
      if (i !== events.length - 1) problems.push(`${path}: [DONE] before the end`);
      return;
    }
    const chunk = JSON.parse(data) as Record<string, unknown>;
    problems.push(...schemaErrors('error' in chunk ? 'Error' : schemas.chunk!, chunk));
  });
  return problems;
}

/** A stream of named events (`event: type`, then `data:` with that type), numbered from 0 where `numbered` (the Responses API), without `[DONE]`. */
function namedEventErrors(path: string, events: string[], schema: string, numbered: boolean): string[] {
  const problems: string[] = [];
  events.forEach((event, i) => {
    const match = /^event: ([^\n]+)\ndata: (.*)$/s.exec(event);
    if (!match) return problems.push(`${path}: event ${i} is not a named data event`);
    const data = JSON.parse(match[2]!) as { type?: unknown; sequence_number?: unknown };
    if (data.type !== match[1]) problems.push(`${path}: event ${i} is named ${match[1]} but has type ${String(data.type)}`);
    if (numbered && data.sequence_number !== i) problems.push(`${path}: event ${i} has sequence_number ${String(data.sequence_number)}`);
    problems.push(...schemaErrors(schema, data));
  });
  return problems;
}

export interface ValidatingFetch {
  fetch: typeof fetch;
  violations: string[];
  /** Responses checked so far. */
  checked(): number;
  /** Waits until every response seen so far has been read and checked. */
  settled(): Promise<void>;
}

/** A fetch that checks every response it sees; `violations` collects what did not match. */
export function validatingFetch(): ValidatingFetch {
  const violations: string[] = [];
  let checked = 0;
  const pending = new Set<Promise<void>>();
  const wrapped: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    const copy = response.clone();
    const check = copy
      .text()
      .then((text) => {
        checked++;
        violations.push(...responseErrors(url.pathname, response.status, response.headers.get('content-type') ?? '', text));
      })
      .catch(() => undefined) // a stream the client aborted
      .finally(() => pending.delete(check));
    pending.add(check);
    return response;
  };
  return {
    fetch: wrapped,
    violations,
    checked: () => checked,
    settled: async () => {
      await Promise.all([...pending]);
    },
  };
}
