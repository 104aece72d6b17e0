import { jest } from '@jest/globals';
import { TextTokenizer } from '../../src/model/tokenizer.js';
import { DEFAULT_PREPROCESSOR_OPTIONS } from '../../src/preprocess/preprocessor.js';
import type { RunningServer } from '../../src/server.js';
import { copyModel } from '../helpers/model-copy.js';
import { DEFAULT_MODEL, postJson, request, startTestServer } from '../helpers/server.js';

/** Prompts are tokenized and chat templates rendered off the HTTP thread, and a template cannot run away. */

const MODEL = 'tinystories-gpt2';
const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((values.length * p) / 100))]!;
const median = (values: number[]) => percentile(values, 50);

async function healthLatency(server: RunningServer): Promise<number> {
  const started = performance.now();
  const response = await request(server, 'GET', '/health');
  expect(response.status).toBe(200);
  return performance.now() - started;
}

describe('tokenizing off the HTTP thread', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  /**
   * The 90th percentile of /health's latency while 16 requests of 32 copies of `prompt` are served:
   * a thread that tokenized them would hold up most probes for hundreds of milliseconds, while one
   * probe can be held up by a pause of the machine (the suite's other worker runs forward passes).
   */
  async function healthUnderLoad(prompt: string): Promise<number> {
    let pending = 16;
    const load = Array.from({ length: 16 }, () =>
      postJson(server, '/v1/completions', { model: MODEL, prompt: Array.from({ length: 32 }, () => prompt), max_tokens: 1 }).finally(() => pending--),
    );
    const loaded: number[] = [];
    while (pending > 0) {
      const latency = await healthLatency(server);
      if (pending > 0) loaded.push(latency);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    for (const response of await Promise.all(load)) {
      expect(response.status).toBe(400);
      expect(response.body.error.code).toBe('context_length_exceeded');
    }
    expect(loaded.length).toBeGreaterThan(0);
    return percentile(loaded, 90);
  }

  it('/health stays as quick as unloaded while 16 requests of 32 prompts of 14,335 characters are tokenized', async () => {
    const unloaded: number[] = [];
    for (let i = 0; i < 20; i++) unloaded.push(await healthLatency(server));
    // The HTTP thread's tokenizer (the one this test process shares with the server) is never used.
    const onHttpThread = jest.spyOn(TextTokenizer.prototype, 'encode');
    // Each prompt is within every limit, but too long for the context once tokenized.
    const tokenized = await healthUnderLoad('Once upon a time there was a little dog. '.repeat(350).slice(0, 14_335));
    expect(onHttpThread).not.toHaveBeenCalled();
    onHttpThread.mockRestore();
    // The same load with prompts long enough to be refused before they are tokenized: what the HTTP
    // thread's own work (these 7 MB of bodies, and this test's client) costs a probe.
    const refusedEarly = await healthUnderLoad('Once upon a time there was a little dog. '.repeat(500));
    // Measured against the same server unloaded a moment before: a loaded HTTP thread took seconds.
    // A busy machine stretches every probe alike; tokenizing in the HTTP thread held them for seconds.
    const baseline = median(unloaded);
    expect(tokenized).toBeLessThan(Math.max(100 * baseline, 2 * refusedEarly, 250));
  });
});

describe('chat templates that run away', () => {
  const templates = {
    // Loops for longer than the render limit allows.
    slow: '{% for i in range(100000000) %}{% endfor %}{{ messages[0].content }}',
    // Doubles a string until it is far larger than the worker's heap.
    huge: "{% set text = namespace(value='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set text.value = text.value + text.value %}{% endfor %}{{ text.value }}",
  };

  it.each(Object.entries(templates))('a %s template → 400 within the render limit; the request behind it and the server carry on', async (_name, template) => {
    const model = copyModel(DEFAULT_MODEL, { 'tokenizer_config.json': (json) => void (json.chat_template = template) });
    const server = await startTestServer({ model: model.dir, servedModelNames: [MODEL] });
    try {
      const started = performance.now();
      const chat = postJson(server, '/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
      const completion = postJson(server, '/v1/completions', { model: MODEL, prompt: 'Once upon a time', max_tokens: 2 });
      const health = await healthLatency(server);
      const refused = await chat;
      expect(refused.status).toBe(400);
      expect(refused.body.error).toEqual({ message: expect.stringContaining('chat template'), type: 'invalid_request_error', param: 'messages', code: 'invalid_chat_template' });
      expect(performance.now() - started).toBeLessThan(DEFAULT_PREPROCESSOR_OPTIONS.renderLimitMs + 10_000);
      expect(health).toBeLessThan(DEFAULT_PREPROCESSOR_OPTIONS.renderLimitMs);
      expect((await completion).status).toBe(200);
      const again = await postJson(server, '/v1/completions', { model: MODEL, prompt: 'Once upon a time', max_tokens: 2 });
      expect(again.status).toBe(200);
    } finally {
      await server.close();
      model.remove();
    }
  });
});
