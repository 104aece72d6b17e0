import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeVariant } from '../../tools/model-variants.js';
import type { RunningServer } from '../../src/server.js';
import { goldens } from '../helpers/goldens.js';
import { MODEL_DIRS, postJson, startTestServer } from '../helpers/server.js';

/**
 * `--weights int8` and `int4` on the default model (real weights): the MatMuls quantized as it
 * loads. Outputs change a little, measured against the float32 goldens; a sequence's tokens still do
 * not depend on what it is batched with.
 */

const golden = goldens['tinystories-gpt2'];

interface Format {
  weights: 'int8' | 'int4';
  rewrite: RegExp;
  /** Least share of golden positions, teacher-forced, where the golden (float32) greedy token is still the most likely. */
  agreement: number;
  /** Most a first-step logit, relative to the best one, may differ from the golden's. */
  logitTolerance: number;
  /** Least share of the golden's first-step runners-up still among the five most likely. */
  kept: number;
  batchInvariant?: boolean;
}

const FORMATS: Format[] = [
  { weights: 'int8', rewrite: /^int8 weights: \d+ MatMuls as 8-bit DynamicQuantizeMatMul .*the output head too$/, agreement: 0.99, logitTolerance: 0.25, kept: 1 },
  // One-row steps padded to two (--batch-invariant), so that the same tokens come alone and batched.
  { weights: 'int4', rewrite: /^int4 weights: \d+ MatMuls as 4-bit MatMulNBits .*the output head too$/, agreement: 0.9, logitTolerance: 0.75, kept: 0.8, batchInvariant: true },
  // The default: one-row steps as they are, a lone stream's numbers from the one-row kernel.
  { weights: 'int4', rewrite: /^int4 weights: \d+ MatMuls as 4-bit MatMulNBits .*the output head too, one-row steps unpadded \(not batch-invariant\)$/, agreement: 0.9, logitTolerance: 0.75, kept: 0.8 },
];

describe.each(FORMATS)('--weights $weights (--batch-invariant $batchInvariant)', ({ weights, rewrite, agreement, logitTolerance, kept, batchInvariant = false }) => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer({ weights, maxBatch: 16, batchInvariant });
  });
  afterAll(() => server.close());

  it('quantizes the MatMuls after the other edits, and says so at start', () => {
    const rewrites = server.engine.graphRewrites;
    expect(rewrites[0]).toMatch(/^logits_positions: logits computed/);
    expect(rewrites.at(-1)).toMatch(rewrite);
  });

  it(`picks Hugging Face's greedy token at ≥ ${agreement * 100}% of the golden positions, teacher-forced`, async () => {
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
    expect(agree / positions).toBeGreaterThanOrEqual(agreement);
  });

  it(`keeps the first step's most likely logits, relative to the best, within ${logitTolerance} of the golden's`, async () => {
    const deviations: number[] = [];
    let runnersUp = 0;
    for (const prompt of golden.prompts) {
      const response = await postJson(server, '/v1/completions', { model: server.model.id, prompt: prompt.prompt_ids, max_tokens: 1, temperature: 0, logprobs: 5 });
      const top: Record<string, number> = response.body.choices[0].logprobs.top_logprobs[0];
      const [[bestId, bestLogit], ...rest] = prompt.first_step_top5 as [number, number][];
      const logprob = (id: number) => top[server.model.tokenizer.decode([id])];
      const best = logprob(bestId!);
      expect(best).toBeDefined();
      for (const [id, logit] of rest) {
        runnersUp++;
        const ours = logprob(id);
        // Log-probabilities differ by what the logits differ by.
        if (ours !== undefined) deviations.push(Math.abs(ours - best! - (logit - bestLogit!)));
      }
    }
    expect(deviations.length).toBeGreaterThanOrEqual(kept * runnersUp);
    expect(Math.max(...deviations)).toBeLessThanOrEqual(logitTolerance);
  });

  // int8 is batch-invariant as it is; int4 with --batch-invariant.
  if (batchInvariant || weights === 'int8') {
    it('gives every golden prompt the same tokens alone and batched', async () => {
      const complete = async (prompt: string | string[]) =>
        (await postJson(server, '/v1/completions', { model: server.model.id, prompt, max_tokens: 24, temperature: 0 })).body.choices.map((choice: { text: string }) => choice.text);
      const alone: string[] = [];
      for (const prompt of golden.prompts) alone.push(...(await complete(prompt.prompt)));
      const together = await complete(golden.prompts.map((prompt) => prompt.prompt));
      expect(together).toEqual(alone);
    });
  }
});

describe('--weights int4 on a graph whose weights are external data', () => {
  let server: RunningServer;
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'ortserve-int4-'));
    makeVariant('transformers-js', MODEL_DIRS['tiny-llama']!, join(root, 'model'));
    server = await startTestServer({ model: join(root, 'model'), weights: 'int4', maxBatch: 16, batchInvariant: true });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('reads the weights from beside the graph and quantizes them; alone and batched stay identical', async () => {
    expect(server.engine.graphRewrites.at(-1)).toMatch(/^int4 weights: \d+ MatMuls/);
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

