import { mkdirSync, mkdtempSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningServer } from '../../src/server.js';
import { loadModel } from '../../src/model/model.js';
import { modelFootprint } from '../../src/model/footprint.js';
import { goldens } from '../helpers/goldens.js';
import { MODEL_DIRS, postJson, request, sseEvents, startTestServer } from '../helpers/server.js';

/**
 * Several models in one server: those of a folder (`--models-dir`) load on their first request in
 * engines of their own, idle ones unload after `--keep-alive`, and loading one makes room under
 * `--max-loaded-models` and `--memory-budget-mb`.
 */

const LLAMA = 'tiny-llama';
const GPT2 = 'tiny-gpt2';
const BROKEN = 'broken-model';
const MAX_KV_TOKENS = 512;

const folder = mkdtempSync(join(tmpdir(), 'ortserve-models-'));
beforeAll(() => {
  symlinkSync(MODEL_DIRS[LLAMA]!, join(folder, LLAMA));
  symlinkSync(MODEL_DIRS[GPT2]!, join(folder, GPT2));
  // A graph, but no tokenizer: a folder that cannot be served.
  mkdirSync(join(folder, BROKEN));
  for (const file of ['config.json', 'model.onnx', 'tokenizer_config.json']) copyFileSync(join(MODEL_DIRS[LLAMA]!, file), join(folder, BROKEN, file));
  // Not a model: no graph.
  mkdirSync(join(folder, 'notes'));
});
afterAll(() => rmSync(folder, { recursive: true, force: true }));

const serve = (settings: Parameters<typeof startTestServer>[0] = {}) =>
  startTestServer({ models: [], modelsDir: folder, keepAliveMs: -1, maxKvTokens: MAX_KV_TOKENS, ...settings });

/** Runs `test` against a server of its own, closed afterwards whatever happens. */
async function withServer(settings: Parameters<typeof serve>[0], test: (server: RunningServer) => Promise<void>): Promise<void> {
  const server = await serve(settings);
  try {
    await test(server);
  } finally {
    await server.close();
  }
}

type Card = { id: string; status: { value: string; failure?: string } };
const states = async (server: RunningServer) =>
  Object.fromEntries(((await request(server, 'GET', '/v1/models')).body as { data: Card[] }).data.map((card) => [card.id, card.status.value]));

/** A golden prompt of the model, answered greedily; `stream` joins the chunks. */
async function golden(server: RunningServer, model: typeof LLAMA | typeof GPT2, index: number, stream = false): Promise<{ text: string; expected: string }> {
  const prompt = goldens[model].prompts[index]!;
  const payload = { model, prompt: prompt.prompt, max_tokens: 24, temperature: 0, stream };
  if (!stream) {
    const { status, body } = await postJson(server, '/v1/completions', payload);
    expect(status).toBe(200);
    return { text: (body as { choices: { text: string }[] }).choices[0]!.text, expected: prompt.completion_text };
  }
  const response = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload) });
  expect(response.status).toBe(200);
  const chunks = sseEvents(await response.text()).filter((event): event is { choices: { text: string }[] } => event !== '[DONE]');
  return { text: chunks.map((chunk) => chunk.choices[0]?.text ?? '').join(''), expected: prompt.completion_text };
}

/**
 * Holds tiny-gpt2 busy: a stream of 16 choices of 200 tokens each, EOS forbidden, of which the KV
 * budget runs two at a time (seconds of work), its first chunk read. Returns how to let it go.
 */
async function holdGpt2(server: RunningServer): Promise<() => void> {
  const controller = new AbortController();
  const streaming = await fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: GPT2, prompt: 'Once', n: 16, max_tokens: 200, stream: true, logit_bias: { 50256: -100 } }),
    signal: controller.signal,
  });
  expect(streaming.status).toBe(200);
  await streaming.body!.getReader().read();
  return () => controller.abort();
}

