import * as ort from 'onnxruntime-node';
import { ContinuousBatcher, type BatcherOptions } from '../../src/engine/thread/batcher.js';
import { DecoderRunner, type DecoderOutput, type DecoderStep } from '../../src/engine/thread/decoder.js';
import type { Choice, PromptRequest, SequenceRequest, TokenUpdate } from '../../src/engine/protocol.js';
import type { DecoderSignature } from '../../src/engine/thread/graph/session.js';

/** Shape of one forward pass: rows and tokens per row. */
interface Pass {
  rows: number;
  tokens: number;
}

const VOCAB = 50;
/** A token id outside the vocabulary: never generated; the stand-in decoder fails any pass that feeds it. */
const POISON = VOCAB;
const signature: DecoderSignature = {
  numLayers: 1,
  numKvHeads: 1,
  headDim: 1,
  kvType: 'float32',
  hasPositionIds: true,
  hasUseCacheBranch: false,
  hasLogitsPositions: false,
  pastNames: ['past_key_values.0.key', 'past_key_values.0.value'],
  presentNames: ['present.0.key', 'present.0.value'],
};

/**
 * A stand-in decoder whose cache holds the token ids themselves and whose next token is a hash of
 * every token the attention mask shows, in order. A row whose cache is misaligned, mixed with
 * another row's or masked wrongly gets other tokens than it gets alone. Records every pass.
 */
class CacheCheckingRunner extends DecoderRunner {
  readonly passes: Pass[] = [];
  /** Whether passes return the whole cache, as `present.*` does, or only the step's new positions. */
  kvOutput: 'present' | 'appended' = 'appended';

  constructor(slots = false) {
    super({} as ort.InferenceSession, { ...signature, ...(slots && { pastSlots: true }) });
  }

  override async run(step: DecoderStep): Promise<DecoderOutput> {
    const { cache, stepLength, inputIds, rowLengths } = step;
    if (inputIds.includes(BigInt(POISON))) throw new Error('the runtime failed');
    const rows = cache.batchSize;
    const past = cache.pastLength;
    const width = past + stepLength;
    this.passes.push({ rows, tokens: stepLength });
    if (rowLengths && !this.signature.pastSlots) throw new Error('rows of different lengths in a padded cache');
    const mask = cache.attentionMask(stepLength);
    const previous = cache.pastTensors[0]!.data as Float32Array;
    const tokens = new Float32Array(rows * width);
    for (let row = 0; row < rows; row++) {
      tokens.set(previous.subarray(row * past, (row + 1) * past), row * width);
      for (let i = 0; i < stepLength; i++) tokens[row * width + past + i] = Number(inputIds[row * stepLength + i]);
    }
    const logitsAt = (row: number, position: number) => {
      let hash = 0;
      let seen = 0;
      for (let slot = 0; slot <= past + position; slot++) {
        if (mask[row * width + slot] === 1n) hash = (hash + tokens[row * width + slot]! * ++seen) % VOCAB;
      }
      const logits = new Float32Array(VOCAB);
      logits[hash] = 1;
      return logits;
    };
    const present = () => new ort.Tensor('float32', tokens, [rows, 1, width, 1]);
    const appended = () => new ort.Tensor('float32', Float32Array.from(inputIds, Number), [rows, 1, stepLength, 1]);
    return {
      logits: Array.from({ length: rows }, (_, row) => logitsAt(row, (rowLengths?.[row] ?? stepLength) - 1)),
      logitsAt,
      kv: this.kvOutput === 'present' ? { present: [present(), present()] } : { appended: [appended(), appended()] },
    };
  }
}

const CHUNK = 4;
/** The decoder of a graph whose past is padded to one length. */
const runner = new CacheCheckingRunner();
/** The decoder of a graph that takes its past in slots (see slot-kv-cache.ts). */
const slotRunner = new CacheCheckingRunner(true);

