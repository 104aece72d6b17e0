import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { BatchKvCache } from '../../src/engine/thread/kv-cache.js';
import { addNewKvOutputs, newKvName } from '../../src/engine/thread/graph/new-kv-outputs.js';
import { maxDifference } from './differences.js';

export const PROMPT = [5n, 17n, 42n, 7n, 99n];
export const DECODE_STEPS = 4;

export interface NewKvCheck {
  /** Dims of the first `new_key_values.*` output at each step. */
  newKvDims: number[][];
  /** Largest difference, per step, between the new keys/values and the last positions of `present.*`. */
  newKvDifferences: number[];
  /** Largest difference, per step, between the logits of the edited graph fed by the appending cache and the original's. */
  logitsDifferences: number[];
  /** Whether the logits change from step to step (so equal logits mean something). */
  logitsMove: boolean;
}


/**
 * Generates greedily with the original graph (its `present.*` fed back) and with the edited one
 * (its `new_key_values.*` appended by BatchKvCache), the same tokens in both, and compares.
 */
export async function run({ modelPath }: { modelPath: string }): Promise<NewKvCheck> {
  const original = await ort.InferenceSession.create(modelPath);
  const edited = await ort.InferenceSession.create(addNewKvOutputs(readFileSync(modelPath))!);
  const pastNames = original.inputNames.filter((name) => name.startsWith('past_key_values.'));
  const presentNames = pastNames.map((name) => name.replace('past_key_values.', 'present.'));
  const meta = original.inputMetadata.find((m) => m.name === pastNames[0]) as { shape: readonly (number | string)[] };
  const [heads, dim] = [meta.shape[1], meta.shape[3]] as [number, number];
  const layout = { tensorCount: pastNames.length, numKvHeads: heads, headDim: dim, kvType: 'float32' as const };
  const originalCache = BatchKvCache.empty(layout, 1);
  const editedCache = BatchKvCache.empty(layout, 1);

  const result: NewKvCheck = { newKvDims: [], newKvDifferences: [], logitsDifferences: [], logitsMove: false };
  let ids = PROMPT;
  let previousLogits: Float32Array | undefined;
  for (let step = 0; step <= DECODE_STEPS; step++) {
    const past = originalCache.pastLength;
    const feeds = (cache: BatchKvCache) => ({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids), [1, ids.length]),
      attention_mask: new ort.Tensor('int64', cache.attentionMask(ids.length), [1, past + ids.length]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from(ids, (_, i) => BigInt(past + i)), [1, ids.length]),
      ...(original.inputNames.includes('use_cache_branch') && { use_cache_branch: new ort.Tensor('bool', Uint8Array.of(past > 0 ? 1 : 0), [1]) }),
      ...Object.fromEntries(pastNames.map((name, i) => [name, cache.pastTensors[i]!])),
    });
    const before = await original.run(feeds(originalCache));
    const after = await edited.run(feeds(editedCache), ['logits', ...presentNames.map(newKvName)]);
    const present = presentNames.map((name) => before[name]!);
    const appended = presentNames.map((name) => after[newKvName(name)]!);
    result.newKvDims.push([...appended[0]!.dims]);
    result.newKvDifferences.push(
      Math.max(
        ...present.map((tensor, t) => {
          const whole = tensor.data as Float32Array;
          const added = appended[t]!.data as Float32Array;
          const total = past + ids.length;
          let max = 0;
          for (let head = 0; head < heads; head++) {
            const tail = whole.subarray((head * total + past) * dim, (head + 1) * total * dim);
            max = Math.max(max, maxDifference(tail, added.subarray(head * ids.length * dim, (head + 1) * ids.length * dim)));
          }
          return max;
        }),
      ),
    );
    const vocab = before.logits!.dims[2]!;
    const last = (tensor: ort.Tensor) => (tensor.data as Float32Array).slice((ids.length - 1) * vocab, ids.length * vocab);
    const logits = last(before.logits!);
    result.logitsDifferences.push(maxDifference(logits, last(after.logits!)));
    if (previousLogits && maxDifference(previousLogits, logits) > 1e-3) result.logitsMove = true;
    previousLogits = logits;
    originalCache.advance({ present }, ids.length);
    editedCache.advance({ appended }, ids.length);
    ids = [BigInt(logits.indexOf(Math.max(...logits)))];
  }
  await original.release();
  await edited.release();
  return result;
}
