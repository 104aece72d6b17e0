/** The bar: a plain greedy loop over onnxruntime-node, all rows in one batch tensor, KV cache fed back each step. */
import * as ort from 'onnxruntime-node';
import { loopTimes, NEW_TOKENS, PROMPT_TOKENS, type LoopTimes } from './common.js';

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
