import { defaultConfig } from '../../src/config.js';
import type { RunningServer } from '../../src/server.js';
import { goldens, GOLDEN_MODELS } from '../helpers/goldens.js';
import { MODEL_DIRS, postJson, request, sseEvents, startTestServer } from '../helpers/server.js';

const DEFAULT = 'tinystories-gpt2';

describe('the engine runs off the main thread', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('answers /health at once while a long generation runs', async () => {
    const generation = postJson(server, '/v1/completions', { model: DEFAULT, prompt: 'Once upon a time', max_tokens: 400, n: 16, temperature: 1 });
    let busy = true;
    void generation.finally(() => {
      busy = false;
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const latencies: number[] = [];
    while (busy && latencies.length < 50) {
      const started = performance.now();
      const health = await request(server, 'GET', '/health');
      latencies.push(performance.now() - started);
      expect(health.status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(busy).toBe(true);
    expect(latencies.length).toBeGreaterThan(5);
    // A forward pass of 16 rows takes 100 ms or more here: on the HTTP thread, most probes would wait
    // for part of one. A machine busy with other work may hold up one probe, not most.
    const sorted = [...latencies].sort((a, b) => a - b);
    expect(sorted[Math.floor(sorted.length / 2)]).toBeLessThan(25);
    expect(sorted.at(-1)).toBeLessThan(1000);
    expect((await generation).status).toBe(200);
  });
});

describe('requests take turns at batch slots', () => {
  it('a 4-token request sent after one of 64 choices with logprobs and echo finishes before most of those choices have', async () => {
    const server = await startTestServer({ limits: { ...defaultConfig().limits, maxN: 128 } });
    try {
      const response = await fetch(`${server.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: DEFAULT, prompt: 'Once upon a time', n: 64, max_tokens: 48, logprobs: 5, echo: true, logit_bias: { 0: -100 }, stream: true }),
      });
      let finishedChoices = 0;
      let firstText: () => void = () => {};
      const started = new Promise<void>((resolve) => (firstText = resolve));
      const reading = (async () => {
        const decoder = new TextDecoder();
        let buffered = '';
        for await (const bytes of response.body!) {
          buffered += decoder.decode(bytes, { stream: true });
          const events = buffered.split('\n\n');
          buffered = events.pop()!;
          for (const event of sseEvents(events.map((e) => `${e}\n\n`).join(''))) {
            firstText();
            if (typeof event === 'object' && (event as { choices: { finish_reason: string | null }[] }).choices[0]?.finish_reason) finishedChoices++;
          }
        }
      })();
      await started;
      const small = await postJson(server, '/v1/completions', { model: DEFAULT, prompt: 'The dog', max_tokens: 4 });
      const finishedWhenSmallDid = finishedChoices;
      expect(small.status).toBe(200);
      expect(small.body.usage.completion_tokens).toBe(4);
      await reading;
      expect(finishedChoices).toBe(64);
      // 16 slots: the small request runs in the second wave at the latest, not after all four.
      expect(finishedWhenSmallDid).toBeLessThanOrEqual(32);
    } finally {
      await server.close();
    }
  });
});

describe.each(GOLDEN_MODELS)('%s: a request gives the same tokens alone or among 15 others', (name) => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer({ model: MODEL_DIRS[name]! });
  });
  afterAll(() => server.close());

  const complete = (body: Record<string, unknown>) => postJson(server, '/v1/completions', { model: name, ...body });
  const text = async (body: Record<string, unknown>) => {
    const response = await complete(body);
    expect(response.status).toBe(200);
    return response.body.choices.map((choice: { text: string }) => choice.text) as string[];
  };
  /** Fifteen other requests of other lengths and settings, started together. */
  const otherTraffic = () =>
    Array.from({ length: 15 }, (_, i) =>
      complete({
        prompt: `${'The cat sat on the mat. '.repeat(1 + (i % 6))}Then`,
        max_tokens: 5 + ((i * 7) % 30),
        temperature: i % 3 === 0 ? 0 : 0.9,
        seed: i,
      }),
    );

  it('greedy: every golden prompt', async () => {
    for (const golden of goldens[name].prompts) {
      const alone = await text({ prompt: golden.prompt, max_tokens: 24, temperature: 0 });
      expect(alone).toEqual([golden.completion_text]);
      const others = otherTraffic();
      const together = await text({ prompt: golden.prompt, max_tokens: 24, temperature: 0 });
      await Promise.all(others);
      expect(together).toEqual(alone);
    }
  });

  it('seeded sampling', async () => {
    const body = { prompt: goldens[name].prompts[1]!.prompt, max_tokens: 24, temperature: 0.8, top_p: 0.95, seed: 42, n: 2 };
    const alone = await text(body);
    const others = otherTraffic();
    const together = await text(body);
    await Promise.all(others);
    expect(together).toEqual(alone);
  });
});

describe('capacity', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer({ maxBatch: 1, maxQueue: 1 });
  });
  afterAll(() => server.close());

  /** Greedy on this prompt runs to the end of the context without an EOS. */
  const longStream = (signal: AbortSignal) =>
    fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: DEFAULT, prompt: 'Hello, my name is', max_tokens: 507, stream: true, temperature: 0 }),
      signal,
    });

  it('answers 429 with Retry-After at once when the batch and the queue are full', async () => {
    const first = new AbortController();
    const second = new AbortController();
    const streams = [await longStream(first.signal), await longStream(second.signal)];
    try {
      const started = performance.now();
      const refused = await postJson(server, '/v1/completions', { model: DEFAULT, prompt: 'Hi', max_tokens: 4 });
      expect(performance.now() - started).toBeLessThan(1000);
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(refused.body.error).toMatchObject({ type: 'rate_limit_error', code: 'queue_full' });
      // Three choices could not fit even an idle server of two places: no point in retrying.
      const tooMany = await postJson(server, '/v1/chat/completions', { model: DEFAULT, messages: [{ role: 'user', content: 'Hi' }], n: 3 });
      expect(tooMany.status).toBe(400);
      expect(tooMany.body.error).toMatchObject({ type: 'invalid_request_error', code: 'limit_exceeded', param: 'n' });
      expect(tooMany.body.error.message).toContain('--max-batch plus --max-queue');
      const fits = await postJson(server, '/v1/chat/completions', { model: DEFAULT, messages: [{ role: 'user', content: 'Hi' }], n: 2 });
      expect(fits.status).toBe(429);
    } finally {
      first.abort();
      second.abort();
      await Promise.allSettled(streams.map((s) => s.body?.cancel()));
    }
  });

  it('frees the slot of a client that disconnects, so the next request is served at once', async () => {
    for (let round = 0; round < 3; round++) {
      const controller = new AbortController();
      const response = await longStream(controller.signal);
      const reader = response.body!.getReader();
      await reader.read();
      controller.abort();
      await reader.cancel().catch(() => undefined);
      const started = performance.now();
      let served = await postJson(server, '/v1/completions', { model: DEFAULT, prompt: 'Hi', max_tokens: 4, temperature: 0 });
      // The server learns of the disconnect as the socket closes; give it a moment if this raced it.
      for (let tries = 0; served.status === 429 && tries < 10; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        served = await postJson(server, '/v1/completions', { model: DEFAULT, prompt: 'Hi', max_tokens: 4, temperature: 0 });
      }
      expect(served.status).toBe(200);
      expect(performance.now() - started).toBeLessThan(2000);
    }
  });

  it('frees the slot of a non-streaming client that disconnects', async () => {
    const controller = new AbortController();
    const pending = fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: DEFAULT, prompt: 'Hello, my name is', max_tokens: 507, n: 2, temperature: 0 }),
      signal: controller.signal,
    }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(server.engine.load).toBe(2);
    controller.abort();
    await pending;
    for (let tries = 0; server.engine.load > 0 && tries < 50; tries++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(server.engine.load).toBe(0);
  });
});

describe('closing', () => {
  it('every call to close waits for the engine thread to exit (a process that exits inside a forward pass aborts)', async () => {
    const server = await startTestServer();
    const running = postJson(server, '/v1/completions', { model: server.model.id, prompt: 'Once upon a time', max_tokens: 200, n: 8 }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 100));
    let exitedAt = 0;
    const first = server.engine.close().then(() => (exitedAt = performance.now()));
    const second = server.engine.close().then(() => performance.now());
    const [, secondDone] = await Promise.all([first, second]);
    expect(exitedAt).toBeGreaterThan(0);
    expect(secondDone).toBeGreaterThanOrEqual(exitedAt);
    await running;
    await server.close();
  });
});
