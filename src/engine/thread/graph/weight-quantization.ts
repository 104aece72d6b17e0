/**
 * Edits of the decoder graph that store its weights in fewer bits: every `MatMul(x, W)` by a
 * float32 2-D weight becomes a com.microsoft op on a quantized copy of `W`.
 *
 * - int4: `MatMulNBits` (symmetric, blocks of 32 along K, zero point 8, `accuracy_level` 4), as
 *   int4 exports have them: an eighth of the memory plus a scale per block (needs opset 10, for
 *   Slice's inputs).
 * - int8: `DynamicQuantizeMatMul`, weights per output column in uint8 around a zero point of 128:
 *   a quarter of the memory.
 *
 * Each row's input is quantized on its own, so a sequence's numbers do not depend on what it is
 * batched with. MatMulNBits does so itself. DynamicQuantizeMatMul quantizes its whole input with one
 * scale, from the input's minimum and maximum; so each row is divided by its largest magnitude `r`
 * and two columns of −1 and +1 are appended (with two zero rows under the weight): every batch then
 * has the range [−1, 1] exactly, whatever its rows, and the product is multiplied back by `r`.
 * The weights are uint8 rather than int8 because on CPUs without VNNI the runtime's u8×s8 kernel
 * adds pairs of products in 16 bits, which saturate (measured: 18% relative error against 0.6%).
 *
 * Weights stored as external data are read from beside the graph (see ExternalDataReader); the
 * quantized ones then live in the edited graph, the others stay where they are.
 */
import {
  concat,
  decodeText,
  editGraph,
  ELEM_FLOAT,
  ELEM_UINT8,
  externalDataOf,
  GRAPH_INITIALIZER,
  int64Initializer,
  GRAPH_NODE,
  graphNode,
  initializer,
  intAttribute,
  intsAttribute,
  opsetVersion,
  parseFields,
  readNode,
  TENSOR_DATA_TYPE,
  TENSOR_DIMS,
  TENSOR_NAME,
  TENSOR_RAW_DATA,
  withOpsetImport,
} from './onnx-proto.js';

export const INT4_BLOCK = 32;

const CONTRIB_DOMAIN = 'com.microsoft';

/**
 * A [K, N] weight (row-major) as MatMulNBits takes it: B uint8 [N, K/32, 16], the even k of each
 * pair in the low nibble, levels 0–15 around a zero point of 8, and scales [N · K/32].
 */
export function quantizeInt4(weight: Float32Array, k: number, n: number): { packed: Uint8Array; scales: Float32Array } {
  const blocks = k / INT4_BLOCK;
  const packed = new Uint8Array(n * blocks * (INT4_BLOCK / 2));
  const scales = new Float32Array(n * blocks);
  for (let column = 0; column < n; column++) {
    for (let block = 0; block < blocks; block++) {
      let max = 0;
      for (let i = 0; i < INT4_BLOCK; i++) max = Math.max(max, Math.abs(weight[(block * INT4_BLOCK + i) * n + column]!));
      const scale = max / 7 || 1;
      scales[column * blocks + block] = scale;
      const level = (row: number) => Math.max(0, Math.min(15, Math.round(weight[row * n + column]! / scale) + 8));
      for (let i = 0; i < INT4_BLOCK; i += 2) {
        const row = block * INT4_BLOCK + i;
        packed[(column * blocks + block) * (INT4_BLOCK / 2) + i / 2] = level(row) | (level(row + 1) << 4);
      }
    }
  }
  return { packed, scales };
}

export interface FloatWeight {
  name: string;
  k: number;
  n: number;
  values: Float32Array;
}

/** Reads `length` bytes at `offset` of the external data file `location` (beside the graph). */
export type ExternalDataReader = (location: string, offset: number, length: number) => Uint8Array;

