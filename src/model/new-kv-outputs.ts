/**
 * An edit of the decoder graph that outputs each step's new keys and values on their own. A decoder
 * returns its whole cache, past and new, as `present.*`; handing that to JavaScript costs a copy of
 * the whole cache into freshly allocated memory on every step, which at batch 16 costs more than
 * the step's attention. With `new_key_values.*` ([batch, heads, step, dim]) fetched instead, the
 * cache appends them to buffers of its own that it reuses from step to step.
 *
 * Only the plain pattern `present = Concat(past, new, axis = 2)` is edited, for every layer or not
 * at all: merged decoders (whose cache goes through an If), for one, are left as they are.
 */
import {
  concat,
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
  TENSOR_TYPE_ELEM,
  tensorElementType,
  TYPE_TENSOR,
  VALUE_INFO_NAME,
  VALUE_INFO_TYPE,
  valueInfoName,
  varintField,
} from './onnx-proto.js';

const PRESENT = /^present\.(\d+)\.(key|value)$/;

/** The output holding the new keys or values that `present.{layer}.{kind}` appends to its past. */
export const newKvName = (presentName: string): string => presentName.replace(PRESENT, 'new_key_values.$1.$2');

/** Rewrites `model` (the bytes of model.onnx); undefined when its graph has another shape. */
export function addNewKvOutputs(model: Uint8Array): Uint8Array | undefined {
  return editGraph(model, outputNewKv);
}

function outputNewKv(graphFields: RawField[], graph: Uint8Array): Uint8Array | undefined {
  const outputs = graphFields.filter((field) => field.number === GRAPH_OUTPUT);
  const outputNames = outputs.map((field) => valueInfoName(field.payload!));
  const presents = outputs.filter((_, i) => PRESENT.test(outputNames[i]!));
  if (presents.length === 0 || outputNames.some((name) => name.startsWith('new_key_values.'))) return undefined;

  const producers = new Map<string, ReturnType<typeof readNode>>();
  for (const field of graphFields) {
    if (field.number !== GRAPH_NODE) continue;
    const node = readNode(field.payload!);
    for (const output of node.outputs) producers.set(output, node);
  }
  const added: Uint8Array[] = [];
  for (const present of presents) {
    const name = valueInfoName(present.payload!);
    const node = producers.get(name);
    const past = name.replace(PRESENT, 'past_key_values.$1.$2');
    const axis = node?.ints.get('axis');
    const elemType = tensorElementType(present.payload!);
    if (!node || node.opType !== 'Concat' || node.domain !== '' || node.inputs.length !== 2) return undefined;
    if (node.inputs[0] !== past || (axis !== 2n && axis !== -2n) || elemType === undefined) return undefined;
    const output = newKvName(name);
    const identity = concat([
      stringField(NODE_INPUT, node.inputs[1]!),
      stringField(NODE_OUTPUT, output),
      stringField(NODE_NAME, `/${output}/Identity`),
      stringField(NODE_OP_TYPE, 'Identity'),
    ]);
    const info = concat([
      stringField(VALUE_INFO_NAME, output),
      lengthField(VALUE_INFO_TYPE, lengthField(TYPE_TENSOR, varintField(TENSOR_TYPE_ELEM, elemType))),
    ]);
    added.push(lengthField(GRAPH_NODE, identity), lengthField(GRAPH_OUTPUT, info));
  }
  // Nodes and outputs may come in any order within a GraphProto; appending keeps the rest byte for byte.
  return concat([graph, ...added]);
}
