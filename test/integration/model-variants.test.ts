import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeVariant, type VariantName } from '../../tools/model-variants.js';
import type { RunningServer } from '../../src/server.js';
import { goldens } from '../helpers/goldens.js';
import { MODEL_DIRS, postJson, request, startTestServer } from '../helpers/server.js';

/**
 * Every folder layout and graph variant of the hub (derived from the tiny fixtures by
 * tools/model-variants.ts) serves every golden prompt with the same tokens alone and batched
 * with 15 rows of other lengths; the full-precision ones with Hugging Face's tokens.
 */

type Source = 'tiny-llama' | 'tiny-gpt2';
/**
 * Which load-time edits suit the graph: logits_positions (a plain MatMul head at the top),
 * new_key_values (Concat presents), slot_attention (Concat presents read by MatMuls, and position_ids).
 */
type Edits = [logitsPositions: boolean, newKv: boolean, slotAttention: boolean];
const CASES: { source: Source; variant: VariantName | VariantName[] | 'as exported'; matchesGoldens: boolean; unpaddedRows?: true; edits: Edits; arrivals?: true }[] = [
  { source: 'tiny-llama', variant: 'as exported', matchesGoldens: true, edits: [true, true, true], arrivals: true },
  { source: 'tiny-gpt2', variant: 'as exported', matchesGoldens: true, edits: [true, true, true] },
  // A transformers.js repository of a multimodal-style model: onnx/, chunked external data, text_config.
  { source: 'tiny-llama', variant: ['text-config', 'transformers-js'], matchesGoldens: true, edits: [true, true, true] },
  { source: 'tiny-llama', variant: 'logits-to-keep', matchesGoldens: true, edits: [false, true, true] },
  // Float16 may change a greedy choice, so this is checked alone against batched only.
  { source: 'tiny-llama', variant: 'fp16', matchesGoldens: false, edits: [true, true, true] },
  { source: 'tiny-llama', variant: 'no-position-ids', matchesGoldens: true, edits: [true, true, false] },
  { source: 'tiny-llama', variant: 'merged', matchesGoldens: true, edits: [false, true, false] },
  { source: 'tiny-gpt2', variant: 'merged', matchesGoldens: true, edits: [false, true, false] },
  // GroupQueryAttention, rewritten into attention to slots: rows of any length run together.
  { source: 'tiny-llama', variant: 'group-query-attention', matchesGoldens: true, edits: [true, false, true], arrivals: true },
  { source: 'tiny-llama', variant: 'group-query-attention-rotary', matchesGoldens: true, edits: [true, false, true], arrivals: true },
  // A float16 cache, as q4f16 exports have it (float16 may change a greedy choice: alone against batched only).
  { source: 'tiny-llama', variant: ['group-query-attention-rotary', 'fp16'], matchesGoldens: false, edits: [true, false, true], arrivals: true },
  // 4-bit weights are another model: alone against batched only.
  { source: 'tiny-llama', variant: 'int4', matchesGoldens: false, edits: [false, true, true] },
  // As onnxruntime-genai's builder writes an int4 Llama: GroupQueryAttention with the rotary fused in, MatMulNBits, genai_config.json.
  { source: 'tiny-llama', variant: ['group-query-attention-rotary', 'int4', 'genai'], matchesGoldens: false, edits: [false, false, true] },
  // MatMulNBits as exporters write them (on the activations as they come), of 8-bit blocks.
  { source: 'tiny-llama', variant: 'q8-blocks', matchesGoldens: false, edits: [false, true, true] },
  // As transformers.js v4 writes model_q4f16.onnx: GroupQueryAttention, MatMulNBits of 4-bit blocks with
  // zero points, GatherBlockQuantized embeddings, float16 activations and cache.
  { source: 'tiny-llama', variant: ['group-query-attention-rotary', 'q4-zero-points', 'gather-block-quantized', 'fp16', 'transformers-js'], matchesGoldens: false, edits: [false, false, true], arrivals: true },
];

const MAX_TOKENS = 24;
/** Other rows, of other lengths, that share the batch with the golden prompts. */
const FILLERS = Array.from({ length: 8 }, (_, i) => 'and then the little cat ran '.repeat(i + 1).slice(0, 7 + 11 * i));

interface Completion {
  text: string;
  tokens: number;
  finish: string;
}

