import {
  concat,
  ELEM_FLOAT,
  GRAPH_INPUT,
  GRAPH_NODE,
  GRAPH_OUTPUT,
  initializer,
  lengthField,
  MODEL_GRAPH,
  MODEL_OPSET_IMPORT,
  NODE_INPUT,
  NODE_OP_TYPE,
  NODE_OUTPUT,
  OPSET_DOMAIN,
  OPSET_VERSION,
  stringField,
  tensorValueInfo,
  varintField,
} from '../../src/engine/thread/graph/onnx-proto.js';
import { quantizeInt8, quantizeWeights, type QuantizedWeights } from '../../src/engine/thread/graph/weight-quantization.js';
import type { GraphRuns } from '../helpers/run-graph.js';
import { runInWorker } from '../helpers/worker.js';

const K = 64;
const N = 48;

/** A deterministic spread of values in [-1, 1). */
const values = (count: number, seed: number) => Float32Array.from({ length: count }, (_, i) => (((i * 7919 + seed * 104729) % 2003) / 1001.5) - 1);

/** A model computing `y = MatMul(x, W)`, x [rows, K], in the default domain's opset `opset`. */
function matmulModel(weight: Float32Array, opset: number): Uint8Array {
  const graph = concat([
    lengthField(GRAPH_NODE, concat([stringField(NODE_INPUT, 'x'), stringField(NODE_INPUT, 'W'), stringField(NODE_OUTPUT, 'y'), stringField(NODE_OP_TYPE, 'MatMul')])),
    stringField(2, 'matmul'),
    initializer('W', ELEM_FLOAT, [K, N], new Uint8Array(weight.buffer)),
    tensorValueInfo(GRAPH_INPUT, 'x', ELEM_FLOAT),
    tensorValueInfo(GRAPH_OUTPUT, 'y', ELEM_FLOAT),
  ]);
  return concat([varintField(1, 8), lengthField(MODEL_OPSET_IMPORT, concat([stringField(OPSET_DOMAIN, ''), varintField(OPSET_VERSION, opset)])), lengthField(MODEL_GRAPH, graph)]);
}

function reference(x: Float32Array, weight: Float32Array, rows: number): Float32Array {
  const y = new Float32Array(rows * N);
  for (let r = 0; r < rows; r++) for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) y[r * N + n]! += x[r * K + k]! * weight[k * N + n]!;
  return y;
}

describe('quantizeInt8', () => {
  it('keeps every weight within half a step of its column, with two rows of zero (128) appended', () => {
    const weight = values(K * N, 1);
    const { quantized, scales } = quantizeInt8(weight, K, N);
    expect(quantized.length).toBe((K + 2) * N);
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) expect(Math.abs((quantized[k * N + n]! - 128) * scales[n]! - weight[k * N + n]!)).toBeLessThanOrEqual(scales[n]! / 2 + 1e-7);
      expect([quantized[K * N + n], quantized[(K + 1) * N + n]]).toEqual([128, 128]);
    }
  });
});

describe.each<[QuantizedWeights, number, number, boolean]>([
  ['int8', 13, 0.02, true],
  ['int8', 18, 0.02, true],
  ['int4', 13, 0.15, true],
  ['int4', 13, 0.15, false],
])('quantizeWeights %s (opset %i, batch-invariant %s)', (format, opset, tolerance, batchInvariant) => {
  const weight = values(K * N, 2);
  const rows = 5;
  // Rows of very different magnitudes, one of them all zeros.
  const x = values(rows * K, 3).map((value, i) => (Math.floor(i / K) === 3 ? 0 : value * 10 ** (Math.floor(i / K) - 2)));
  // The rows together as [1, rows, K], then each alone as [1, K].
  let together: Float32Array;
  let alone: Float32Array[];

  beforeAll(async () => {
    const quantized = quantizeWeights(matmulModel(weight, opset), format, { batchInvariant })!;
    expect(quantized.matmuls).toBe(1);
    const runs: GraphRuns['runs'] = [{ x: { data: x, dims: [1, rows, K] } }, ...Array.from({ length: rows }, (_, r) => ({ x: { data: x.slice(r * K, (r + 1) * K), dims: [1, K] } }))];
    [together, ...alone] = await runInWorker<Float32Array[]>(new URL('../helpers/run-graph.ts', import.meta.url), { model: quantized.model, runs, output: 'y' } satisfies GraphRuns);
  });

  it(`matches the float product within ${tolerance} of each row's largest output`, async () => {
    const y = together;
    const expected = reference(x, weight, rows);
    for (let r = 0; r < rows; r++) {
      const row = expected.subarray(r * N, (r + 1) * N);
      const scale = Math.max(...row.map(Math.abs));
      for (let n = 0; n < N; n++) expect(Math.abs(y[r * N + n]! - row[n]!)).toBeLessThanOrEqual(tolerance * scale + 1e-12);
    }
  });

  if (batchInvariant) {
    it('gives each row the same numbers alone as among others, in any rank', () => {
      for (let r = 0; r < rows; r++) expect(Array.from(alone[r]!)).toEqual(Array.from(together.subarray(r * N, (r + 1) * N)));
    });
  } else {
    it(`computes a row alone (one-row kernel) within ${tolerance} of the float product too`, () => {
      const expected = reference(x, weight, rows);
      for (let r = 0; r < rows; r++) {
        const row = expected.subarray(r * N, (r + 1) * N);
        const scale = Math.max(...row.map(Math.abs));
        for (let n = 0; n < N; n++) expect(Math.abs(alone[r]![n]! - row[n]!)).toBeLessThanOrEqual(tolerance * scale + 1e-12);
      }
    });
  }
});
