import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { defaultConfig } from '../../src/config.js';
import { type ServerConfig } from '../../src/options.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { responseErrors, validatingFetch, type ValidatingFetch } from './openapi.js';

export const fixture = (path: string) => fileURLToPath(new URL(`../fixtures/${path}`, import.meta.url));
export const DEFAULT_MODEL = fileURLToPath(new URL('../../models/tinystories-gpt2', import.meta.url));

/** Model directories by the names the goldens use. */
export const MODEL_DIRS: Record<string, string> = {
  'tinystories-gpt2': DEFAULT_MODEL,
  'tiny-gpt2': fixture('models/tiny-gpt2'),
  'tiny-llama': fixture('models/tiny-llama'),
};

/** A live server on an ephemeral loopback port; `model` is one `--model`. */
export function startTestServer({ model, ...overrides }: Partial<ServerConfig> & { model?: string } = {}): Promise<RunningServer> {
  return startServer({
    ...defaultConfig(),
    models: [model ?? DEFAULT_MODEL],
    host: '127.0.0.1',
    port: 0,
    threads: 1,
    logLevel: 'silent',
    // Tests of the compile limit set their own: a machine busy with the suite's other file may take longer than the default.
    grammarCompileLimitMs: 30_000,
    ...overrides,
  });
}

export interface JsonResponse {
  status: number;
  headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are checked field by field
  body: any;
}

/** Sends a request with a JSON body (or raw text) and reads the JSON answer. */
export async function request(server: RunningServer, method: string, path: string, payload?: unknown, headers: Record<string, string> = {}): Promise<JsonResponse> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (payload !== undefined) {
    init.body = typeof payload === 'string' ? payload : JSON.stringify(payload);
    if (!Object.keys(headers).some((name) => name.toLowerCase() === 'content-type')) (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const response = await fetch(`${server.url}${path}`, init);
  const text = await response.text();
  const violations = responseErrors(path, response.status, response.headers.get('content-type') ?? '', text);
  if (violations.length > 0) throw new Error(`${method} ${path}: the response does not match openapi.yaml:\n${violations.join('\n')}`);
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, headers: response.headers, body };
}

export const postJson = (server: RunningServer, path: string, payload: unknown) => request(server, 'POST', path, payload);

/** The official client, pointed at `server`, with every response checked against openapi.yaml. */
export function openaiClient(server: RunningServer): { client: OpenAI; validation: ValidatingFetch } {
  const validation = validatingFetch();
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0, fetch: validation.fetch });
  return { client, validation };
}

/** Parses a server-sent event stream's text into its `data:` payloads (`[DONE]` kept as a string). */
export function sseEvents(text: string): unknown[] {
  return text
    .split('\n\n')
    .filter((event) => event.startsWith('data: '))
    .map((event) => {
      const data = event.slice('data: '.length);
      return data === '[DONE]' ? data : (JSON.parse(data) as unknown);
    });
}
