/**
 * An edit of the decoder graph that attends to a past held in slots, without copying it. As
 * exported, each layer concatenates its past keys and values with the step's own
 * (`present = Concat(past, new)`) and attends to that: every step copies the whole cache, and the
 * runtime then hands the copy back. After the edit the past input is a buffer of `C` slots per row,
 * of which the attention mask says which hold a position (the mask is `C + step` wide), and each
 * layer computes
 *
 *   scores = Concat(q · past_kᵀ, q · new_kᵀ)          (masked and softmaxed as before)
 *   out    = softmax[:, :C] · past_v + softmax[:, C:] · new_v
 *
 * so nothing of the past is copied; the graph outputs only the new keys and values
 * (`new_key_values.*`, see new-kv-outputs.ts) and the engine writes them into free slots of its
 * buffers. `present.*` are gone from the edited graph.
 *
 * What lies between a layer's `present` and its attention MatMul (a Transpose for GPT-2; for
 * grouped-query attention, the Unsqueeze, Tile or Expand and Reshape of `repeat_kv`) is cloned for
 * the new positions, and for the past unless it repeats the KV heads; it may only read the present
 * and constants. Where it repeats them (HF's `repeat_kv`: an Unsqueeze at axis 2, then Tile or
 * Expand), the past is read unrepeated instead, so no step copies it G times over: the G query heads
 * of each KV head become G × S rows of one product,
 *
 *   scores_past = (q as [B, KV, G·S, D]) · past_kᵀ      as [B, H, S, C]
 *   out_past    = (softmax[:, :C] as [B, KV, G·S, C]) · past_v   as [B, H, S, D]
 *
 * The mask is the
 * graph's own: it is built from `attention_mask` and the past input's length, which are now `C + S`
 * and `C`. The graph must take `position_ids`: positions counted from the mask or the past's length
 * would count the free slots. A graph of any other shape is left as it is.
 */
import {
  ATTRIBUTE_INTS,
  ATTRIBUTE_NAME,
  ATTRIBUTE_TENSOR,
  concat,
  decodeText,
  GRAPH_INITIALIZER,
  GRAPH_INPUT,
  GRAPH_NODE,
  graphNode,
  GRAPH_OUTPUT,
  editGraph,
  ELEM_INT64,
  int64Initializer,
  intAttribute,
  intsAttribute,
  lengthField,
  NODE_ATTRIBUTE,
  NODE_INPUT,
  NODE_NAME,
  NODE_OUTPUT,
  parseFields,
  readNode,
  stringField,
  repeatedInts,
  TENSOR_DATA_TYPE,
  TENSOR_INT64_DATA,
  TENSOR_NAME,
  TENSOR_RAW_DATA,
  valueInfoName,
  type NodeSummary,
  type RawField,
} from './onnx-proto.js';
import { appendedBy, newKvName, PRESENT } from './new-kv-outputs.js';


/** Ops that may lie between a present and its attention MatMul: they move or repeat values, whatever the sequence's length. */
const CHAIN_OPS = new Set(['Transpose', 'Unsqueeze', 'Squeeze', 'Tile', 'Expand', 'Reshape', 'Shape', 'Slice', 'Concat', 'Gather', 'Cast', 'Identity']);
const MAX_CHAIN = 32;

interface Node {
  index: number;
  field: RawField;
  summary: NodeSummary;
}

/** A layer's key or value path: what `present` is made of, the nodes after it, and the MatMul they feed. */
interface KvPath {
  present: string;
  past: string;
  added: string;
  concat: Node;
  chain: Node[];
  /** The chain's result, which `matmul` reads as its second input. */
  result: string;
  matmul: Node;
  /** The chain repeats the KV heads (`repeat_kv`): the past is read unrepeated. */
  repeatsHeads: boolean;
  /** The chain transposes the last two axes (a key's, for `q · kᵀ`). */
  transposes: boolean;
}

/** Rewrites `model` (the bytes of model.onnx, with new_key_values.* outputs); undefined when its graph has another shape. */
export function addSlotAttention(model: Uint8Array): Uint8Array | undefined {
  return editGraph(model, slotAttention);
}

