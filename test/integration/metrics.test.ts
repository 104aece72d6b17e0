import type { RunningServer } from '../../src/server.js';
import { postJson, request, startTestServer } from '../helpers/server.js';

const MODEL = 'tinystories-gpt2';

/** The value of one sample in Prometheus' text format, e.g. `ortserve_requests_total{route="/v1/completions",status="200"}`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const lineLabels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => lineLabels[key] === value)) return Number(match[3]);
  }
  return 0;
}

describe('GET /metrics', () => {
  let server: RunningServer;
  const scrape = async () => {
    const response = await fetch(`${server.url}/metrics`);
    expect(response.headers.get('content-type')).toContain('text/plain');
    return response.text();
  };

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('exposes the server, engine and process metrics in Prometheus format', async () => {
    const text = await scrape();
    for (const name of [
      'ortserve_requests_total',
      'ortserve_prompt_tokens_total',
      'ortserve_completion_tokens_total',
      'ortserve_time_to_first_token_seconds',
      'ortserve_inter_token_latency_seconds',
      'ortserve_queue_length',
      'ortserve_active_sequences',
      'ortserve_batch_size',
      'ortserve_kv_cache_tokens',
      'ortserve_kv_cache_usage_ratio',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
  });

  it('counts requests by route and status, tokens, latencies and batch sizes as requests are served', async () => {
    const before = await scrape();
    const ok = await postJson(server, '/v1/completions', { model: MODEL, prompt: 'Once upon a time', max_tokens: 6, n: 2, temperature: 0 });
    expect(ok.status).toBe(200);
    const bad = await postJson(server, '/v1/completions', { model: MODEL, prompt: 'Once upon a time', temperature: 7 });
    expect(bad.status).toBe(400);
    const streamed = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, stream: true }),
    });
    await streamed.text();
    const after = await scrape();

    const delta = (name: string, labels: Record<string, string> = {}) => sample(after, name, labels) - sample(before, name, labels);
    expect(delta('ortserve_requests_total', { route: '/v1/completions', status: '200' })).toBe(1);
    expect(delta('ortserve_requests_total', { route: '/v1/completions', status: '400' })).toBe(1);
    expect(delta('ortserve_requests_total', { route: '/v1/chat/completions', status: '200' })).toBe(1);
    expect(delta('ortserve_prompt_tokens_total')).toBeGreaterThanOrEqual(ok.body.usage.prompt_tokens);
    expect(delta('ortserve_completion_tokens_total')).toBeGreaterThanOrEqual(ok.body.usage.completion_tokens);
    // Three choices in all: each has a first token, and every later piece of text an inter-token gap.
    expect(delta('ortserve_time_to_first_token_seconds_count')).toBe(3);
    expect(delta('ortserve_inter_token_latency_seconds_count')).toBeGreaterThan(0);
    expect(delta('ortserve_batch_size_count')).toBeGreaterThan(0);
    expect(delta('ortserve_batch_size_sum')).toBeGreaterThanOrEqual(delta('ortserve_batch_size_count'));
  });

  it('shows running sequences and KV-cache tokens while a long generation runs, and zero after', async () => {
    const controller = new AbortController();
    const stream = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: 'Once upon a time', max_tokens: 500, stream: true }),
      signal: controller.signal,
    });
    const reader = stream.body!.getReader();
    await reader.read();
    // The gauges move after each engine step; wait for the first steps to be reported.
    let during = '';
    for (let i = 0; i < 50; i++) {
      during = await scrape();
      if (sample(during, 'ortserve_kv_cache_tokens') > 4) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(sample(during, 'ortserve_active_sequences')).toBe(1);
    expect(sample(during, 'ortserve_kv_cache_tokens')).toBeGreaterThan(4);
    // The share of the KV budget (max batch × context by default) that the one stream holds.
    const usage = sample(during, 'ortserve_kv_cache_usage_ratio');
    expect(usage).toBeGreaterThan(0);
    expect(usage).toBeLessThan(1);
    expect(sample(during, 'ortserve_requests_in_flight')).toBe(1);
    controller.abort();
    await reader.cancel().catch(() => undefined);
    let after = '';
    for (let i = 0; i < 50; i++) {
      after = await scrape();
      if (sample(after, 'ortserve_active_sequences') === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(sample(after, 'ortserve_active_sequences')).toBe(0);
    expect(sample(after, 'ortserve_kv_cache_tokens')).toBe(0);
    expect(sample(after, 'ortserve_kv_cache_usage_ratio')).toBe(0);
    expect(sample(after, 'ortserve_queue_length')).toBe(0);
    expect((await request(server, 'GET', '/health')).status).toBe(200);
  });
});