let nextId = 1;
/** A greedy sequence with a prompt of its own, of a request of its own unless `group` says otherwise. */
function sequence(promptLength: number, maxTokens: number, group?: number): SequenceRequest {
  const id = nextId++;
  return {
    id,
    group: group ?? id,
    cachePartition: '',
    promptIds: Array.from({ length: promptLength }, (_, i) => 1 + ((i * 37 + id * 11) % (VOCAB - 1))),
    maxTokens,
    temperature: 0,
    topP: 1,
    seedStream: 0,
    stopTokenIds: [],
    presencePenalty: 0,
    frequencyPenalty: 0,
    logitBias: [],
  };
}

/** Submits a sequence, or the choices of one prompt together when `request` lists several. */
function submit(batcher: ContinuousBatcher, request: SequenceRequest | ForkedRequest): void {
  if ('choices' in request) {
    const { choices, ...prompt } = request;
    batcher.submit(prompt, choices);
  } else {
    const { id, seedStream, ...prompt } = request;
    batcher.submit(prompt, [{ id, seedStream }]);
  }
}

/** One prompt with several choices, which the batcher prefills once and forks. */
interface ForkedRequest extends PromptRequest {
  id: number;
  choices: Choice[];
}

/** A seeded prompt of `n` choices, with seed streams 0…n−1 and ids of their own. */
function forked(promptLength: number, maxTokens: number, n: number): ForkedRequest {
  const base = sequence(promptLength, maxTokens);
  const { id, seedStream: _, ...prompt } = base;
  return { ...prompt, id, temperature: 1, seed: 7, choices: Array.from({ length: n }, (_, i) => ({ id: i === 0 ? id : nextId++, seedStream: i })) };
}

/** The same choices as separate requests, one sequence each. */
const unforked = (request: ForkedRequest): SequenceRequest[] => {
  const { choices, ...prompt } = request;
  return choices.map((choice) => ({ ...prompt, ...choice }));
};

/**
 * Submits the first wave of requests, and each later wave once the one before has produced
 * `afterTokens` tokens; runs them all to the end and returns each one's tokens, the ids of those
 * that failed (a failure rejects unless `allowFailures`) and the passes made.
 */
async function generate(
  waves: (SequenceRequest | ForkedRequest)[][],
  { decoder = runner, ...options }: Partial<BatcherOptions> & { decoder?: CacheCheckingRunner } = {},
  afterTokens = 1,
  allowFailures = false,
): Promise<{ tokens: Map<number, number[]>; failed: number[]; passes: Pass[]; started: number[]; cached: Map<number, number> }> {
  decoder.passes.length = 0;
  const tokens = new Map<number, number[]>();
  /** Prompt tokens each sequence had from the prefix cache. */
  const cached = new Map<number, number>();
  /** Sequence ids in the order of their first tokens. */
  const started: number[] = [];
  const failed: number[] = [];
  const pending = new Set(waves.flat().flatMap((request) => ('choices' in request ? request.choices.map((choice) => choice.id) : [request.id])));
  let seen = 0;
  let wave = 0;
  let finish: () => void = () => {};
  let fail: (err: Error) => void = () => {};
  const finished = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  const batcher: ContinuousBatcher = new ContinuousBatcher(
    decoder,
    { maxBatch: 16, maxKvTokens: 16 * 128, prefillChunk: CHUNK, contextLength: 128, ...options },
    {
      tokens(updates: TokenUpdate[]) {
        for (const update of updates) {
          if (!tokens.has(update.id)) started.push(update.id);
          if (update.cachedTokens !== undefined) cached.set(update.id, update.cachedTokens);
          tokens.set(update.id, [...(tokens.get(update.id) ?? []), ...(update.tokenId === undefined ? [] : [update.tokenId])]);
          if (update.finishReason) pending.delete(update.id);
        }
        seen += updates.length;
        if (wave < waves.length - 1 && seen >= afterTokens) {
          wave++;
          seen = 0;
          for (const request of waves[wave]!) submit(batcher, request);
        }
        if (pending.size === 0) finish();
      },
      failed(ids, message) {
        if (!allowFailures) fail(new Error(`sequences ${ids.join(', ')} failed: ${message}`));
        failed.push(...ids);
        for (const id of ids) pending.delete(id);
        if (pending.size === 0) finish();
      },
      step() {},
    },
  );
  for (const request of waves[0]!) submit(batcher, request);
  await finished;
  await batcher.stop();
  return { tokens, failed, passes: [...decoder.passes], started, cached };
}

