import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { addLogitsPositions } from '../../src/engine/thread/graph/logits-positions.js';
import type { LogitsPositionsCheck } from '../helpers/logits-positions-check.js';
import { MODEL_DIRS } from '../helpers/server.js';
import { runInWorker } from '../helpers/worker.js';

describe('addLogitsPositions', () => {
  it.each(['tiny-gpt2', 'tiny-llama'])('%s: computes logits only at the positions asked for, the same as the whole graph', async (name) => {
    const check = await runInWorker<LogitsPositionsCheck>(new URL('../helpers/logits-positions-check.ts', import.meta.url), {
      modelPath: join(MODEL_DIRS[name]!, 'model.onnx'),
    });
    expect(check.lastDims).toEqual([1, 1, check.vocab]);
    expect(check.pickedDims).toEqual([1, 2, check.vocab]);
    for (const difference of check.differences) expect(difference).toBeLessThan(1e-4);
    expect(check.pickedRowsDiffer).toBe(true);
  });

  it('leaves a graph whose logits do not come from a plain MatMul as it is (a quantized projection)', () => {
    const quantized = readFileSync(join(MODEL_DIRS['tinystories-gpt2']!, 'model_quantized.onnx'));
    expect(addLogitsPositions(quantized)).toBeUndefined();
  });

  it('edits a graph only once', () => {
    const edited = addLogitsPositions(readFileSync(join(MODEL_DIRS['tiny-llama']!, 'model.onnx')));
    expect(edited).toBeDefined();
    expect(addLogitsPositions(edited!)).toBeUndefined();
  });

  it('refuses bytes that are not a protobuf message', () => {
    expect(() => addLogitsPositions(Uint8Array.from([0x0a, 0xff]))).toThrow();
  });
});