/** A float32 2-D initializer, held in the graph or (with `readExternal`) in its external data, as a weight; undefined for anything else. */
export function floatWeight(payload: Uint8Array, readExternal?: ExternalDataReader): FloatWeight | undefined {
  const tensor = parseFields(payload);
  const external = readExternal ? externalDataOf(tensor) : undefined;
  const raw = external ? readExternal!(external.location, external.offset, external.length) : tensor.find((f) => f.number === TENSOR_RAW_DATA)?.payload;
  const dims = tensor.filter((f) => f.number === TENSOR_DIMS && f.value !== undefined).map((f) => Number(f.value));
  if (tensor.find((f) => f.number === TENSOR_DATA_TYPE)?.value !== BigInt(ELEM_FLOAT) || !raw || dims.length !== 2) return undefined;
  // A copy of its own: the bytes may be a Buffer's slice, which shares (and offsets into) its memory.
  const copy = new Uint8Array(raw);
  return { name: decodeText(tensor.find((f) => f.number === TENSOR_NAME)?.payload), k: dims[0]!, n: dims[1]!, values: new Float32Array(copy.buffer, 0, copy.length / 4) };
}

import type { QuantizedWeights } from '../../protocol.js';

export type { QuantizedWeights } from '../../protocol.js';

/** A node of the edited graph, as a GraphProto field. */
const node = (opType: string, inputs: readonly string[], outputs: readonly string[], name: string, attributes: Uint8Array[] = [], domain = '') =>
  graphNode(opType, inputs, outputs, { name, attributes, domain });

/**
 * A [K, N] weight (row-major) as DynamicQuantizeMatMul takes it here: uint8 [K + 2, N] (two zero
 * rows appended, for the range columns), levels around 128, one scale per column.
 */
export function quantizeInt8(weight: Float32Array, k: number, n: number): { quantized: Uint8Array; scales: Float32Array } {
  const quantized = new Uint8Array((k + 2) * n).fill(INT8_ZERO_POINT);
  // Row by row, as the weight is laid out: a column at a time strides across the whole matrix.
  const max = new Float32Array(n);
  for (let row = 0; row < k; row++) {
    for (let column = 0; column < n; column++) max[column] = Math.max(max[column]!, Math.abs(weight[row * n + column]!));
  }
  const divisors = Float64Array.from(max, (value) => value / 127 || 1);
  for (let row = 0; row < k; row++) {
    for (let column = 0; column < n; column++) quantized[row * n + column] = Math.round(weight[row * n + column]! / divisors[column]!) + INT8_ZERO_POINT;
  }
  return { quantized, scales: Float32Array.from(divisors) };
}

const INT8_ZERO_POINT = 128;

interface Quantizer {
  /** Whether the weight's shape suits the format. */
  suits(weight: FloatWeight): boolean;
  /** The quantized weight's initializers, named from `name`. */
  initializers(weight: FloatWeight, name: string): Uint8Array[];
  /** Nodes that ready `input` (of the width of `weight`'s rows) for every MatMul that reads it, placed before the first. */
  prepare?(input: string, weight: FloatWeight): Uint8Array[];
  /** The nodes computing `output` from `input` (readied) with the quantized weight. */
  nodes(input: string, output: string, weight: FloatWeight, name: string): Uint8Array[];
  /** Initializers the nodes of every MatMul share, once all are made. */
  shared(): Uint8Array[];
}

/** MatMulNBits' attributes for a weight quantized by quantizeInt4. */
const int4Attributes = (weight: FloatWeight) => [
  intAttribute('K', weight.k),
  intAttribute('N', weight.n),
  intAttribute('bits', 4),
  intAttribute('block_size', INT4_BLOCK),
  intAttribute('accuracy_level', 4),
];

/**
 * MatMulNBits computes a single row (M = 1) with another kernel than several, whose sums round
 * differently, so a sequence decoded alone would not get the numbers it gets in a batch. With
 * `batchInvariant`, the input is flattened to rows and one row of zeros appended, so the kernel
 * always sees at least two; the product's last row is dropped and the rest reshaped back. That
 * doubles a lone stream's work; without it, the input goes to MatMulNBits as it is.
 */
