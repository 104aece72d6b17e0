import { decodeText, GRAPH_INITIALIZER, GRAPH_NODE, MODEL_GRAPH, parseFields, readNode, TENSOR_NAME, tensorDims } from './onnx-proto.js';

/** What a decoder graph itself fixes, whatever config.json says. */

/**
 * Positions a decoder with a learned position table (GPT-2's `wpe`) can embed: the rows of the
 * initializer that a Gather indexes with `position_ids`, directly or through a Cast. Undefined for
 * graphs that compute positions (rotary embeddings), whose reach the graph does not fix.
 */
export function positionTableSize(model: Uint8Array): number | undefined {
  const graph = parseFields(model).find((field) => field.number === MODEL_GRAPH)?.payload;
  if (!graph) return undefined;
  const fields = parseFields(graph);
  const nodes = fields.filter((field) => field.number === GRAPH_NODE && field.payload).map((field) => readNode(field.payload!));
  const positionNames = new Set(['position_ids']);
  for (const node of nodes) if (node.opType === 'Cast' && positionNames.has(node.inputs[0]!)) positionNames.add(node.outputs[0]!);
  const tables = new Set(nodes.filter((node) => node.opType === 'Gather' && positionNames.has(node.inputs[1]!)).map((node) => node.inputs[0]!));
  if (tables.size === 0) return undefined;
  for (const field of fields) {
    if (field.number !== GRAPH_INITIALIZER || !field.payload) continue;
    const tensor = parseFields(field.payload);
    if (!tables.has(decodeText(tensor.find((f) => f.number === TENSOR_NAME)?.payload))) continue;
    const dims = tensorDims(tensor);
    if (dims.length === 2 && dims[0]! > 0) return dims[0];
  }
  return undefined;
}

/** Attention kernels that take each row's length from its mask as if nothing were padded (com.microsoft GroupQueryAttention). */
const UNPADDED_ATTENTION = new Set(['GroupQueryAttention']);

/** Whether the graph's attention takes every row as unpadded: then rows of different lengths cannot share a batch. */
export function takesUnpaddedRows(model: Uint8Array): boolean {
  const graph = parseFields(model).find((field) => field.number === MODEL_GRAPH)?.payload;
  if (!graph) return false;
  return parseFields(graph).some((field) => field.number === GRAPH_NODE && field.payload && UNPADDED_ATTENTION.has(readNode(field.payload).opType));
}
