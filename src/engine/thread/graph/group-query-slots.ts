/**
 * An edit of a graph whose attention is com.microsoft GroupQueryAttention (transformers.js v4 and
 * onnxruntime-genai exports) into attention to a past held in slots, as slot-attention.ts makes of
 * plain-op graphs. The kernel takes each row's length from `seqlens_k` as if no row were padded, so
 * rows of different lengths could not share a step; after the edit each layer computes, with the
 * KV heads unrepeated (query head h reads KV head h / G, G = num_heads / kv_num_heads, the G query
 * heads of a KV head as G × S rows of one product):
 *
 *   q, k   = rotated at position_ids, where the kernel did the rotary (its cos_cache and sin_cache)
 *   scores = scale · [q·past_kᵀ | q·kᵀ]  (softcapped where the kernel was), plus a mask of the free
 *            slots, the later positions of the step and those outside local_window_size
 *   out    = softmax[:, :C]·past_v + softmax[:, C:]·v
 *
 * Each row's past lies in slots 0, 1, … in position order, so a slot's index is its position. The
 * step's keys and values (rotated) are output as `new_key_values.*` for the engine to write into
 * slots; `present.*` are gone, and `position_ids` becomes an input where the graph has none. A graph
 * with an `attention_bias` or `head_sink` input to its attention, smooth_softmax, or a rotary cache
 * that is not an initializer is left as it is (undefined).
 */
import {
  concat,
  decodeText,
  editGraph,
  ELEM_FLOAT,
  ELEM_FLOAT16,
  ELEM_INT64,
  GRAPH_INITIALIZER,
  GRAPH_INPUT,
  GRAPH_NODE,
  GRAPH_OUTPUT,
  opsetVersion,
  parseFields,
  readNode,
  TENSOR_NAME,
  tensorDims,
  tensorElementType,
  tensorValueInfo,
  valueInfoDims,
  valueInfoName,
  withOpsetImport,
  withoutDeadNodes,
  type NodeSummary,
  type RawField,
} from './onnx-proto.js';
import { newKvName } from './new-kv-outputs.js';
import { MICROSOFT, SlotNodes, type Attention } from './group-query-nodes.js';

const PAST_KEY = /^past_key_values\.(\d+)\.key$/;

/**
 * Rewrites `model` (the bytes of model.onnx): the edited model, undefined when it has no
 * GroupQueryAttention, or why one cannot be rewritten. `headDim`: for pasts whose shape leaves it symbolic.
 */
export function addGroupQuerySlots(model: Uint8Array, headDim: number): Uint8Array | string | undefined {
  let refusal: string | undefined;
  // The rewrite's operators need opset 13: an older graph is only looked at for what to say.
  const tooOld = (opsetVersion(model) ?? 0) < 13;
  const edited = editGraph(model, (fields) => {
    if (tooOld) {
      const grouped = fields.some((field) => field.number === GRAPH_NODE && readNode(field.payload!).opType === 'GroupQueryAttention');
      if (grouped) refusal = 'the graph imports an opset before 13';
      return undefined;
    }
    const made = groupQuerySlots(fields, headDim);
    if (typeof made === 'string') refusal = made;
    return typeof made === 'string' ? undefined : made;
  });
  return refusal ?? (edited && withOpsetImport(edited, MICROSOFT));
}