async function complete(server: RunningServer, prompt: string): Promise<Completion> {
  const response = await postJson(server, '/v1/completions', { model: server.model.id, prompt, max_tokens: MAX_TOKENS, temperature: 0, logprobs: 0 });
  expect(response.status).toBe(200);
  const choice = response.body.choices[0];
  // A variant that computes garbage (NaN logits) gives no log-probabilities.
  for (const logprob of choice.logprobs.token_logprobs) expect(Number.isFinite(logprob)).toBe(true);
  return { text: choice.text, tokens: choice.logprobs.token_logprobs.length + (choice.finish_reason === 'stop' ? 1 : 0), finish: choice.finish_reason };
}

/** Decode steps so far, and those that ran more than 8 rows, from the metrics. */
async function batchSizes(server: RunningServer): Promise<{ steps: number; over8: number }> {
  const text = (await request(server, 'GET', '/metrics')).body as string;
  // One model: its samples, whatever their labels (the model's, and the bucket's bound).
  const value = (name: string, labels = '') => Number(new RegExp(`^${name}\\{[^}]*${labels}[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  const steps = value('ortserve_batch_size_count');
  return { steps, over8: steps - value('ortserve_batch_size_bucket', 'le="8"') };
}

/** All the prompts in one request, so that they reach the engine together: choice i is prompt i's. */
async function completeTogether(server: RunningServer, prompts: string[]): Promise<Completion[]> {
  const response = await postJson(server, '/v1/completions', { model: server.model.id, prompt: prompts, max_tokens: MAX_TOKENS, temperature: 0, logprobs: 0 });
  expect(response.status).toBe(200);
  return response.body.choices.map((choice: { text: string; finish_reason: string; logprobs: { token_logprobs: number[] } }) => ({
    text: choice.text,
    tokens: choice.logprobs.token_logprobs.length + (choice.finish_reason === 'stop' ? 1 : 0),
    finish: choice.finish_reason,
  }));
}

/** A streamed completion: `started` resolves with its first piece of text, `text` with the whole. */
function streamed(server: RunningServer, body: Record<string, unknown>): { started: Promise<void>; text: Promise<string> } {
  let started: () => void = () => {};
  const first = new Promise<void>((resolve) => (started = resolve));
  const text = (async () => {
    const response = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, model: server.model.id, stream: true }) });
    let raw = '';
    for await (const chunk of response.body!) {
      raw += Buffer.from(chunk).toString();
      if (raw.includes('"text":')) started();
    }
    started();
    const pieces = raw.split('\n\n').filter((event) => event.startsWith('data: {'));
    return pieces.map((event) => (JSON.parse(event.slice(6)) as { choices: { text: string }[] }).choices[0]?.text ?? '').join('');
  })();
  return { started: first, text };
}

describe.each(CASES.map((entry) => ({ ...entry, name: [entry.variant].flat().join('+') })))('$source $name', ({ source, variant, matchesGoldens, unpaddedRows, edits, arrivals }) => {
  const golden = goldens[source];
  let server: RunningServer;
  let root: string | undefined;

  beforeAll(async () => {
    let dir = MODEL_DIRS[source]!;
    if (variant !== 'as exported') {
      root = mkdtempSync(join(tmpdir(), 'ortserve-variant-'));
      dir = join(root, 'model');
      makeVariant(variant, MODEL_DIRS[source]!, dir);
    }
    server = await startTestServer({ model: dir, servedModelNames: [source], maxBatch: 16 });
  });
  afterAll(async () => {
    await server?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('gives every golden prompt the same tokens alone and batched with 15 rows of other lengths', async () => {
    const alone: Completion[] = [];
    for (const prompt of golden.prompts) alone.push(await complete(server, prompt.prompt));
    if (matchesGoldens) {
      alone.forEach((completion, i) => expect(completion.text).toBe(golden.prompts[i]!.completion_text));
    }
    const before = await batchSizes(server);
    const batched = await completeTogether(server, [...golden.prompts.map((prompt) => prompt.prompt), ...FILLERS]);
    expect(batched.slice(0, golden.prompts.length)).toEqual(alone);
    const after = await batchSizes(server);
    // The rows really ran together (more than 8 in many steps), or, for unpadded rows, by length.
    if (!unpaddedRows) expect(after.over8 - before.over8).toBeGreaterThan(10);
    else expect(after.over8 - before.over8).toBe(0);
  });

  it('says which graph edits were made at load, and which the graph has no shape for', () => {
    const made = server.engine.graphRewrites.map((line) => !line.includes('not made'));
    expect(made).toEqual(edits);
  });

  if (arrivals) {
    it('gives every golden prompt the same tokens, greedy and seeded, when it joins rows of other lengths that are decoding', async () => {
      const seeded = { temperature: 0.9, top_p: 0.95, seed: 11 };
      const alone: string[] = [];
      for (const prompt of golden.prompts) alone.push((await complete(server, prompt.prompt)).text);
      const aloneSeeded: string[] = [];
      for (const prompt of golden.prompts) aloneSeeded.push(await streamed(server, { prompt: prompt.prompt, max_tokens: MAX_TOKENS, ...seeded }).text);
      const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
      const before = await batchSizes(server);
      // Long rows of other lengths decode first; the golden prompts join them one by one.
      const decoding = [1, 3, 5, 7].map((i) => streamed(server, { prompt: FILLERS[i], max_tokens: 400, temperature: 0 }));
      await Promise.all(decoding.map((run) => run.started));
      const greedy: Promise<string>[] = [];
      const sampled: Promise<string>[] = [];
      for (const prompt of golden.prompts) {
        greedy.push(streamed(server, { prompt: prompt.prompt, max_tokens: MAX_TOKENS, temperature: 0 }).text);
        await sleep(5);
        sampled.push(streamed(server, { prompt: prompt.prompt, max_tokens: MAX_TOKENS, ...seeded }).text);
        await sleep(5);
      }
      expect(await Promise.all(greedy)).toEqual(alone);
      expect(await Promise.all(sampled)).toEqual(aloneSeeded);
      await Promise.all(decoding.map((run) => run.text));
      const after = await batchSizes(server);
      expect(after.over8 - before.over8).toBeGreaterThan(5);
    });

    it('gives a prompt whose first chunks the prefix cache holds the same tokens as a miss', async () => {
      const prompt = `In a quiet town far away, ${golden.prompts[0]!.prompt} ${FILLERS[6]}`;
      const first = await postJson(server, '/v1/completions', { model: server.model.id, prompt, max_tokens: MAX_TOKENS, temperature: 0 });
      const second = await postJson(server, '/v1/completions', { model: server.model.id, prompt, max_tokens: MAX_TOKENS, temperature: 0 });
      expect(first.body.usage.prompt_tokens_details.cached_tokens).toBe(0);
      expect(second.body.usage.prompt_tokens_details.cached_tokens).toBeGreaterThan(0);
      expect(second.body.choices[0].text).toBe(first.body.choices[0].text);
    });
  }

  if (unpaddedRows) {
    it('still batches rows of one length: the 16 choices of one prompt run together, each as alone', async () => {
      const prompt = golden.prompts[0]!;
      const alone = await complete(server, prompt.prompt);
      const before = await batchSizes(server);
      const response = await postJson(server, '/v1/completions', { model: server.model.id, prompt: prompt.prompt, max_tokens: MAX_TOKENS, temperature: 0, n: 16 });
      const after = await batchSizes(server);
      for (const choice of response.body.choices) expect(choice.text).toBe(alone.text);
      // (A step of the request before may be counted too: its report can come after its answer.)
      expect(after.over8 - before.over8).toBeGreaterThan(10);
    });
  }
});

describe('quantized graphs the runtime cannot run', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'ortserve-variant-'));
    makeVariant('q8-blocks', MODEL_DIRS['tiny-llama']!, join(root, 'model'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  /** The 8-bit variant with every occurrence of one byte string replaced by another of its length. */
  function patched(from: string, to: string): string {
    const dir = mkdtempSync(join(root, 'patched-'));
    cpSync(join(root, 'model'), dir, { recursive: true });
    const path = join(dir, 'model.onnx');
    writeFileSync(path, Buffer.from(readFileSync(path).toString('latin1').replaceAll(from, to), 'latin1'));
    return dir;
  }

  it.each([
    ['an operator the runtime does not know', ['MatMulNBits', 'MatMulNBitz'], /the operator MatMulNBitz of domain com\.microsoft is not one onnxruntime 1\.29 knows/],
    // The `bits` attribute (name, then int 8) set to 3.
    ['MatMulNBits of 3-bit blocks', ['\x0a\x04bits\x18\x08', '\x0a\x04bits\x18\x03'], /the operator MatMulNBits refused its node: Only 2b, 4b and 8b quantization is supported/],
  ] as const)('%s is refused at load, naming the operator', async (_name, [from, to], message) => {
    const failure = await startTestServer({ model: patched(from, to) }).then(
      async (server) => {
        await server.close();
        return undefined;
      },
      (err: Error) => err,
    );
    expect(failure?.name).toBe('ModelLoadError');
    expect(failure?.message).toMatch(message);
  });
});
