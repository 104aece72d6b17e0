/**
 * The soak's hostile client and its /health probe. The client sends, one after another, requests a
 * hostile or careless caller sends: values nested 100,000 deep, a schema whose after-the-fact check
 * backtracks, schemas with large enums (each one new), requests with fresh schemas that it abandons
 * after 50 ms, and 1 MB /tokenize bodies. The probe asks GET /health every 200 ms and keeps each
 * latency. A server that costs each of these only its sender answers them all with 4xx (or 200),
 * never a 5xx, while /health stays quick.
 */
import { percentile } from './common.js';

export type HostileKind = 'deep-kwargs' | 'deep-tool-arguments' | 'backtracking-schema' | 'large-enum' | 'abandoned' | 'tokenize-1mb';
const KINDS: readonly HostileKind[] = ['deep-kwargs', 'deep-tool-arguments', 'backtracking-schema', 'large-enum', 'abandoned', 'tokenize-1mb'];

export interface HostileTally {
  /** Answers by kind and status ("abandoned" counts the requests it gave up on). */
  statuses: Record<string, number>;
  serverErrors: number;
}

const deepArray = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

/** Each kind's request, `variant` making schemas new each time. */
function hostileRequest(kind: HostileKind, modelId: string, variant: number): { path: string; body: string } {
  const chat = (extra: string, max = 24) => `{"model":${JSON.stringify(modelId)},"max_tokens":${max},"messages":[{"role":"user","content":"Hi"}]${extra}}`;
  const format = (schema: unknown) => `,"response_format":${JSON.stringify({ type: 'json_schema', json_schema: { name: 'out', schema } })}`;
  switch (kind) {
    case 'deep-kwargs':
      return { path: '/v1/chat/completions', body: chat(`,"chat_template_kwargs":{"x":${deepArray(100_000)}}`) };
    case 'deep-tool-arguments': {
      const call = `{"id":"c","type":"function","function":{"name":"f","arguments":${JSON.stringify(deepArray(100_000))}}}`;
      return { path: '/v1/chat/completions', body: `{"model":${JSON.stringify(modelId)},"max_tokens":4,"messages":[{"role":"user","content":"Hi"},{"role":"assistant","tool_calls":[${call}]},{"role":"tool","tool_call_id":"c","content":"ok"}]}` };
    }
    case 'backtracking-schema':
      return { path: '/v1/chat/completions', body: chat(format({ type: 'string', minLength: 30 + (variant % 8), maxLength: 30 + (variant % 8), not: { pattern: '^(a+)+b$' } }), 48) };
    case 'large-enum':
      return { path: '/v1/chat/completions', body: chat(format({ type: 'string', enum: Array.from({ length: 20_000 }, (_, i) => `v${variant}_${i}`) }), 8) };
    case 'abandoned':
      return { path: '/v1/chat/completions', body: chat(format({ type: 'string', minLength: 1000 + variant, maxLength: 1000 + variant }), 64) };
    case 'tokenize-1mb':
      return { path: '/tokenize', body: `{"model":${JSON.stringify(modelId)},"prompt":${JSON.stringify('Once upon a time there was a dog. '.repeat(30_000))}}` };
  }
}

/** Runs the hostile client until `until` (a performance.now() time); `biasToken` is the token pushed in the backtracking schema's reply. */
export async function hostileClient(url: string, modelId: string, headers: Record<string, string>, until: () => boolean, biasToken?: number): Promise<HostileTally> {
  const tally: HostileTally = { statuses: {}, serverErrors: 0 };
  const count = (key: string) => (tally.statuses[key] = (tally.statuses[key] ?? 0) + 1);
  for (let variant = 0; !until(); variant++) {
    const kind = KINDS[variant % KINDS.length]!;
    const { path, body } = hostileRequest(kind, modelId, variant);
    const withBias = kind === 'backtracking-schema' && biasToken !== undefined ? body.replace(/}$/, `,"logit_bias":{"${biasToken}":100}}`) : body;
    const controller = new AbortController();
    const timer = kind === 'abandoned' ? setTimeout(() => controller.abort(), 50) : undefined;
    try {
      const response = await fetch(`${url}${path}`, { method: 'POST', headers, body: withBias, signal: controller.signal });
      await response.arrayBuffer();
      count(`${kind} ${response.status}`);
      if (response.status >= 500) tally.serverErrors++;
    } catch (err) {
      count(`${kind} ${controller.signal.aborted ? 'abandoned' : (err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }
  return tally;
}

export interface HealthLatencies {
  count: number;
  failures: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Asks GET /health every `everyMs` until `until`; the latencies of its answers. */
export async function probeHealth(url: string, until: () => boolean, everyMs = 200): Promise<HealthLatencies> {
  const latencies: number[] = [];
  let failures = 0;
  while (!until()) {
    const started = performance.now();
    try {
      const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(30_000) });
      await response.arrayBuffer();
      if (response.status !== 200) failures++;
    } catch {
      failures++;
    }
    const latency = performance.now() - started;
    latencies.push(latency);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, everyMs - latency)));
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  return { count: latencies.length, failures, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), maxMs: sorted.at(-1) ?? NaN };
}

export const HOSTILE_KINDS = KINDS;