function groupQuerySlots(fields: RawField[], headDimHint: number): Uint8Array | string | undefined {
  const initializers = new Map<string, number[]>();
  const inputs = new Map<string, Uint8Array>();
  const outputs = new Set<string>();
  for (const field of fields) {
    if (field.number === GRAPH_INITIALIZER) {
      const tensor = parseFields(field.payload!);
      initializers.set(decodeText(tensor.find((f) => f.number === TENSOR_NAME)?.payload), tensorDims(tensor));
    } else if (field.number === GRAPH_INPUT) inputs.set(valueInfoName(field.payload!), field.payload!);
    else if (field.number === GRAPH_OUTPUT) outputs.add(valueInfoName(field.payload!));
  }
  const attentions: Attention[] = [];
  for (const [index, field] of fields.entries()) {
    if (field.number !== GRAPH_NODE) continue;
    const node = readNode(field.payload!);
    if (node.opType !== 'GroupQueryAttention') continue;
    const attention = readAttention(node, index, inputs, outputs, initializers, headDimHint);
    if (typeof attention === 'string') return `GroupQueryAttention ${node.outputs[0]}: ${attention}`;
    attentions.push(attention);
  }
  if (attentions.length === 0) return undefined;
  const kvType = tensorElementType(inputs.get(attentions[0]!.node.inputs[3]!)!);
  if (kvType !== ELEM_FLOAT && kvType !== ELEM_FLOAT16) return 'the KV cache is neither float32 nor float16';

  const made = new SlotNodes(kvType);
  const replaced = new Map<number, Uint8Array[]>();
  for (const attention of attentions) replaced.set(attention.index, made.layer(attention));
  const presents = new Set(attentions.flatMap((attention) => attention.node.outputs.slice(1, 3)));
  const edited: Uint8Array[] = [];
  // What the layers share reads only graph inputs and initializers: it goes before the first layer, in graph order.
  const first = attentions[0]!.index;
  fields.forEach((field, index) => {
    if (index === first) edited.push(...made.shared);
    if (replaced.has(index)) edited.push(...replaced.get(index)!);
    else if (field.number === GRAPH_OUTPUT && presents.has(valueInfoName(field.payload!))) return;
    else edited.push(field.bytes);
  });
  if (!inputs.has('position_ids')) edited.push(tensorValueInfo(GRAPH_INPUT, 'position_ids', ELEM_INT64));
  for (const present of presents) edited.push(tensorValueInfo(GRAPH_OUTPUT, newKvName(present), kvType));
  return concat(withoutDeadNodes(edited));
}

/** What `node` computes, or why it cannot be rewritten. */
function readAttention(node: NodeSummary, index: number, inputs: Map<string, Uint8Array>, outputs: Set<string>, initializers: Map<string, number[]>, headDimHint: number): Attention | string {
  const [, , , pastKey = '', pastValue = '', , , cos = '', sin = '', , bias = '', sink = ''] = node.inputs;
  const layer = PAST_KEY.exec(pastKey)?.[1];
  if (node.domain !== MICROSOFT) return `its domain is '${node.domain}'`;
  if (layer === undefined || pastValue !== `past_key_values.${layer}.value` || !inputs.has(pastKey) || !inputs.has(pastValue)) return 'its past is not a past_key_values.N.key/value input pair';
  const [, presentKey, presentValue] = node.outputs;
  if (presentKey !== `present.${layer}.key` || presentValue !== `present.${layer}.value` || !outputs.has(presentKey) || !outputs.has(presentValue)) return `its presents are not the outputs present.${layer}.key/value`;
  if (bias !== '') return 'it takes an attention_bias';
  if (sink !== '') return 'it takes a head_sink';
  if ((node.ints.get('smooth_softmax') ?? 0n) !== 0n) return 'it uses smooth_softmax';
  const heads = Number(node.ints.get('num_heads') ?? 0n);
  const kvHeads = Number(node.ints.get('kv_num_heads') ?? 0n);
  if (heads <= 0 || kvHeads <= 0 || heads % kvHeads !== 0) return `num_heads ${heads} is not a multiple of kv_num_heads ${kvHeads}`;
  const pastDim = valueInfoDims(inputs.get(pastKey)!)[3];
  const headDim = typeof pastDim === 'number' && pastDim > 0 ? pastDim : headDimHint;
  const window = Number(node.ints.get('local_window_size') ?? -1n);
  const attention: Attention = {
    node,
    index,
    heads,
    kvHeads,
    headDim,
    scale: node.floats.get('scale') || 1 / Math.sqrt(headDim),
    softcap: node.floats.get('softcap') ?? 0,
    ...(window >= 0 && { window }),
  };
  if (node.ints.get('do_rotary') === 1n) {
    const dims = initializers.get(cos);
    if (!dims || dims.length !== 2 || initializers.get(sin)?.join() !== dims.join() || 2 * dims[1]! > headDim) return 'its rotary cos_cache and sin_cache are not initializers of one [positions, ≤ head_dim / 2] shape';
    attention.rotary = { cos, sin, dim: 2 * dims[1]!, interleaved: node.ints.get('rotary_interleaved') === 1n };
  }
  return attention;
}