describe('ContinuousBatcher', () => {
  it('prefills prompts that arrive together in one pass per chunk, then decodes them together', async () => {
    const { passes } = await generate([[sequence(8, 3), sequence(8, 3), sequence(8, 3)]]);
    expect(passes).toEqual([
      { rows: 3, tokens: CHUNK },
      { rows: 3, tokens: CHUNK },
      { rows: 3, tokens: 1 },
      { rows: 3, tokens: 1 },
    ]);
  });

  it('cuts every prompt at the same offsets, running rows whose next chunk is shorter on their own', async () => {
    // Chunks of 4: 10 tokens → 4, 4, 2; 9 → 4, 4, 1; 8 → 4, 4.
    const { passes } = await generate([[sequence(10, 1), sequence(9, 1), sequence(8, 1)]]);
    expect(passes).toEqual([
      { rows: 3, tokens: CHUNK },
      { rows: 3, tokens: CHUNK },
      { rows: 1, tokens: 2 },
      { rows: 1, tokens: 1 },
    ]);
  });

  it.each(['present', 'appended'] as const)('gives every sequence the tokens it gets alone, whatever it was batched with (%s keys and values)', async (kvOutput) => {
    runner.kvOutput = kvOutput;
    const lengths = [10, 3, 9, 14, 5, 10, 10, 3, 8];
    const requests = lengths.map((length, i) => sequence(length, 3 + ((i * 5) % 7)));
    const alone: (number[] | undefined)[] = [];
    for (const request of requests) alone.push((await generate([[request]])).tokens.get(request.id));
    expect(new Set(alone.map((tokens) => tokens?.join())).size).toBe(requests.length);
    const together = await generate([requests]);
    expect(requests.map((request) => together.tokens.get(request.id))).toEqual(alone);
    const staggered = await generate([requests.slice(0, 3), requests.slice(3)], {}, 2);
    expect(requests.map((request) => staggered.tokens.get(request.id))).toEqual(alone);
  });

  it('while fewer wait than decode, takes newcomers one at a time so running streams stall by one chunk', async () => {
    const running = [sequence(4, 12), sequence(4, 12), sequence(4, 12)];
    const newcomers = [sequence(4, 2), sequence(4, 2)];
    const { passes } = await generate([running, newcomers], {}, 3);
    const prefills = passes.filter((pass) => pass.tokens > 1);
    expect(prefills).toEqual([
      { rows: 3, tokens: CHUNK },
      { rows: 1, tokens: CHUNK },
      { rows: 1, tokens: CHUNK },
    ]);
  });

  it('when at least as many wait as decode, prefills them all together', async () => {
    const running = [sequence(4, 12), sequence(4, 12)];
    const newcomers = [sequence(4, 2), sequence(4, 2), sequence(4, 2)];
    const { passes } = await generate([running, newcomers], {}, 2);
    expect(passes.filter((pass) => pass.tokens > 1)).toEqual([
      { rows: 2, tokens: CHUNK },
      { rows: 3, tokens: CHUNK },
    ]);
  });

  it('admits no more rows than --max-batch, and the rest as rows leave', async () => {
    const { passes } = await generate([[sequence(4, 2), sequence(4, 2), sequence(4, 2)]], { maxBatch: 2 });
    expect(Math.max(...passes.map((pass) => pass.rows))).toBe(2);
    expect(passes.filter((pass) => pass.tokens > 1)).toEqual([
      { rows: 2, tokens: CHUNK },
      { rows: 1, tokens: CHUNK },
    ]);
  });

  it('shares batch slots between requests: a small request that comes after a large one runs before the large one has run', async () => {
    // One request of 24 sequences, then one of a single sequence, with 4 slots.
    const large = Array.from({ length: 24 }, () => sequence(4, 6, 1000));
    const small = sequence(4, 2, 2000);
    const { started } = await generate([large, [small]], { maxBatch: 4 }, 1);
    // The two requests take turns at the free slots: the small one runs in the second wave, ahead
    // of the 18 large ones still waiting, not after all 24.
    const ids = (requests: SequenceRequest[]) => requests.map((request) => request.id);
    expect(started.slice(0, 4)).toEqual(ids(large.slice(0, 4)));
    expect(started.slice(4, 8)).toEqual([large[4]!.id, small.id, large[5]!.id, large[6]!.id]);
  });

  it('prefills the prompt of n choices once and forks it: one row per prompt in prefill, n in decode', async () => {
    const { passes } = await generate([[forked(8, 3, 5)]]);
    expect(passes).toEqual([
      { rows: 1, tokens: CHUNK },
      { rows: 1, tokens: CHUNK },
      { rows: 5, tokens: 1 },
      { rows: 5, tokens: 1 },
    ]);
  });

  it('gives each forked choice the tokens it gets as a request of its own, with the same seed stream', async () => {
    const request = forked(10, 6, 4);
    const alone = unforked(request);
    const separate = await generate([alone]);
    const together = await generate([[request]]);
    const ids = request.choices.map((choice) => choice.id);
    const tokens = (result: { tokens: Map<number, number[]> }) => ids.map((id) => result.tokens.get(id));
    expect(new Set(tokens(separate).map((list) => list?.join())).size).toBeGreaterThan(1);
    expect(tokens(together)).toEqual(tokens(separate));
  });

  it('forks no more choices than there are free slots; the others are prefilled when slots free', async () => {
    const { passes } = await generate([[forked(4, 2, 5)]], { maxBatch: 2 });
    expect(Math.max(...passes.map((pass) => pass.rows))).toBe(2);
    expect(passes.filter((pass) => pass.tokens > 1)).toEqual([
      { rows: 1, tokens: CHUNK },
      { rows: 1, tokens: CHUNK },
      { rows: 1, tokens: CHUNK },
    ]);
  });

  it('a forked choice cancelled before its prompt is prefilled leaves the others as they were', async () => {
    const request = forked(8, 4, 3);
    const expected = await generate([[request]]);
    const [kept, cancelled, other] = request.choices.map((choice) => choice.id);
    const tokens = new Map<number, number[]>();
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    const ended = new Set<number>();
    const batcher = new ContinuousBatcher(runner, { maxBatch: 16, maxKvTokens: 16 * 128, prefillChunk: CHUNK, contextLength: 128 }, {
      tokens(updates) {
        for (const update of updates) {
          tokens.set(update.id, [...(tokens.get(update.id) ?? []), ...(update.tokenId === undefined ? [] : [update.tokenId])]);
          if (update.finishReason) ended.add(update.id);
        }
        if (ended.size === 2) done();
      },
      failed: () => done(),
      step() {},
    });
    submit(batcher, request);
    batcher.cancel(cancelled!);
    await finished;
    await batcher.stop();
    expect(tokens.has(cancelled!)).toBe(false);
    expect(tokens.get(kept!)).toEqual(expected.tokens.get(kept!));
    expect(tokens.get(other!)).toEqual(expected.tokens.get(other!));
  });

  it('fails only the sequences of a pass the runtime fails, and the others carry on', async () => {
    // Chunks of 4: the second pass splits the 6-token prompt off and runs the two 8-token ones,
    // where the poisoned token makes the runtime fail.
    const poisoned = sequence(8, 3);
    poisoned.promptIds[5] = POISON;
    const short = sequence(6, 3);
    const neighbour = sequence(8, 3);
    const alone = (await generate([[short]])).tokens.get(short.id);
    const { tokens, failed } = await generate([[poisoned, short, neighbour]], {}, 1, true);
    expect(failed).toEqual([poisoned.id, neighbour.id]);
    expect(tokens.get(short.id)).toEqual(alone);
  });

  describe('for a graph that takes every row as unpadded (GroupQueryAttention)', () => {
    const unpadded = { unpaddedRows: true };

    it('runs prompts of one length together, prefilled in one pass, and those of another length after them', async () => {
      const { passes, tokens } = await generate([[sequence(8, 3), sequence(5, 3), sequence(8, 3)]], unpadded);
      expect(passes).toEqual([
        { rows: 2, tokens: 8 },
        { rows: 2, tokens: 1 },
        { rows: 2, tokens: 1 },
        { rows: 1, tokens: 5 },
        { rows: 1, tokens: 1 },
        { rows: 1, tokens: 1 },
      ]);
      expect([...tokens.values()].every((ids) => ids.length === 3)).toBe(true);
    });

    it('takes no new prompt into a running batch, and forks the choices of one prompt together', async () => {
      const first = forked(6, 4, 3);
      const later = sequence(6, 2);
      const { passes } = await generate([[first], [later]], unpadded);
      expect(passes).toEqual([
        { rows: 1, tokens: 6 },
        { rows: 3, tokens: 1 },
        { rows: 3, tokens: 1 },
        { rows: 3, tokens: 1 },
        { rows: 1, tokens: 6 },
        { rows: 1, tokens: 1 },
      ]);
    });
  });
});

