import * as ort from 'onnxruntime-node';
import { addGroupQuerySlots } from '../../src/engine/thread/graph/group-query-slots.js';
import {
  concat,
  ELEM_FLOAT,
  ELEM_INT64,
  floatAttribute,
  GRAPH_INPUT,
  GRAPH_OUTPUT,
  graphNode,
  initializer,
  int64Initializer,
  intAttribute,
  lengthField,
  MODEL_GRAPH,
  MODEL_IR_VERSION,
  MODEL_OPSET_IMPORT,
  OPSET_DOMAIN,
  OPSET_VERSION,
  stringField,
  tensorValueInfo,
  varintField,
} from '../../src/engine/thread/graph/onnx-proto.js';
import { maxDifference } from './differences.js';

/**
 * One layer's GroupQueryAttention as ORT's kernel computes it, row by row (the kernel takes each row
 * as unpadded), against the same layer after group-query-slots.ts's edit, all rows of different
 * past lengths in one run over slots that hold garbage past each row's length. Run in a worker
 * thread (see worker.ts): the runtime's tensors check their arrays against its own realm's.
 */

const HEADS = 4;
const KV_HEADS = 2;
const HEAD_DIM = 32;
const ELEM_INT32 = 6;
const POSITIONS = 64;

export interface Layout {
  rotary?: { dim: number; interleaved: boolean };
  window?: number;
  softcap?: number;
  scale?: number;
  packed?: boolean;
  smoothSoftmax?: boolean;
  /** The default domain's opset the graph imports (17). */
  opset?: number;
}

/** A graph of one GroupQueryAttention, its lengths from the attention mask as exporters compute them. */
export function attentionGraph(layout: Layout): Uint8Array {
  const half = (layout.rotary?.dim ?? 0) / 2;
  const table = (fn: (x: number) => number) => Float32Array.from({ length: POSITIONS * half }, (_, i) => fn(Math.floor(i / half) * 10000 ** (-(i % half) / half)));
  const nodes = [
    graphNode('ReduceSum', ['attention_mask', 'axes'], ['mask_sum'], { attributes: [intAttribute('keepdims', 0)] }),
    graphNode('Sub', ['mask_sum', 'one'], ['seqlens_64']),
    graphNode('Cast', ['seqlens_64'], ['seqlens_k'], { attributes: [intAttribute('to', ELEM_INT32)] }),
    graphNode('Shape', ['attention_mask'], ['mask_shape']),
    graphNode('Gather', ['mask_shape', 'one'], ['total_64'], { attributes: [intAttribute('axis', 0)] }),
    graphNode('Cast', ['total_64'], ['total_sequence_length'], { attributes: [intAttribute('to', ELEM_INT32)] }),
    graphNode(
      'GroupQueryAttention',
      [
        layout.packed ? 'qkv' : 'query',
        layout.packed ? '' : 'key',
        layout.packed ? '' : 'value',
        'past_key_values.0.key',
        'past_key_values.0.value',
        'seqlens_k',
        'total_sequence_length',
        ...(layout.rotary ? ['cos_cache', 'sin_cache'] : []),
      ],
      ['attention_output', 'present.0.key', 'present.0.value'],
      {
        domain: 'com.microsoft',
        attributes: [
          intAttribute('num_heads', HEADS),
          intAttribute('kv_num_heads', KV_HEADS),
          ...(layout.rotary ? [intAttribute('do_rotary', 1), intAttribute('rotary_interleaved', layout.rotary.interleaved ? 1 : 0)] : []),
          ...(layout.window !== undefined ? [intAttribute('local_window_size', layout.window)] : []),
          ...(layout.softcap !== undefined ? [floatAttribute('softcap', layout.softcap)] : []),
          ...(layout.scale !== undefined ? [floatAttribute('scale', layout.scale)] : []),
          ...(layout.smoothSoftmax ? [intAttribute('smooth_softmax', 1)] : []),
        ],
      },
    ),
  ];
  const graph = concat([
    ...nodes,
    stringField(2, 'attention'),
    int64Initializer('axes', [1]),
    initializer('one', ELEM_INT64, [], new Uint8Array(BigInt64Array.of(1n).buffer)),
    ...(layout.rotary
      ? [initializer('cos_cache', ELEM_FLOAT, [POSITIONS, half], new Uint8Array(table(Math.cos).buffer)), initializer('sin_cache', ELEM_FLOAT, [POSITIONS, half], new Uint8Array(table(Math.sin).buffer))]
      : []),
    ...(layout.packed ? ['qkv'] : ['query', 'key', 'value']).map((name) => tensorValueInfo(GRAPH_INPUT, name, ELEM_FLOAT)),
    tensorValueInfo(GRAPH_INPUT, 'past_key_values.0.key', ELEM_FLOAT),
    tensorValueInfo(GRAPH_INPUT, 'past_key_values.0.value', ELEM_FLOAT),
    tensorValueInfo(GRAPH_INPUT, 'attention_mask', ELEM_INT64),
    ...['attention_output', 'present.0.key', 'present.0.value'].map((name) => tensorValueInfo(GRAPH_OUTPUT, name, ELEM_FLOAT)),
  ]);
  const opset = (domain: string, version: number) => lengthField(MODEL_OPSET_IMPORT, concat([stringField(OPSET_DOMAIN, domain), varintField(OPSET_VERSION, version)]));
  return concat([varintField(MODEL_IR_VERSION, 8), opset('', layout.opset ?? 17), opset('com.microsoft', 1), lengthField(MODEL_GRAPH, graph)]);
}