function slotAttention(graphFields: RawField[]): Uint8Array | undefined {
  const nodes: Node[] = [];
  graphFields.forEach((field, index) => {
    if (field.number === GRAPH_NODE) nodes.push({ index, field, summary: readNode(field.payload!) });
  });
  const outputNames = graphFields.filter((field) => field.number === GRAPH_OUTPUT).map((field) => valueInfoName(field.payload!));
  const presents = outputNames.filter((name) => PRESENT.test(name));
  if (presents.length === 0 || presents.some((name) => !outputNames.includes(newKvName(name)))) return undefined;

  const constantValues = new Map<string, RawField[]>([
    ...graphFields.filter((field) => field.number === GRAPH_INITIALIZER).map((field) => {
      const tensor = parseFields(field.payload!);
      return [decodeText(tensor.find((f) => f.number === TENSOR_NAME)?.payload), tensor] as const;
    }),
    ...nodes.filter((node) => node.summary.opType === 'Constant').map((node) => [node.summary.outputs[0]!, constantTensor(node.field.payload!) ?? []] as const),
  ]);
  const constants = new Set(constantValues.keys());
  const inputNames = new Set(graphFields.filter((field) => field.number === GRAPH_INPUT).map((field) => valueInfoName(field.payload!)));
  // Positions are then given, not counted from the mask or the past's length, which now include free slots.
  if (!inputNames.has('position_ids')) return undefined;
  const producer = new Map<string, Node>();
  const consumers = new Map<string, Node[]>();
  for (const node of nodes) {
    for (const output of node.summary.outputs) producer.set(output, node);
    for (const input of node.summary.inputs) consumers.set(input, [...(consumers.get(input) ?? []), node]);
  }

  const paths = new Map<string, KvPath>();
  for (const present of presents) {
    const path = kvPath(present, producer, consumers, constants, new Set(outputNames), constantValues);
    if (!path || !inputNames.has(path.past)) return undefined;
    paths.set(present, path);
  }
  // Each layer's key path ends in the scores' MatMul; its value path in the one that reads the softmax.
  for (const present of presents) {
    if (!present.endsWith('.key')) continue;
    const value = paths.get(present.replace(/key$/, 'value'));
    if (!value || paths.get(present)!.matmul === value.matmul) return undefined;
  }

  const removed = new Set<number>();
  const replacement = new Map<number, Uint8Array[]>();
  const shared: Uint8Array[] = [];
  const added = new Set<string>();
  // Made on first use: the runtime warns of an initializer nothing reads.
  const constant = (name: string, values: bigint[]) => () => {
    if (!added.has(name)) {
      added.add(name);
      shared.push(int64Initializer(name, values));
    }
    return name;
  };
  const MINUS_TWO = constant('/slot_attention/minus_two', [-2n]);
  const MINUS_ONE = constant('/slot_attention/minus_one', [-1n]);
  const ZERO = constant('/slot_attention/zero', [0n]);
  const ONE = constant('/slot_attention/one', [1n]);
  const TWO = constant('/slot_attention/two', [2n]);
  const THREE = constant('/slot_attention/three', [3n]);
  const END = constant('/slot_attention/end', [2n ** 63n - 1n]);
  const ROWS_KEPT = constant('/slot_attention/rows_kept', [-1n, 0n]);
  const REST = constant('/slot_attention/rest', [-1n]);
  /** `x` [B, H, S, ·] as [B, KV, G·S, ·], KV read off `past` [B, KV, C, D]: the G query heads of a KV head as rows. */
  const grouped = (x: string, past: string, at: (step: string) => string) => [
    node('Shape', [x], [at('shape')]),
    node('Shape', [past], [at('past_shape')]),
    node('Slice', [at('shape'), ZERO(), ONE()], [at('batch')]),
    node('Slice', [at('past_shape'), ONE(), TWO()], [at('kv_heads')]),
    node('Concat', [at('batch'), at('kv_heads'), ROWS_KEPT()], [at('grouped_shape')], [intAttribute('axis', 0)]),
    node('Reshape', [x, at('grouped_shape')], [at('grouped')]),
    // Back: [B, H, S] from x's shape, the last axis the product's.
    node('Slice', [at('shape'), ZERO(), THREE()], [at('heads_shape')]),
    node('Concat', [at('heads_shape'), REST()], [at('ungrouped_shape')], [intAttribute('axis', 0)]),
  ];

  for (const path of paths.values()) {
    removed.add(path.concat.index);
    for (const node of path.chain) removed.add(node.index);
    const past = path.repeatsHeads ? { nodes: [], result: path.past } : cloneChain(path, path.past, 'past');
    const added = cloneChain(path, path.added, 'new');
    const first = path.matmul.summary.inputs[0]!;
    const output = path.matmul.summary.outputs[0]!;
    const at = (step: string) => `/slot_attention/${output}/${step}`;
    let made: Uint8Array[];
    if (path.present.endsWith('.key')) {
      const pastScores = path.repeatsHeads
        ? [
            ...grouped(first, path.past, (step) => at(`query_${step}`)),
            // The runtime fuses the Transpose into the MatMul (FusedMatMul), which reads the past in place.
            ...(path.transposes ? [node('Transpose', [path.past], [at('past_transposed')], [intsAttribute('perm', [0, 1, 3, 2])])] : []),
            node('MatMul', [at('query_grouped'), path.transposes ? at('past_transposed') : path.past], [at('past_grouped')]),
            node('Reshape', [at('past_grouped'), at('query_ungrouped_shape')], [at('past')]),
          ]
        : [node('MatMul', [first, past.result], [at('past')])];
      made = [...pastScores, node('MatMul', [first, added.result], [at('new')]), node('Concat', [at('past'), at('new')], [output], [intAttribute('axis', -1)])];
    } else {
      made = [
        node('Shape', [path.repeatsHeads ? path.past : past.result], [at('past_shape')]),
        node('Slice', [at('past_shape'), MINUS_TWO(), MINUS_ONE()], [at('slots')]),
        node('Slice', [first, ZERO(), at('slots'), MINUS_ONE()], [at('weights_past')]),
        node('Slice', [first, at('slots'), END(), MINUS_ONE()], [at('weights_new')]),
        ...(path.repeatsHeads
          ? [
              ...grouped(at('weights_past'), path.past, (step) => at(`weights_${step}`)),
              node('MatMul', [at('weights_grouped'), path.past], [at('past_grouped')]),
              node('Reshape', [at('past_grouped'), at('weights_ungrouped_shape')], [at('past')]),
            ]
          : [node('MatMul', [at('weights_past'), past.result], [at('past')])]),
        node('MatMul', [at('weights_new'), added.result], [at('new')]),
        node('Add', [at('past'), at('new')], [output]),
      ];
    }
    replacement.set(path.matmul.index, [...past.nodes, ...added.nodes, ...made]);
  }

  const edited: Uint8Array[] = [];
  graphFields.forEach((field, index) => {
    if (replacement.has(index)) edited.push(...replacement.get(index)!);
    else if (removed.has(index)) return;
    else if (field.number === GRAPH_OUTPUT && PRESENT.test(valueInfoName(field.payload!))) return;
    else edited.push(field.bytes);
  });
  return concat([...edited, ...shared]);
}