describe('ContinuousBatcher for a graph that takes its past in slots', () => {
  const slots = { decoder: slotRunner };

  it('gives every sequence the tokens it gets alone, whatever it was batched with and whenever it arrived', async () => {
    const lengths = [10, 3, 9, 14, 5, 10, 10, 3, 8];
    const requests = lengths.map((length, i) => sequence(length, 3 + ((i * 5) % 7)));
    const alone: (number[] | undefined)[] = [];
    for (const request of requests) alone.push((await generate([[request]], slots)).tokens.get(request.id));
    expect(new Set(alone.map((tokens) => tokens?.join())).size).toBe(requests.length);
    expect(alone).toEqual(await Promise.all(requests.map(async (request) => (await generate([[request]])).tokens.get(request.id))));
    const together = await generate([requests], slots);
    expect(requests.map((request) => together.tokens.get(request.id))).toEqual(alone);
    const staggered = await generate([requests.slice(0, 3), requests.slice(3, 5), requests.slice(5)], slots, 2);
    expect(requests.map((request) => staggered.tokens.get(request.id))).toEqual(alone);
  });

  it('prefills prompts of different lengths in one pass per chunk, a shorter last chunk padded after its tokens', async () => {
    // Chunks of 4: 10 tokens → 4, 4, 2; 9 → 4, 4, 1; 3 → 3.
    const { passes } = await generate([[sequence(10, 1), sequence(9, 1), sequence(3, 1)]], slots);
    expect(passes).toEqual([
      { rows: 3, tokens: CHUNK },
      { rows: 2, tokens: CHUNK },
      { rows: 2, tokens: 2 },
    ]);
  });

  it('takes every prompt that fits into the pass of those already prefilling, at its own offset, while others decode', async () => {
    const running = sequence(2, 12);
    const first = sequence(12, 2);
    const second = sequence(8, 2);
    // Each wave arrives after two tokens: the second prompt joins the first after two of its chunks.
    const { passes, tokens } = await generate([[running], [first], [second]], slots, 2);
    expect(passes.filter((pass) => pass.tokens > 1)).toEqual([
      { rows: 1, tokens: 2 },
      { rows: 1, tokens: CHUNK },
      { rows: 1, tokens: CHUNK },
      { rows: 2, tokens: CHUNK },
      { rows: 1, tokens: CHUNK },
    ]);
    for (const request of [running, first, second]) expect(tokens.get(request.id)).toEqual((await generate([[request]], slots)).tokens.get(request.id));
  });

  it('prefills prompts with parts in the prefix cache and prompts without in one pass, each from its own offset', async () => {
    const first = sequence(12, 1);
    const repeated = { ...first, id: nextId++, group: nextId };
    const other = sequence(8, 1);
    const { passes, cached, tokens } = await generate([[first], [repeated, other]], { ...slots, prefixCacheTokens: 64 }, 1);
    expect(cached.get(repeated.id)).toBe(2 * CHUNK);
    expect(passes.slice(3)).toEqual([
      { rows: 2, tokens: CHUNK },
      { rows: 1, tokens: CHUNK },
    ]);
    expect(tokens.get(repeated.id)).toEqual(tokens.get(first.id));
  });

  it('fails the sequences of the pass the runtime fails, and the running ones carry on', async () => {
    const running = sequence(4, 6);
    const poisoned = sequence(8, 3);
    poisoned.promptIds[5] = POISON;
    const alone = (await generate([[{ ...running }]], slots)).tokens.get(running.id);
    const { tokens, failed } = await generate([[running], [poisoned]], slots, 1, true);
    expect(failed).toEqual([poisoned.id]);
    expect(tokens.get(running.id)).toEqual(alone);
  });
});

