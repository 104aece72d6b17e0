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
 * grouped-query attention, the Unsqueeze, Tile and Reshape that repeat the KV heads) is cloned for
 * the past and for the new positions; it may only read the present and constants. The mask is the
 * graph's own: it is built from `attention_mask` and the past input's length, which are now `C + S`
 * and `C`. The graph must take `position_ids`: positions counted from the mask or the past's length
 * would count the free slots. A graph of any other shape is left as it is.
 */
import {
  concat,
  decodeText,
  GRAPH_INITIALIZER,
  GRAPH_INPUT,
  GRAPH_NODE,
  graphNode,
  GRAPH_OUTPUT,
  editGraph,
  int64Initializer,
  intAttribute,
  lengthField,
  NODE_INPUT,
  NODE_NAME,
  NODE_OUTPUT,
  parseFields,
  readNode,
  stringField,
  TENSOR_NAME,
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

  const constants = new Set<string>([
    ...graphFields.filter((field) => field.number === GRAPH_INITIALIZER).map((field) => decodeText(parseFields(field.payload!).find((f) => f.number === TENSOR_NAME)?.payload)),
    ...nodes.filter((node) => node.summary.opType === 'Constant').flatMap((node) => node.summary.outputs),
  ]);
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
    const path = kvPath(present, producer, consumers, constants, new Set(outputNames));
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
  const constant = (name: string, values: bigint[]) => {
    shared.push(int64Initializer(name, values));
    return name;
  };
  const MINUS_TWO = constant('/slot_attention/minus_two', [-2n]);
  const MINUS_ONE = constant('/slot_attention/minus_one', [-1n]);
  const ZERO = constant('/slot_attention/zero', [0n]);
  const END = constant('/slot_attention/end', [2n ** 63n - 1n]);

  for (const path of paths.values()) {
    removed.add(path.concat.index);
    for (const node of path.chain) removed.add(node.index);
    const past = cloneChain(path, path.past, 'past');
    const added = cloneChain(path, path.added, 'new');
    const first = path.matmul.summary.inputs[0]!;
    const output = path.matmul.summary.outputs[0]!;
    const at = (step: string) => `/slot_attention/${output}/${step}`;
    let made: Uint8Array[];
    if (path.present.endsWith('.key')) {
      made = [
        node('MatMul', [first, past.result], [at('past')]),
        node('MatMul', [first, added.result], [at('new')]),
        node('Concat', [at('past'), at('new')], [output], [intAttribute('axis', -1)]),
      ];
    } else {
      made = [
        node('Shape', [past.result], [at('past_shape')]),
        node('Slice', [at('past_shape'), MINUS_TWO, MINUS_ONE], [at('slots')]),
        node('Slice', [first, ZERO, at('slots'), MINUS_ONE], [at('weights_past')]),
        node('Slice', [first, at('slots'), END, MINUS_ONE], [at('weights_new')]),
        node('MatMul', [at('weights_past'), past.result], [at('past')]),
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
function kvPath(present: string, producer: Map<string, Node>, consumers: Map<string, Node[]>, constants: Set<string>, outputs: Set<string>): KvPath | undefined {
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
  return { present, past, added, concat: made, chain, result, matmul };
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