/** Deterministic values in [-1, 1). */
function noise(length: number, seed: number): Float32Array {
  let state = seed;
  return Float32Array.from({ length }, () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return (state / 2 ** 30 - 1) * 1.5;
  });
}

const tensor = (data: Float32Array, dims: number[]) => new ort.Tensor('float32', data, dims);
const session = (model: Uint8Array) => ort.InferenceSession.create(model, { intraOpNumThreads: 1, graphOptimizationLevel: 'all' });

/** Row `row` of a [rows, …] array of `size` values a row. */
const rowOf = (data: Float32Array, row: number, size: number) => data.subarray(row * size, (row + 1) * size);

export interface GroupQueryCheck {
  /** The largest difference from the kernel's output, and from its presents' new positions. */
  output: number;
  newKeyValues: number;
  /** The edited graph's outputs. */
  outputs: string[];
  /** The largest output value, so that small differences mean something. */
  largest: number;
}


export async function run({ layout, pastLengths, step }: { layout: Layout; pastLengths: number[]; step: number }): Promise<GroupQueryCheck> {
  const rows = pastLengths.length;
  const slots = 16;
  const model = attentionGraph(layout);
  const edited = addGroupQuerySlots(model, HEAD_DIM);
  if (!(edited instanceof Uint8Array)) throw new Error(`not edited: ${String(edited)}`);
  const qSize = step * HEADS * HEAD_DIM;
  const kvSize = step * KV_HEADS * HEAD_DIM;
  const query = noise(rows * qSize, 1);
  const key = noise(rows * kvSize, 2);
  const value = noise(rows * kvSize, 3);
  /** The step's inputs of rows `from`..`to`: separate, or packed per position as [q | k | v]. */
  const stepFeeds = (from: number, to: number): Record<string, ort.Tensor> => {
    const count = to - from;
    const q = query.subarray(from * qSize, to * qSize);
    const k = key.subarray(from * kvSize, to * kvSize);
    const v = value.subarray(from * kvSize, to * kvSize);
    if (!layout.packed) return { query: tensor(q, [count, step, HEADS * HEAD_DIM]), key: tensor(k, [count, step, KV_HEADS * HEAD_DIM]), value: tensor(v, [count, step, KV_HEADS * HEAD_DIM]) };
    const width = (HEADS + 2 * KV_HEADS) * HEAD_DIM;
    const packed = new Float32Array(count * step * width);
    for (let position = 0; position < count * step; position++) {
      packed.set(q.subarray(position * HEADS * HEAD_DIM, (position + 1) * HEADS * HEAD_DIM), position * width);
      packed.set(k.subarray(position * KV_HEADS * HEAD_DIM, (position + 1) * KV_HEADS * HEAD_DIM), position * width + HEADS * HEAD_DIM);
      packed.set(v.subarray(position * KV_HEADS * HEAD_DIM, (position + 1) * KV_HEADS * HEAD_DIM), position * width + (HEADS + KV_HEADS) * HEAD_DIM);
    }
    return { qkv: tensor(packed, [count, step, width]) };
  };
  // Slots: each row's past in its first slots, garbage after.
  const slotKeys = noise(rows * KV_HEADS * slots * HEAD_DIM, 4);
  const slotValues = noise(rows * KV_HEADS * slots * HEAD_DIM, 5);
  const pastOf = (data: Float32Array, row: number, length: number) => {
    const past = new Float32Array(KV_HEADS * length * HEAD_DIM);
    for (let head = 0; head < KV_HEADS; head++) {
      const from = ((row * KV_HEADS + head) * slots) * HEAD_DIM;
      past.set(data.subarray(from, from + length * HEAD_DIM), head * length * HEAD_DIM);
    }
    return past;
  };

  const reference = await session(model);
  const slotted = await session(edited);
  const mask = new BigInt64Array(rows * (slots + step)).fill(1n);
  const positions = new BigInt64Array(rows * step);
  pastLengths.forEach((length, row) => {
    mask.fill(0n, row * (slots + step) + length, row * (slots + step) + slots);
    for (let i = 0; i < step; i++) positions[row * step + i] = BigInt(length + i);
  });
  const together = await slotted.run({
    ...stepFeeds(0, rows),
    'past_key_values.0.key': tensor(slotKeys, [rows, KV_HEADS, slots, HEAD_DIM]),
    'past_key_values.0.value': tensor(slotValues, [rows, KV_HEADS, slots, HEAD_DIM]),
    attention_mask: new ort.Tensor('int64', mask, [rows, slots + step]),
    position_ids: new ort.Tensor('int64', positions, [rows, step]),
  });
  const check: GroupQueryCheck = { output: 0, newKeyValues: 0, outputs: Object.keys(together).sort(), largest: 0 };
  for (const [row, length] of pastLengths.entries()) {
    const alone = await reference.run({
      ...stepFeeds(row, row + 1),
      'past_key_values.0.key': tensor(pastOf(slotKeys, row, length), [1, KV_HEADS, length, HEAD_DIM]),
      'past_key_values.0.value': tensor(pastOf(slotValues, row, length), [1, KV_HEADS, length, HEAD_DIM]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(length + step).fill(1n), [1, length + step]),
    });
    const expected = alone.attention_output!.data as Float32Array;
    const got = rowOf(together.attention_output!.data as Float32Array, row, qSize);
    check.output = Math.max(check.output, maxDifference(got, expected));
    check.largest = Math.max(check.largest, ...Array.from(expected, Math.abs));
    // The step's keys and values (rotated as the kernel stores them) are the present's last positions.
    for (const kind of ['key', 'value'] as const) {
      const present = alone[`present.0.${kind}`]!.data as Float32Array;
      const made = rowOf(together[`new_key_values.0.${kind}`]!.data as Float32Array, row, kvSize);
      for (let head = 0; head < KV_HEADS; head++) {
        const from = (head * (length + step) + length) * HEAD_DIM;
        check.newKeyValues = Math.max(check.newKeyValues, maxDifference(made.subarray(head * step * HEAD_DIM, (head + 1) * step * HEAD_DIM), present.subarray(from, from + step * HEAD_DIM)));
      }
    }
  }
  return check;
}
