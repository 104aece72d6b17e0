import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { DecoderRunner } from '../../src/engine/thread/decoder.js';
import { KvBufferPool, type KvCache, type KvLayout } from '../../src/engine/thread/kv-cache.js';
import { kvCaches } from '../../src/engine/thread/slot-kv-cache.js';
import { addNewKvOutputs } from '../../src/engine/thread/graph/new-kv-outputs.js';
import { readDecoderSignature } from '../../src/engine/thread/graph/session.js';
import { addSlotAttention } from '../../src/engine/thread/graph/slot-attention.js';
import { maxDifference } from './differences.js';

export interface SlotAttentionCheck {
  /** Largest difference between the two graphs' logits, per decode step. */
  logitsDifferences: number[];
  /** Slots per row of the rewritten graph's past at each step: they grow as the rows do. */
  slots: number[];
  /** Whether the logits change from step to step (so equal logits mean something). */
  logitsMove: boolean;
  /** Whether the rewritten graph still has present.* outputs. */
  hasPresent: boolean;
}


/**
 * Rows of different lengths, each prefilled alone, then decoded together greedily: by the graph
 * as exported (its whole presents fed back, rows padded) and by the slot-attention graph (its new
 * keys and values written into slots), with the same tokens, through the engine's own runner and
 * cache. Returns how far the logits differ.
 */
export async function run({ modelPath, numKvHeads, headDim, prompts, steps }: { modelPath: string; numKvHeads: number; headDim: number; prompts: number[][]; steps: number }): Promise<SlotAttentionCheck> {
  const original = readFileSync(modelPath);
  const edited = addSlotAttention(addNewKvOutputs(original)!)!;
  const runners = await Promise.all(
    [original, edited].map(async (bytes) => {
      const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
      return new DecoderRunner(session, readDecoderSignature(session, { numKvHeads, headDim }));
    }),
  );
  const caches = runners.map((runner) => {
    const { signature } = runner;
    const layout: KvLayout = { tensorCount: signature.pastNames.length, numKvHeads: signature.numKvHeads, headDim: signature.headDim, kvType: signature.kvType, slots: signature.pastSlots ?? false };
    const pool = new KvBufferPool(layout.kvType);
    return { caches: kvCaches(layout, pool), cache: undefined as KvCache | undefined };
  });
  let next: number[] = [];
  // Each prompt alone, then its row joins the batch.
  for (const prompt of prompts) {
    const lasts: Float32Array[] = [];
    for (const [i, runner] of runners.entries()) {
      const state = caches[i]!;
      const alone = state.caches.empty(1);
      const output = await runner.run({ inputIds: BigInt64Array.from(prompt, BigInt), stepLength: prompt.length, cache: alone });
      alone.advance(output.kv, prompt.length);
      lasts.push(output.logits[0]!);
      if (state.cache) {
        state.cache = state.cache.join(alone, [0]);
        alone.release();
      } else state.cache = alone;
    }
    next.push(argmax(lasts[0]!));
  }
  const logitsDifferences: number[] = [];
  const slots: number[] = [];
  let logitsMove = false;
  let previous: Float32Array | undefined;
  for (let step = 0; step < steps; step++) {
    const outputs: Float32Array[][] = [];
    for (const [i, runner] of runners.entries()) {
      const cache = caches[i]!.cache!;
      const output = await runner.run({ inputIds: BigInt64Array.from(next, BigInt), stepLength: 1, cache });
      cache.advance(output.kv, 1);
      outputs.push(output.logits);
    }
    slots.push(caches[1]!.cache!.pastLength);
    logitsDifferences.push(Math.max(...outputs[0]!.map((logits, row) => maxDifference(logits, outputs[1]![row]!))));
    if (previous && maxDifference(previous, outputs[0]![0]!) > 1e-3) logitsMove = true;
    previous = outputs[0]![0]!;
    next = outputs[0]!.map(argmax);
  }
  const hasPresent = runners[1]!.signature.pastSlots !== true;
  return { logitsDifferences, slots, logitsMove, hasPresent };
}

function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}
