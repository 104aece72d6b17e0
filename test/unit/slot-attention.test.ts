import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { addNewKvOutputs } from '../../src/engine/thread/graph/new-kv-outputs.js';
import { addSlotAttention } from '../../src/engine/thread/graph/slot-attention.js';
import { makeVariant } from '../../tools/model-variants.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { SlotAttentionCheck } from '../helpers/slot-attention-check.js';
import { MODEL_DIRS } from '../helpers/server.js';
import { runInWorker } from '../helpers/worker.js';

/**
 * The slot-attention graph against the graph as exported, through the engine's runner and cache:
 * rows of 5, 9 and 13 tokens prefilled alone, then 24 steps together (past the first 32 slots, so
 * the buffers grow once).
 */
describe.each([
  ['tinystories-gpt2 (GPT-2)', 'tinystories-gpt2', 8, 32],
  ['tiny-llama (grouped-query attention, RoPE)', 'tiny-llama', 2, 16],
])('slot attention on %s', (_, model, numKvHeads, headDim) => {
  let check: SlotAttentionCheck;

  beforeAll(async () => {
    const prompts = [5, 9, 13].map((length, row) => Array.from({ length }, (_, i) => 11 + row * 29 + i * 7));
    check = await runInWorker<SlotAttentionCheck>(new URL('../helpers/slot-attention-check.ts', import.meta.url), {
      modelPath: join(MODEL_DIRS[model]!, 'model.onnx'),
      numKvHeads,
      headDim,
      prompts,
      steps: 24,
    });
  });

  it('gives the logits of the graph as exported, within 1e-4', () => {
    expect(check.logitsMove).toBe(true);
    expect(Math.max(...check.logitsDifferences)).toBeLessThan(1e-4);
  });

  it('has no present outputs, and its slots double when full', () => {
    expect(check.hasPresent).toBe(false);
    expect(check.slots[0]).toBe(32);
    expect(check.slots.at(-1)).toBe(64);
  });
});

describe('addSlotAttention', () => {
  it('leaves a graph without new_key_values outputs as it is', () => {
    expect(addSlotAttention(readFileSync(join(MODEL_DIRS['tiny-llama']!, 'model.onnx')))).toBeUndefined();
  });

  it('leaves a graph without position_ids as it is (its positions would count the free slots)', () => {
    const root = mkdtempSync(join(tmpdir(), 'ortserve-slots-'));
    try {
      makeVariant('no-position-ids', MODEL_DIRS['tiny-llama']!, join(root, 'model'));
      expect(addSlotAttention(addNewKvOutputs(readFileSync(join(root, 'model', 'model.onnx')))!)).toBeUndefined();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