async function until(check: () => Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The bytes a model is counted by against the budget, as the server counts them. */
function footprintBytes(dir: string): number {
  const model = loadModel(dir);
  const footprint = modelFootprint(model.files.modelPath, model.config, MAX_KV_TOKENS, 2048);
  return footprint.weightBytes + footprint.kvBytes;
}

describe('a folder of models', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await serve({ modelAliases: ['story-teller=tiny-gpt2'] });
  });
  afterAll(() => server.close());

  it('lists every subfolder holding a graph, none loaded yet', async () => {
    expect(await states(server)).toEqual({ [BROKEN]: 'unloaded', [LLAMA]: 'unloaded', [GPT2]: 'unloaded' });
  });

  it("serves two models at once, each with Hugging Face's tokens while both stream", async () => {
    const runs = [0, 1, 2].flatMap((index) => [golden(server, LLAMA, index, true), golden(server, GPT2, index, true)]);
    for (const { text, expected } of await Promise.all(runs)) expect(text).toBe(expected);
    expect(await states(server)).toMatchObject({ [LLAMA]: 'loaded', [GPT2]: 'loaded' });
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    for (const model of [LLAMA, GPT2]) {
      expect(metrics).toMatch(new RegExp(`^ortserve_completion_tokens_total\\{model="${model}"\\} [1-9]`, 'm'));
      expect(metrics).toMatch(new RegExp(`^ortserve_kv_cache_tokens\\{model="${model}"\\} \\d`, 'm'));
      expect(metrics).toMatch(new RegExp(`^ortserve_model_load_seconds_count\\{model="${model}"\\} 1$`, 'm'));
    }
    expect(metrics).toMatch(/^ortserve_models_loaded 2$/m);
  });

  it('--model-alias gives a model of the folder another name', async () => {
    const { status, body } = await postJson(server, '/v1/completions', { model: 'story-teller', prompt: goldens[GPT2].prompts[0]!.prompt, max_tokens: 24, temperature: 0 });
    expect(status).toBe(200);
    expect(body).toMatchObject({ model: GPT2, choices: [{ text: goldens[GPT2].prompts[0]!.completion_text }] });
    expect((await request(server, 'GET', '/v1/models/story-teller')).status).toBe(200);
    expect((await postJson(server, '/v1/completions', { model: 'story', prompt: 'x', max_tokens: 1 })).status).toBe(404);
  });

  it('a folder that cannot be loaded answers with why, and the others keep serving', async () => {
    const { status, body, headers } = await postJson(server, '/v1/completions', { model: BROKEN, prompt: 'Hi', max_tokens: 2 });
    expect(status).toBe(503);
    expect(headers.get('x-should-retry')).toBe('false');
    expect(body).toEqual({
      error: { message: expect.stringMatching(/^The model `broken-model` could not be loaded: tokenizer.json is missing from .*broken-model$/), type: 'server_error', param: 'model', code: 'model_load_failed' },
    });
    const card = ((await request(server, 'GET', `/v1/models/${BROKEN}`)).body as Card).status;
    expect(card).toEqual({ value: 'failed', failure: expect.stringContaining('tokenizer.json is missing') });
    const { text, expected } = await golden(server, LLAMA, 0);
    expect(text).toBe(expected);
  });

  it('POST /models/unload unloads an idle model, POST /models/load loads it; one in use is a 409', async () => {
    expect((await postJson(server, '/models/unload', { model: GPT2 })).body).toMatchObject({ success: true, id: GPT2, status: { value: 'unloaded' } });
    expect((await states(server))[GPT2]).toBe('unloaded');
    expect((await postJson(server, '/models/load', { model: GPT2 })).body).toMatchObject({ success: true, id: GPT2, status: { value: 'loaded' } });

    const release = await holdGpt2(server);
    const busy = await postJson(server, '/models/unload', { model: GPT2 });
    release();
    expect(busy.status).toBe(409);
    expect(busy.body).toMatchObject({ error: { code: 'model_in_use', message: 'The model `tiny-gpt2` is serving 1 request; unload it once it is done.' } });
    expect((await postJson(server, '/models/load', { model: 'no-such-model' })).status).toBe(404);
    expect((await postJson(server, '/models/load', {})).status).toBe(400);
  });
});