describe('ContinuousBatcher with a prefix cache', () => {
  const options = { prefixCacheTokens: 64 };
  /** `request` again under a new id. */
  const again = (request: SequenceRequest, promptIds = request.promptIds): SequenceRequest => {
    const id = nextId++;
    return { ...request, id, group: id, promptIds };
  };

  it("starts a prompt after the whole chunks an earlier prompt left, and gives it the tokens it gets without them", async () => {
    const first = sequence(10, 3);
    const repeated = again(first);
    // The first 4 tokens shared, then another chunk.
    const branched = again(first, [...first.promptIds.slice(0, CHUNK), ...sequence(6, 0).promptIds]);
    const { tokens, passes, cached } = await generate([[first], [repeated], [branched]], options, 3);
    expect(cached.get(first.id)).toBeUndefined();
    expect(cached.get(repeated.id)).toBe(2 * CHUNK);
    expect(cached.get(branched.id)).toBe(CHUNK);
    // first: 4 + 4 + 2 prefilled, 2 steps; repeated: only the last 2; branched: 4 + 2.
    expect(passes.map((pass) => pass.tokens)).toEqual([4, 4, 2, 1, 1, 2, 1, 1, 4, 2, 1, 1]);
    const { tokens: alone } = await generate([[again(first)], [again(branched, branched.promptIds)]], {}, 3);
    expect(tokens.get(repeated.id)).toEqual(tokens.get(first.id));
    expect([...alone.values()]).toEqual([tokens.get(first.id), tokens.get(branched.id)]);
  });

  it('leaves at least one prompt token to prefill, whose logits give the first token', async () => {
    const first = sequence(8, 2);
    const repeated = again(first);
    const { tokens, passes, cached } = await generate([[first], [repeated]], options, 2);
    expect(cached.get(repeated.id)).toBe(CHUNK);
    expect(passes.map((pass) => pass.tokens)).toEqual([4, 4, 1, 4, 1]);
    expect(tokens.get(repeated.id)).toEqual(tokens.get(first.id));
  });

  it('reuses nothing for a prompt whose log-probabilities are asked for (they need every position)', async () => {
    const first = sequence(10, 1);
    const scored = { ...again(first), promptLogprobs: 0 };
    const { cached, passes } = await generate([[first], [scored]], options, 1);
    expect(cached.get(scored.id)).toBeUndefined();
    expect(passes.map((pass) => pass.tokens)).toEqual([4, 4, 2, 4, 4, 2]);
  });

  it('caches nothing with prefixCacheTokens 0', async () => {
    const first = sequence(10, 1);
    const { cached } = await generate([[first], [again(first)]], { prefixCacheTokens: 0 }, 1);
    expect(cached.size).toBe(0);
  });

  it('groups prompts taken together by how much of each is cached', async () => {
    const first = sequence(12, 1);
    const { tokens, cached, passes } = await generate([[first], [again(first), again(first, first.promptIds.map((id) => (id % (VOCAB - 1)) + 1)), again(first, [...first.promptIds.slice(0, 8), 5, 6, 7, 8])]], options, 1);
    expect([...cached.values()]).toEqual([8, 8]);
    // Second wave: the two with 8 cached, their last chunk together; then the unseen prompt from its start.
    expect(passes.slice(3)).toEqual([
      { rows: 2, tokens: 4 },
      { rows: 1, tokens: 4 },
      { rows: 1, tokens: 4 },
      { rows: 1, tokens: 4 },
    ]);
    expect(tokens.size).toBe(4);
  });
});

