import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { addLogitsPositions, LOGITS_POSITIONS } from '../../src/engine/thread/graph/logits-positions.js';

export const STEP = 5;

export interface LogitsPositionsCheck {
  vocab: number;
  /** Dims of `logits` with `logits_positions` [STEP − 1], then [0, 3]. */
  lastDims: number[];
  pickedDims: number[];
  /** Largest difference from the unedited graph's logits at STEP − 1, 0 and 3. */
  differences: number[];
  /** Whether the logits at positions 0 and 3 differ from each other. */
  pickedRowsDiffer: boolean;
}

/** Runs one prefill step of STEP tokens over an empty cache; `extra` adds inputs. */
async function logitsOf(session: ort.InferenceSession, extra: Record<string, ort.Tensor> = {}): Promise<ort.Tensor> {
  const past = session.inputNames.filter((name) => name.startsWith('past_key_values.'));
  const meta = session.inputMetadata.find((m) => m.name === past[0]) as { shape: readonly (number | string)[] };
  const [heads, dim] = [meta.shape[1], meta.shape[3]] as [number, number];
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from([5n, 17n, 42n, 7n, 99n]), [1, STEP]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(STEP).fill(1n), [1, STEP]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n, 3n, 4n]), [1, STEP]),
    ...extra,
  };
  for (const name of past) feeds[name] = new ort.Tensor('float32', new Float32Array(0), [1, heads, 0, dim]);
  return (await session.run(feeds)).logits!;
}

const positions = (...values: number[]) => new ort.Tensor('int64', BigInt64Array.from(values, BigInt), [values.length]);

/** Compares the logits of the graph at `modelPath` with those of its edited copy. */
export async function run({ modelPath }: { modelPath: string }): Promise<LogitsPositionsCheck> {
  const original = await ort.InferenceSession.create(modelPath);
  const edited = await ort.InferenceSession.create(addLogitsPositions(readFileSync(modelPath))!);
  const all = await logitsOf(original);
  const vocab = all.dims[2]!;
  const row = (tensor: ort.Tensor, i: number) => (tensor.data as Float32Array).subarray(i * vocab, (i + 1) * vocab);
  const difference = (a: Float32Array, b: Float32Array) => a.reduce((max, value, i) => Math.max(max, Math.abs(value - b[i]!)), 0);
  const last = await logitsOf(edited, { [LOGITS_POSITIONS]: positions(STEP - 1) });
  const picked = await logitsOf(edited, { [LOGITS_POSITIONS]: positions(0, 3) });
  const result = {
    vocab,
    lastDims: [...last.dims],
    pickedDims: [...picked.dims],
    differences: [difference(row(last, 0), row(all, STEP - 1)), difference(row(picked, 0), row(all, 0)), difference(row(picked, 1), row(all, 3))],
    pickedRowsDiffer: difference(row(picked, 0), row(picked, 1)) > 0,
  };
  await original.release();
  await edited.release();
  return result;
}
