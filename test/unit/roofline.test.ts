import { join } from 'node:path';
import { ROOT } from '../helpers/cli.js';
import { BYTES_PER_WEIGHT, bytesPerStep, modelShape } from '../../bench/roofline.js';
import { quantizeQ4_0 } from '../../tools/gguf.js';
import { quantizeInt4 } from '../../src/engine/thread/graph/weight-quantization.js';

describe("the bench's roofline", () => {
  it('counts the bytes per weight that the quantizers write', () => {
    const values = Float32Array.from({ length: 64 * 3 }, (_, i) => Math.sin(i));
    expect(quantizeQ4_0(values, values.length).length).toBe(BYTES_PER_WEIGHT.q4_0 * values.length);
    const { packed, scales } = quantizeInt4(values, 64, 3);
    expect(packed.byteLength + scales.byteLength).toBe(BYTES_PER_WEIGHT.int4 * values.length);
  });

  it("reads a bench model's product weights without its embedding table, and its attention's shape", () => {
    const shape = modelShape(join(ROOT, 'bench/models/bench-llama-135m'));
    const layer = 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536;
    expect(shape).toEqual({ productWeights: 30 * layer + 576 * 50257, layers: 30, kvHeads: 3, headDim: 64 });
  });

  it('reads the weights once a step and each row its own keys and values', () => {
    const shape = { productWeights: 1000, layers: 2, kvHeads: 3, headDim: 4 };
    expect(bytesPerStep(shape, 'int8', 1, 10, 2)).toEqual({ weights: 1000, kv: 2 * 2 * 3 * 4 * 10 * 2 });
    expect(bytesPerStep(shape, 'f32', 16, 10, 4)).toEqual({ weights: 4000, kv: 16 * 2 * 2 * 3 * 4 * 10 * 4 });
  });
});
