/**
 * An edit of the decoder graph that outputs each step's new keys and values on their own. A decoder
 * returns its whole cache, past and new, as `present.*`; handing that to JavaScript costs a copy of
 * the whole cache into freshly allocated memory on every step, which at batch 16 costs more than
 * the step's attention. With `new_key_values.*` ([batch, heads, step, dim]) fetched instead, the
 * cache appends them to buffers of its own that it reuses from step to step.
 *
 * Only the plain pattern `present = Concat(past, new, axis = 2)` is edited, for every layer or not
 * at all, at the top of the graph or in a merged decoder's `If` (see outputNewKvOfIf).
 */
import {
  ATTRIBUTE_GRAPH,
  ATTRIBUTE_NAME,
  concat,
  decodeText,
  NODE_ATTRIBUTE,
  parseFields,
  type NodeSummary,
  GRAPH_NODE,
  GRAPH_OUTPUT,
  lengthField,
  editGraph,
  NODE_INPUT,
  NODE_NAME,
  NODE_OP_TYPE,
  NODE_OUTPUT,
  type RawField,
  readNode,
  stringField,
  tensorElementType,
  tensorValueInfo,
  valueInfoName,
} from './onnx-proto.js';

/** A layer's cache output: `present.{layer}.key` or `.value`. */
export const PRESENT = /^present\.(\d+)\.(key|value)$/;

/** The output holding the new keys or values that `present.{layer}.{kind}` appends to its past. */
export const newKvName = (presentName: string): string => presentName.replace(PRESENT, 'new_key_values.$1.$2');

/** Rewrites `model` (the bytes of model.onnx); undefined when its graph has another shape. */
export function addNewKvOutputs(model: Uint8Array): Uint8Array | undefined {
  return editGraph(model, outputNewKv);
}

const identity = (input: string, output: string) =>
  lengthField(GRAPH_NODE, concat([stringField(NODE_INPUT, input), stringField(NODE_OUTPUT, output), stringField(NODE_NAME, `/${output}/Identity`), stringField(NODE_OP_TYPE, 'Identity')]));

const tensorOutput = (name: string, elemType: number) => tensorValueInfo(GRAPH_OUTPUT, name, elemType);

/** Each node's outputs, by name. */
function producersOf(graphFields: readonly RawField[]): Map<string, { node: NodeSummary; field: RawField }> {
  const producers = new Map<string, { node: NodeSummary; field: RawField }>();
  for (const field of graphFields) {
    if (field.number !== GRAPH_NODE) continue;
    const node = readNode(field.payload!);
    for (const output of node.outputs) producers.set(output, { node, field });
  }
  return producers;
}

/** The new keys or values that `present` (a layer's cache output) appends to its past, when `node`, which makes it, is `Concat(past, new, axis 2)`. */
export function appendedBy(node: NodeSummary | undefined, present: string): string | undefined {
  const past = present.replace(PRESENT, 'past_key_values.$1.$2');
  const axis = node?.ints.get('axis');
  if (!node || node.opType !== 'Concat' || node.domain !== '' || node.inputs.length !== 2) return undefined;
  if (node.inputs[0] !== past || (axis !== 2n && axis !== -2n)) return undefined;
  return node.inputs[1];
}

/** The new keys or values that `present` appends to its past, where the output named `output` in this graph makes it. */
const appended = (producers: ReturnType<typeof producersOf>, present: string, output: string) => appendedBy(producers.get(output)?.node, present);

function outputNewKv(graphFields: RawField[], graph: Uint8Array): Uint8Array | undefined {
  const outputs = graphFields.filter((field) => field.number === GRAPH_OUTPUT);
  const outputNames = outputs.map((field) => valueInfoName(field.payload!));
  const presents = outputs.filter((_, i) => PRESENT.test(outputNames[i]!));
  if (presents.length === 0 || outputNames.some((name) => name.startsWith('new_key_values.'))) return undefined;
  const elemTypes = presents.map((present) => tensorElementType(present.payload!));
  if (elemTypes.some((type) => type === undefined)) return undefined;
  const names = presents.map((present) => valueInfoName(present.payload!));
  const producers = producersOf(graphFields);
  const merged = producers.get(names[0]!);
  if (merged?.node.opType === 'If' && names.every((name) => producers.get(name)?.field === merged.field)) {
    return outputNewKvOfIf(graphFields, merged.field, names, elemTypes as number[]);
  }
  const added: Uint8Array[] = [];
  for (const [i, name] of names.entries()) {
    const source = appended(producers, name, name);
    if (source === undefined) return undefined;
    added.push(identity(source, newKvName(name)), tensorOutput(newKvName(name), elemTypes[i]!));
  }
  // Nodes and outputs may come in any order within a GraphProto; appending keeps the rest byte for byte.
  return concat([graph, ...added]);
}

/**
 * A merged decoder: one `If` on `use_cache_branch` makes every output. Its `then_branch` (a step
 * with a past) must append as the plain graph does; its `else_branch` runs only for a first step,
 * whose past is empty, so there its presents are the new keys and values themselves.
 */
function outputNewKvOfIf(graphFields: RawField[], ifField: RawField, presents: readonly string[], elemTypes: readonly number[]): Uint8Array | undefined {
  const ifNode = readNode(ifField.payload!);
  const positions = presents.map((name) => ifNode.outputs.indexOf(name));
  const nodeFields = parseFields(ifField.payload!);
  const rebuilt: Uint8Array[] = [];
  for (const field of nodeFields) {
    if (field.number !== NODE_ATTRIBUTE) {
      rebuilt.push(field.bytes);
      continue;
    }
    const attribute = parseFields(field.payload!);
    const name = decodeText(attribute.find((f) => f.number === ATTRIBUTE_NAME)?.payload);
    const branch = attribute.find((f) => f.number === ATTRIBUTE_GRAPH)?.payload;
    if ((name !== 'then_branch' && name !== 'else_branch') || !branch) {
      rebuilt.push(field.bytes);
      continue;
    }
    const branchFields = parseFields(branch);
    const branchOutputs = branchFields.filter((f) => f.number === GRAPH_OUTPUT).map((f) => valueInfoName(f.payload!));
    const producers = producersOf(branchFields);
    const added: Uint8Array[] = [];
    for (const [i, present] of presents.entries()) {
      const output = branchOutputs[positions[i]!];
      if (output === undefined) return undefined;
      const source = name === 'then_branch' ? appended(producers, present, output) : output;
      if (source === undefined) return undefined;
      const branchName = `${newKvName(present)}/${name}`;
      added.push(identity(source, branchName), tensorOutput(branchName, elemTypes[i]!));
    }
    const graph = concat([branch, ...added]);
    rebuilt.push(lengthField(NODE_ATTRIBUTE, concat(attribute.map((f) => (f.number === ATTRIBUTE_GRAPH ? lengthField(ATTRIBUTE_GRAPH, graph) : f.bytes)))));
  }
  // The If gives the new outputs in the order the branches do.
  rebuilt.push(...presents.map((present) => stringField(NODE_OUTPUT, newKvName(present))));
  const outputs = presents.map((present, i) => tensorOutput(newKvName(present), elemTypes[i]!));
  return concat([...graphFields.map((field) => (field === ifField ? lengthField(GRAPH_NODE, concat(rebuilt)) : field.bytes)), ...outputs]);
}