function int4Quantizer(opset: number, batchInvariant: boolean): Quantizer {
  const zeroRows = new Set<number>();
  const widths = new Set<number>();
  const initializers = (weight: FloatWeight, name: string) => {
    const { packed, scales } = quantizeInt4(weight.values, weight.k, weight.n);
    return [initializer(`${name}/B`, ELEM_UINT8, [weight.n, weight.k / INT4_BLOCK, INT4_BLOCK / 2], packed), initializer(`${name}/scales`, ELEM_FLOAT, [weight.n * (weight.k / INT4_BLOCK)], new Uint8Array(scales.buffer))];
  };
  const suits = (weight: FloatWeight) => opset >= 10 && weight.k % INT4_BLOCK === 0;
  if (!batchInvariant) {
    return {
      suits,
      initializers,
      nodes: (input, output, weight, name) => [node('MatMulNBits', [input, `${name}/B`, `${name}/scales`], [output], `/int4/${output}`, int4Attributes(weight), CONTRIB_DOMAIN)],
      shared: () => [],
    };
  }
  return {
    suits,
    initializers,
    prepare: (input, weight) => {
      zeroRows.add(weight.k);
      const at = (step: string) => `/int4/${input}/${step}`;
      return [
        node('Shape', [input], [at('shape')], at('shape')),
        node('Slice', [at('shape'), ZERO, MINUS_ONE], [at('leading')], at('leading')),
        node('Flatten', [input], [at('rows')], at('rows'), [intAttribute('axis', -1)]),
        node('Concat', [at('rows'), `/int4/zero_row/${weight.k}`], [at('padded')], at('padded'), [intAttribute('axis', 0)]),
      ];
    },
    nodes: (input, output, weight, name) => {
      widths.add(weight.n);
      const prepared = (step: string) => `/int4/${input}/${step}`;
      const at = (step: string) => `/int4/${output}/${step}`;
      return [
        node('MatMulNBits', [prepared('padded'), `${name}/B`, `${name}/scales`], [at('product')], at('product'), int4Attributes(weight), CONTRIB_DOMAIN),
        node('Slice', [at('product'), ZERO, MINUS_ONE, ZERO], [at('rows')], at('rows')),
        node('Concat', [prepared('leading'), `/int4/width/${weight.n}`], [at('shape')], at('shape'), [intAttribute('axis', 0)]),
        node('Reshape', [at('rows'), at('shape')], [output], at('output')),
      ];
    },
    shared: () => [
      int64Initializer(ZERO, [0]),
      int64Initializer(MINUS_ONE, [-1]),
      ...[...zeroRows].map((k) => initializer(`/int4/zero_row/${k}`, ELEM_FLOAT, [1, k], new Uint8Array(4 * k))),
      ...[...widths].map((n) => int64Initializer(`/int4/width/${n}`, [n])),
    ],
  };
}

const ZERO = '/int4/zero';
const MINUS_ONE = '/int4/minus_one';

const RANGE = '/int8/range';
const TINY = '/int8/tiny';
const LAST_AXIS = '/int8/last_axis';

/** `opset`: the graph's default-domain opset, which says whether ReduceMax takes its axes as an attribute or an input. */
function int8Quantizer(opset: number): Quantizer {
  const axesAsInput = opset >= 18;
  return {
    suits: () => true,
    initializers: (weight, name) => {
      const { quantized, scales } = quantizeInt8(weight.values, weight.k, weight.n);
      return [
        initializer(`${name}/B`, ELEM_UINT8, [weight.k + 2, weight.n], quantized),
        initializer(`${name}/scales`, ELEM_FLOAT, [weight.n], new Uint8Array(scales.buffer)),
        initializer(`${name}/zero_points`, ELEM_UINT8, [weight.n], new Uint8Array(weight.n).fill(INT8_ZERO_POINT)),
      ];
    },
    prepare: (input) => {
      const at = (step: string) => `/int8/${input}/${step}`;
      return [
        node('Abs', [input], [at('abs')], at('abs')),
        axesAsInput
          ? node('ReduceMax', [at('abs'), LAST_AXIS], [at('max')], at('max'), [intAttribute('keepdims', 1)])
          : node('ReduceMax', [at('abs')], [at('max')], at('max'), [intsAttribute('axes', [-1]), intAttribute('keepdims', 1)]),
        // A row of zeros keeps a finite divisor.
        node('Max', [at('max'), TINY], [at('r')], at('r')),
        node('Mul', [at('r'), RANGE], [at('range')], at('range')),
        node('Concat', [input, at('range')], [at('ranged')], at('ranged'), [intAttribute('axis', -1)]),
        node('Div', [at('ranged'), at('r')], [at('scaled')], at('scaled')),
      ];
    },
    nodes: (input, output, _weight, name) => {
      const prepared = (step: string) => `/int8/${input}/${step}`;
      const at = `/int8/${output}`;
      return [
        node('DynamicQuantizeMatMul', [prepared('scaled'), `${name}/B`, `${name}/scales`, `${name}/zero_points`], [`${at}/product`], `${at}/product`, [], CONTRIB_DOMAIN),
        node('Mul', [`${at}/product`, prepared('r')], [output], `${at}/output`),
      ];
    },
    shared: () => [
      initializer(RANGE, ELEM_FLOAT, [2], new Uint8Array(Float32Array.of(-1, 1).buffer)),
      initializer(TINY, ELEM_FLOAT, [], new Uint8Array(Float32Array.of(1e-30).buffer)),
      ...(axesAsInput ? [int64Initializer(LAST_AXIS, [-1])] : []),
    ],
  };
}

