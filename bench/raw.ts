/** The bar: a plain greedy loop over onnxruntime-node, all rows in one batch tensor, KV cache fed back each step. */
import * as ort from 'onnxruntime-node';
import { loopTimes, NEW_TOKENS, PROMPT_TOKENS, summarize, type LoopTimes, type Summary } from './common.js';
import { BATCHES, MAX_ROWS, type ModelInfo, type Prompt } from './model-sets.js';

/** Most raw batch-16 runs spent replacing prompts whose greedy continuation hits EOS. */
const SCREEN_ATTEMPTS = 3;

/** What the raw loop needs to know about a model. */
export interface RawModel {
  eosIds: ReadonlySet<number>;
  /** KV heads and head size of the past_key_values.* inputs. */
  numHeads: number;
  headDim: number;
}

export interface RawResult extends LoopTimes {
  /** Rows whose greedy tokens contain an EOS id (the loop does not stop there). */
  rowsWithEos: number;
  /** Greedy tokens of each row, to compare with the server's. */
  tokens: number[][];
}

/** A plain greedy loop: all rows in one batch tensor, KV cache fed back each step. */
export async function runRaw(session: ort.InferenceSession, model: RawModel, prompts: number[][]): Promise<RawResult> {
  const batch = prompts.length;
  const pastNames = session.inputNames.filter((name) => name.startsWith('past_key_values.'));
  const hasPositionIds = session.inputNames.includes('position_ids');
  const argmaxRows = (logits: ort.Tensor, seq: number): number[] => {
    const vocab = logits.dims[2]!;
    const data = logits.data as Float32Array;
    const next: number[] = [];
    for (let row = 0; row < batch; row++) {
      const offset = (row * seq + seq - 1) * vocab;
      let best = 0;
      let bestValue = data[offset]!;
      for (let i = 1; i < vocab; i++) {
        const value = data[offset + i]!;
        if (value > bestValue) {
          bestValue = value;
          best = i;
        }
      }
      next.push(best);
    }
    return next;
  };
  const step = async (tokens: number[][], past: Record<string, ort.Tensor>, pastLength: number) => {
    const seq = tokens[0]!.length;
    const total = pastLength + seq;
    const feeds: Record<string, ort.Tensor> = {
      ...past,
      input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens.flat(), BigInt), [batch, seq]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(batch * total).fill(1n), [batch, total]),
    };
    if (hasPositionIds) {
      const positions = new BigInt64Array(batch * seq);
      for (let i = 0; i < positions.length; i++) positions[i] = BigInt(pastLength + (i % seq));
      feeds.position_ids = new ort.Tensor('int64', positions, [batch, seq]);
    }
    const outputs = await session.run(feeds);
    const next: Record<string, ort.Tensor> = {};
    for (const name of pastNames) next[name] = outputs[name.replace('past_key_values.', 'present.')]!;
    return { past: next, tokens: argmaxRows(outputs.logits!, seq) };
  };
  const emptyPast = Object.fromEntries(
    pastNames.map((name) => [name, new ort.Tensor('float32', new Float32Array(0), [batch, model.numHeads, 0, model.headDim])]),
  );

  // Warm-up at this batch size: a short prefill and two decode steps.
  let warm = await step(prompts.map((p) => p.slice(0, 8)), emptyPast, 0);
  for (let i = 0; i < 2; i++) warm = await step(warm.tokens.map((t) => [t]), warm.past, 8 + i);

  const generated: number[][] = prompts.map(() => []);
  const prefillStart = performance.now();
  let state = await step(prompts, emptyPast, 0);
  const prefillMs = performance.now() - prefillStart;
  state.tokens.forEach((t, row) => generated[row]!.push(t));
  const stepTimes: number[] = [];
  for (let i = 1; i < NEW_TOKENS; i++) {
    const started = performance.now();
    state = await step(state.tokens.map((t) => [t]), state.past, PROMPT_TOKENS + i - 1);
    stepTimes.push(performance.now() - started);
    state.tokens.forEach((t, row) => generated[row]!.push(t));
  }
  return {
    ...loopTimes(batch, prefillMs, stepTimes, NEW_TOKENS),
    rowsWithEos: generated.filter((row) => row.some((id) => model.eosIds.has(id))).length,
    tokens: generated,
  };
}