/** The path from `present` to its attention MatMul, when it has the shape described above. */
function kvPath(
  present: string,
  producer: Map<string, Node>,
  consumers: Map<string, Node[]>,
  constants: Set<string>,
  outputs: Set<string>,
  constantValues: Map<string, RawField[]>,
): KvPath | undefined {
  const made = producer.get(present);
  const added = appendedBy(made?.summary, present);
  if (!made || added === undefined) return undefined;
  const past = made.summary.inputs[0]!;

  const chain: Node[] = [];
  const inChain = new Set<string>([present]);
  let matmul: Node | undefined;
  let result: string | undefined;
  const pending = [present];
  while (pending.length > 0) {
    const tensor = pending.shift()!;
    if (tensor !== present && outputs.has(tensor)) return undefined;
    for (const consumer of consumers.get(tensor) ?? []) {
      if (chain.includes(consumer) || consumer === matmul) continue;
      if (consumer.summary.opType === 'MatMul') {
        if (matmul || consumer.summary.inputs[1] !== tensor || inChain.has(consumer.summary.inputs[0]!)) return undefined;
        matmul = consumer;
        result = tensor;
        continue;
      }
      if (!CHAIN_OPS.has(consumer.summary.opType) || consumer.summary.domain !== '' || chain.length >= MAX_CHAIN) return undefined;
      chain.push(consumer);
      for (const output of consumer.summary.outputs) inChain.add(output);
      pending.push(...consumer.summary.outputs);
    }
  }
  if (!matmul || result === undefined) return undefined;
  // The chain reads only the present, its own results and constants; its nodes run in graph order.
  for (const node of chain) {
    if (node.summary.inputs.some((input) => input !== '' && !inChain.has(input) && !constants.has(input))) return undefined;
  }
  chain.sort((a, b) => a.index - b.index);
  // repeat_kv: the present unsqueezed at axis 2, then tiled or expanded there (and reshaped to [B, H, T, D]).
  const unsqueeze = chain.find((node) => node.summary.opType === 'Unsqueeze' && node.summary.inputs[0] === present);
  const axes = unsqueeze && (unsqueeze.summary.inputs[1] ? constantInts(constantValues.get(unsqueeze.summary.inputs[1])) : intsOf(unsqueeze.field.payload!, 'axes'));
  const repeat = unsqueeze && chain.find((node) => (node.summary.opType === 'Tile' || node.summary.opType === 'Expand') && node.summary.inputs[0] === unsqueeze.summary.outputs[0]);
  // A key's chain may also swap its last two axes; any other transpose and the chain is only cloned.
  const perms = chain.filter((node) => node.summary.opType === 'Transpose').map((node) => intsOf(node.field.payload!, 'perm')?.join());
  const transposes = perms.length === 1 && perms[0] === '0,1,3,2';
  const repeatsHeads = repeat !== undefined && axes?.join() === '2' && (perms.length === 0 || transposes);
  return { present, past, added, concat: made, chain, result, matmul, repeatsHeads, transposes };
}