describe('keep-alive', () => {
  it('an idle model is unloaded after it, and loads again with the same tokens', async () => {
    await withServer({ keepAliveMs: 500 }, async (server) => {
      const first = await golden(server, LLAMA, 1);
      expect(first.text).toBe(first.expected);
      await until(async () => (await states(server))[LLAMA] === 'unloaded', 'the idle model is unloaded');
      const again = await golden(server, LLAMA, 1);
      expect(again.text).toBe(first.text);
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toMatch(/^ortserve_model_load_seconds_count\{model="tiny-llama"\} 2$/m);
    });
  });

  it('models given with --model stay loaded', async () => {
    await withServer({ models: [MODEL_DIRS[GPT2]!], keepAliveMs: 0 }, async (server) => {
      expect((await states(server))[GPT2]).toBe('loaded');
      await golden(server, GPT2, 0);
      await golden(server, LLAMA, 0);
      await until(async () => (await states(server))[LLAMA] === 'unloaded', 'the model loaded on request is unloaded');
      expect((await states(server))[GPT2]).toBe('loaded');
    });
  });
});

describe('room for another model', () => {
  it('--max-loaded-models unloads the least recently used idle model first', async () => {
    await withServer({ maxLoadedModels: 1 }, async (server) => {
      await golden(server, LLAMA, 0);
      const { text, expected } = await golden(server, GPT2, 0);
      expect(text).toBe(expected);
      expect(await states(server)).toMatchObject({ [LLAMA]: 'unloaded', [GPT2]: 'loaded' });
    });
  });

  it('under the memory budget, loading one model unloads the idle one; while it is in use, the load is a 503 to retry', async () => {
    const [llama, gpt2] = [footprintBytes(MODEL_DIRS[LLAMA]!), footprintBytes(MODEL_DIRS[GPT2]!)];
    // Room for either alone, not for both.
    const budgetMb = Math.ceil((Math.max(llama, gpt2) + Math.min(llama, gpt2) / 2) / 2 ** 20);
    expect(budgetMb * 2 ** 20).toBeLessThan(llama + gpt2);
    await withServer({ memoryBudgetMb: budgetMb }, async (server) => {
      await golden(server, LLAMA, 2);
      const { text, expected } = await golden(server, GPT2, 2);
      expect(text).toBe(expected);
      expect(await states(server)).toMatchObject({ [GPT2]: 'loaded', [LLAMA]: 'unloaded' });

      const release = await holdGpt2(server);
      const refused = await postJson(server, '/v1/completions', { model: LLAMA, prompt: 'Once', max_tokens: 2 });
      release();
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect((refused.body as { error: { code: string; message: string } }).error).toMatchObject({
        code: 'models_busy',
        message: expect.stringMatching(/^The model `tiny-llama` cannot be loaded now: it takes about \d+ MiB, and \d+ MiB of the memory budget of \d+ MiB is free, with the models that hold the rest in use or given with --model\. Retry shortly\.$/),
      });
    });
  });

  it('a model larger than the budget by itself is refused, saying both sizes', async () => {
    const llama = footprintBytes(MODEL_DIRS[LLAMA]!);
    await withServer({ memoryBudgetMb: Math.max(1, Math.floor(llama / 2 ** 20 / 2)) }, async (server) => {
      const { status, body } = await postJson(server, '/v1/completions', { model: LLAMA, prompt: 'Once', max_tokens: 2 });
      expect(status).toBe(503);
      expect((body as { error: { message: string } }).error.message).toMatch(/^The model `tiny-llama` could not be loaded: it takes about \d+ MiB \(weights and KV cache at capacity\), more than the memory budget of \d+ MiB \(--memory-budget-mb/);
    });
  });
});

describe('loading on request', () => {
  it('a request waits for its model at most --request-timeout (a 504), and the load goes on for the next', async () => {
    await withServer({ requestTimeoutMs: 300 }, async (server) => {
      const waited = await postJson(server, '/tokenize', { model: GPT2, prompt: 'Hello world' });
      expect(waited.status).toBe(504);
      expect((waited.body as { error: { code: string } }).error.code).toBe('timeout');
      await until(async () => (await states(server))[GPT2] === 'loaded', 'the load finishes');
      const { status, body } = await postJson(server, '/tokenize', { model: GPT2, prompt: 'Hello world' });
      expect(status).toBe(200);
      expect((body as { tokens: number[] }).tokens).toEqual(goldens[GPT2].tokenizer.find((item) => item.text === 'Hello world')!.ids);
    });
  });
});