/**
 * The logits after `ids` (one sequence, prefilled at once with an empty cache): what the raw loop's
 * model says of the next token, to judge where another runner's greedy ids part from its own.
 */
export async function lastLogits(session: ort.InferenceSession, model: RawModel, ids: readonly number[]): Promise<Float32Array> {
  const length = ids.length;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, length]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(length).fill(1n), [1, length]),
  };
  if (session.inputNames.includes('position_ids')) feeds.position_ids = new ort.Tensor('int64', BigInt64Array.from(ids, (_, i) => BigInt(i)), [1, length]);
  for (const name of session.inputNames.filter((n) => n.startsWith('past_key_values.'))) {
    feeds[name] = new ort.Tensor('float32', new Float32Array(0), [1, model.numHeads, 0, model.headDim]);
  }
  const logits = (await session.run(feeds)).logits!;
  const vocab = logits.dims[2]!;
  return (logits.data as Float32Array).slice((length - 1) * vocab, length * vocab);
}

// ---------- the bench's rounds ----------

/**
 * Screening (and the raw loop's warm-up): a raw batch-16 run; prompts whose greedy continuation
 * hits EOS within NEW_TOKENS (a trained model may end its story) are replaced, so that every row
 * and every stream runs the full NEW_TOKENS tokens. Returns the prompts used and the raw loop's
 * greedy ids of each (up to an EOS, where one still came).
 */
export async function screenPrompts(session: ort.InferenceSession, model: ModelInfo, candidates: Prompt[], notes: string[]): Promise<{ prompts: Prompt[]; rawIds: number[][] }> {
  let prompts = candidates.slice(0, MAX_ROWS);
  let screen = await runRaw(session, model, prompts.map((p) => p.ids));
  const excluded = new Set<Prompt>();
  for (let attempt = 1; attempt < SCREEN_ATTEMPTS && screen.rowsWithEos > 0; attempt++) {
    screen.tokens.forEach((ids, row) => {
      if (ids.some((id) => model.eosIds.has(id))) excluded.add(prompts[row]!);
    });
    const usable = candidates.filter((p) => !excluded.has(p));
    if (usable.length < MAX_ROWS) break;
    notes.push(`screening: ${screen.rowsWithEos} prompt(s) led to EOS within ${NEW_TOKENS} greedy tokens and were replaced by other candidates`);
    prompts = usable.slice(0, MAX_ROWS);
    screen = await runRaw(session, model, prompts.map((p) => p.ids));
  }
  const rawIds = screen.tokens.map((ids) => {
    const eos = ids.findIndex((id) => model.eosIds.has(id));
    return eos === -1 ? ids : ids.slice(0, eos);
  });
  return { prompts, rawIds };
}

/** The raw loop's summaries, and the median runs at batch 1 and 16 with their greedy tokens. */
export interface RawReport {
  summaries: Summary<RawResult>[];
  batch1: RawResult;
  batch16: RawResult;
}

/** The raw loop's runs of one model, round by round, at each of BATCHES. */
export class RawRounds {
  private readonly runs = new Map<number, RawResult[]>(BATCHES.map((batch) => [batch, []]));

  constructor(
    private readonly session: ort.InferenceSession,
    private readonly model: RawModel,
    private readonly prompts: Prompt[],
  ) {}

  async round(): Promise<void> {
    for (const batch of BATCHES) this.runs.get(batch)!.push(await runRaw(this.session, this.model, this.prompts.slice(0, batch).map((p) => p.ids)));
  }

  /** The median round (by e2e tokens/s) of each batch size; what went amiss goes to `notes`. */
  report(notes: string[]): RawReport {
    const summaries = BATCHES.map((batch) => summarize(this.runs.get(batch)!, (r) => r.endToEndTokensPerSecond));
    for (const r of summaries) if (r.median.rowsWithEos > 0) notes.push(`raw batch ${r.median.batch}: ${r.median.rowsWithEos} row(s) produced EOS within ${NEW_TOKENS} tokens (the loop runs on regardless)`);
    const batch1 = summaries.find((r) => r.median.batch === 1)!.median;
    const batch16 = summaries.find((r) => r.median.batch === 16)!.median;
    if (JSON.stringify(batch1.tokens[0]) !== JSON.stringify(batch16.tokens[0])) notes.push('raw: row 0 greedy tokens differ between batch 1 and batch 16');
    return { summaries, batch1, batch16 };
  }
}
