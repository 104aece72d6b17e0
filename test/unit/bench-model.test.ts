import { readFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import { tokenizerForRows } from '../../bench/make-model.js';
import type { BenchModelCheck } from '../helpers/bench-model-check.js';
import { goldens } from '../helpers/goldens.js';
import { fixture } from '../helpers/server.js';
import { runInWorker } from '../helpers/worker.js';

const tinyLlama = goldens['tiny-llama'].prompts;
const check = (modelType?: 'qwen2') =>
  runInWorker<BenchModelCheck>(new URL('../helpers/bench-model-check.ts', import.meta.url), {
    fixtureDir: fixture('models/tiny-llama'),
    prompts: tinyLlama.map((p) => p.prompt_ids),
    newTokens: tinyLlama[0]!.greedy_ids.length,
    modelType,
  });

/** bench/make-model.ts: the bench's Llama-family graphs, written from a config as the exporter writes them. */
describe('the bench graph written from a config', () => {
  it("with a fixture's weights, decodes Hugging Face's greedy tokens, and the engine's slot attention takes it", async () => {
    const result = await check();
    expect(result.greedy).toEqual(tinyLlama.map((p) => p.greedy_ids));
    expect(result.takesSlots).toBe(true);
  });

  it('as qwen2, adds q, k and v biases (zero here) and decodes the same tokens', async () => {
    const [llama, qwen2] = [await check(), await check('qwen2')];
    expect(qwen2.greedy).toEqual(tinyLlama.map((p) => p.greedy_ids));
    // One Add of a bias after each of q, k and v, in each of the fixture's two layers.
    expect(qwen2.nodes - llama.nodes).toBe(3 * 2);
    expect(qwen2.takesSlots).toBe(true);
  });
});

describe('the bench tokenizer', () => {
  const gpt2 = JSON.parse(readFileSync(new URL('../../bench/models/bench-llama-135m/tokenizer.json', import.meta.url), 'utf8')) as { model: { vocab: Record<string, number> } };
  const config = JSON.parse(readFileSync(new URL('../../bench/models/bench-llama-135m/tokenizer_config.json', import.meta.url), 'utf8')) as Record<string, unknown>;
  const rows = 50257 + 3000;
  const extended = tokenizerForRows(gpt2, rows);
  const [before, after] = [new Tokenizer(gpt2, config), new Tokenizer(extended, config)];

  it('has a token of its own for every row', () => {
    const ids = Object.values(extended.model.vocab).sort((a, b) => a - b);
    expect(ids).toEqual(Array.from({ length: rows }, (_, i) => i));
  });

  it('decodes every added id to text of its own, which no merge makes back into that id', () => {
    for (let id = 50257; id < rows; id += 97) {
      const text = after.decode([id]);
      expect(text.length).toBeGreaterThan(1);
      expect(after.encode(text, { add_special_tokens: false }).ids).not.toContain(id);
    }
  });

  it('tokenizes text as GPT-2 does', () => {
    const text = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine <|endoftext|> 12345 ü';
    expect(after.encode(text).ids).toEqual(before.encode(text).ids);
  });
});