/** The int64 values of a TensorProto (its parsed fields): raw data or int64_data; undefined for another type. */
function constantInts(tensor: RawField[] | undefined): bigint[] | undefined {
  if (!tensor || tensor.find((f) => f.number === TENSOR_DATA_TYPE)?.value !== BigInt(ELEM_INT64)) return undefined;
  const raw = tensor.find((f) => f.number === TENSOR_RAW_DATA)?.payload;
  return raw ? Array.from(new BigInt64Array(raw.slice().buffer)) : repeatedInts(tensor, TENSOR_INT64_DATA);
}

/** The tensor of a Constant node's `value` attribute. */
function constantTensor(nodePayload: Uint8Array): RawField[] | undefined {
  for (const field of parseFields(nodePayload)) {
    if (field.number !== NODE_ATTRIBUTE) continue;
    const attribute = parseFields(field.payload!);
    const tensor = attribute.find((f) => f.number === ATTRIBUTE_TENSOR)?.payload;
    if (tensor && decodeText(attribute.find((f) => f.number === ATTRIBUTE_NAME)?.payload) === 'value') return parseFields(tensor);
  }
  return undefined;
}

/** A node's attribute `name` of a list of integers (a Transpose's `perm`, say). */
function intsOf(nodePayload: Uint8Array, name: string): number[] | undefined {
  for (const field of parseFields(nodePayload)) {
    if (field.number !== NODE_ATTRIBUTE) continue;
    const attribute = parseFields(field.payload!);
    if (decodeText(attribute.find((f) => f.number === ATTRIBUTE_NAME)?.payload) !== name) continue;
    return repeatedInts(attribute, ATTRIBUTE_INTS).map(Number);
  }
  return undefined;
}

/** The chain of `path` applied to `source` instead of the present: its nodes, renamed with `tag`, and its result. */
function cloneChain(path: KvPath, source: string, tag: string): { nodes: Uint8Array[]; result: string } {
  const internal = new Set(path.chain.flatMap((node) => node.summary.outputs));
  const rename = (tensor: string) => (tensor === path.present ? source : internal.has(tensor) ? `${tensor}/${tag}` : tensor);
  const nodes = path.chain.map((chainNode) =>
    concat(
      parseFields(chainNode.field.payload!).map((field) => {
        if (field.number === NODE_INPUT || field.number === NODE_OUTPUT) return stringField(field.number, rename(decodeText(field.payload)));
        if (field.number === NODE_NAME) return stringField(NODE_NAME, `${decodeText(field.payload)}/${tag}`);
        return field.bytes;
      }),
    ),
  );
  return { nodes: nodes.map((bytes) => lengthField(GRAPH_NODE, bytes)), result: rename(path.result) };
}

const node = (opType: string, inputs: readonly string[], outputs: readonly string[], attributes: Uint8Array[] = []) =>
  graphNode(opType, inputs, outputs, { name: `/slot_attention/${outputs[0]}/${opType}`, attributes });