/**
 * `model` with its weights quantized to `format` (see above) and how many MatMuls changed;
 * undefined when none could. `keepHead` keeps the output head (the MatMul that makes `logits`) in
 * float32, so the logits keep their precision; by default it is quantized too (a lone stream's
 * largest MatMul: see models/README.md).
 * `batchInvariant` (int4): a sequence gets the same numbers alone as batched (see int4Quantizer).
 */
export function quantizeWeights(
  model: Uint8Array,
  format: QuantizedWeights,
  { keepHead = false, readExternal, batchInvariant = true }: { keepHead?: boolean; readExternal?: ExternalDataReader; batchInvariant?: boolean } = {},
): { model: Uint8Array; matmuls: number } | undefined {
  const opset = opsetVersion(model) ?? 1;
  const quantizer = format === 'int4' ? int4Quantizer(opset, batchInvariant) : int8Quantizer(opset);
  let matmuls = 0;
  const edited = editGraph(model, (fields) => {
    const weights = new Map<string, FloatWeight>();
    for (const field of fields) {
      const weight = field.number === GRAPH_INITIALIZER ? floatWeight(field.payload!, readExternal) : undefined;
      if (weight) weights.set(weight.name, weight);
    }
    const quantized = new Set<string>();
    const prepared = new Set<string>();
    const out = fields.flatMap((field) => {
      if (field.number !== GRAPH_NODE) return [field.bytes];
      const matmul = readNode(field.payload!);
      const weight = matmul.opType === 'MatMul' && matmul.domain === '' ? weights.get(matmul.inputs[1] ?? '') : undefined;
      if (!weight || !quantizer.suits(weight) || (keepHead && matmul.outputs[0] === 'logits')) return [field.bytes];
      matmuls++;
      const name = `${weight.name}/${format}`;
      const initializers = quantized.has(name) ? [] : quantizer.initializers(weight, name);
      quantized.add(name);
      const input = matmul.inputs[0]!;
      const preparation = prepared.has(input) ? [] : (quantizer.prepare?.(input, weight) ?? []);
      prepared.add(input);
      return [...initializers, ...preparation, ...quantizer.nodes(input, matmul.outputs[0]!, weight, name)];
    });
    if (matmuls === 0) return undefined;
    // The float32 weights no node reads any more are left out.
    const read = new Set(out.map((bytes) => parseFields(bytes)[0]!).filter((f) => f.number === GRAPH_NODE).flatMap((f) => readNode(f.payload!).inputs));
    return concat([
      ...out.filter((bytes) => {
        const [field] = parseFields(bytes);
        const name = field?.number === GRAPH_INITIALIZER ? decodeText(parseFields(field.payload!).find((f) => f.number === TENSOR_NAME)?.payload) : undefined;
        return name === undefined || !weights.has(name) || read.has(name);
      }),
      ...quantizer.shared(),
    ]);
  });
  return edited && { model: withOpsetImport(edited, CONTRIB_DOMAIN), matmuls };
}
