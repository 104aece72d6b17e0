import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeVariant } from '../../scripts/model-variants.js';
import type { RunningServer } from '../../src/server.js';
import { goldens } from '../helpers/goldens.js';
import { MODEL_DIRS, postJson, startTestServer } from '../helpers/server.js';

/**
 * `--weights int4` on the default model (real weights): the MatMuls quantized as it loads. Outputs
 * change a little, measured against the float32 goldens; a sequence's tokens still do not depend
 * on what it is batched with.
 */

const golden = goldens['tinystories-gpt2'];

describe('--weights int4', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer({ weights: 'int4', maxBatch: 16 });
  });
  afterAll(() => server.close());

  it('quantizes the MatMuls but the output head, and says so at start', () => {
    const [int4, positions] = server.engine.graphRewrites;
    expect(int4).toMatch(/^int4 weights: \d+ MatMuls as 4-bit MatMulNBits/);
    // The head stays float32, so the logits_positions edit still suits the graph.
    expect(positions).toMatch(/^logits_positions: logits computed/);
  });

  it("picks Hugging Face's greedy token at ≥ 90% of the golden positions, teacher-forced", async () => {
    let agree = 0;
    let positions = 0;
    for (const prompt of golden.prompts) {
      // Scoring the prompt and its greedy completion: at each position, is the golden token the most likely?
      const ids = [...prompt.prompt_ids, ...prompt.greedy_ids];
      const response = await postJson(server, '/v1/completions', { model: server.model.id, prompt: ids, max_tokens: 0, echo: true, logprobs: 1 });
      const { token_logprobs, top_logprobs } = response.body.choices[0].logprobs;
      for (let i = prompt.prompt_ids.length; i < ids.length; i++) {
        const best = Math.max(...(Object.values(top_logprobs[i]) as number[]));
        positions++;
        if (token_logprobs[i] >= best - 1e-6) agree++;
      }
    }
    expect(positions).toBeGreaterThan(100);
    expect(agree / positions).toBeGreaterThanOrEqual(0.9);
  });

  it('gives every golden prompt the same tokens alone and batched', async () => {
    const complete = async (prompt: string | string[]) =>
      (await postJson(server, '/v1/completions', { model: server.model.id, prompt, max_tokens: 24, temperature: 0 })).body.choices.map((choice: { text: string }) => choice.text);
    const alone: string[] = [];
    for (const prompt of golden.prompts) alone.push(...(await complete(prompt.prompt)));
    const together = await complete(golden.prompts.map((prompt) => prompt.prompt));
    expect(together).toEqual(alone);
  });
});

describe('--weights int4 on a graph whose weights are external data', () => {
  let server: RunningServer;
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'ortserve-int4-'));
    makeVariant('transformers-js', MODEL_DIRS['tiny-llama']!, join(root, 'model'));
    server = await startTestServer({ model: join(root, 'model'), weights: 'int4', maxBatch: 16 });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('reads the weights from beside the graph and quantizes them; alone and batched stay identical', async () => {
    expect(server.engine.graphRewrites[0]).toMatch(/^int4 weights: \d+ MatMuls/);
    const prompts = goldens['tiny-llama'].prompts.map((prompt) => prompt.prompt);
    const complete = async (prompt: string | string[]) =>
      (await postJson(server, '/v1/completions', { model: server.model.id, prompt, max_tokens: 16, temperature: 0, logprobs: 0 })).body.choices.map(
        (choice: { text: string; logprobs: { token_logprobs: number[] } }) => {
          for (const logprob of choice.logprobs.token_logprobs) expect(Number.isFinite(logprob)).toBe(true);
          return choice.text;
        },
      );
    const alone: string[] = [];
    for (const prompt of prompts) alone.push(...(await complete(prompt)));
    expect(await complete(prompts)).toEqual(alone);
  });
});

