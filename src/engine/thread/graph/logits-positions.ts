/**
 * An edit of the decoder graph that computes logits only where they are read. A decoder computes
 * the logits of every position of a step, though generation reads only the last one: during
 * prefill the vocabulary projection is a large share of the work (for GPT-2 small and a 16-token
 * chunk, ~30% of the FLOPs). The edit adds an int64 input `logits_positions` [k] and a Gather
 * of those positions of the hidden states in front of the final MatMul, so `logits` becomes
 * [batch, k, vocab].
 *
 * Only the plain pattern `logits = MatMul(hidden, W)` is edited; any other graph (a quantized
 * projection, whose scale depends on every position, say) is left as it is.
 */

import {
  concat,
  DIM_PARAM,
  ELEM_INT64,
  GRAPH_INPUT,
  GRAPH_NODE,
  intAttribute,
  lengthField,
  editGraph,
  NODE_INPUT,
  NODE_NAME,
  NODE_OP_TYPE,
  NODE_OUTPUT,
  parseFields,
  type RawField,
  readNode,
  SHAPE_DIM,
  stringField,
  TENSOR_TYPE_ELEM,
  TENSOR_TYPE_SHAPE,
  TYPE_TENSOR,
  VALUE_INFO_NAME,
  VALUE_INFO_TYPE,
  valueInfoName,
  varintField,
} from './onnx-proto.js';

export const LOGITS_POSITIONS = 'logits_positions';
/** Inputs of exports that already keep only the last positions' logits: such a graph is left as it is. */
export const LOGITS_TO_KEEP = ['num_logits_to_keep', 'logits_to_keep'];

/** Rewrites `model` (the bytes of model.onnx); undefined when its graph has another shape. */
export function addLogitsPositions(model: Uint8Array): Uint8Array | undefined {
  return editGraph(model, gatherBeforeLogits);
}

function gatherBeforeLogits(graphFields: RawField[]): Uint8Array | undefined {
  const inputNames = graphFields.filter((field) => field.number === GRAPH_INPUT).map((field) => valueInfoName(field.payload!));
  if (inputNames.includes(LOGITS_POSITIONS) || inputNames.some((name) => LOGITS_TO_KEEP.includes(name))) return undefined;

  const logitsIndex = graphFields.findIndex((field) => {
    if (field.number !== GRAPH_NODE) return false;
    const { opType, domain, outputs } = readNode(field.payload!);
    return opType === 'MatMul' && domain === '' && outputs.length === 1 && outputs[0] === 'logits';
  });
  if (logitsIndex === -1) return undefined;

  const matmul = parseFields(graphFields[logitsIndex]!.payload!);
  const firstInput = matmul.findIndex((f) => f.number === NODE_INPUT);
  const hidden = readNode(graphFields[logitsIndex]!.payload!).inputs[0] ?? '';
  if (firstInput === -1 || hidden === '') return undefined;
  const gathered = `${hidden}/${LOGITS_POSITIONS}`;

  const gather = concat([
    stringField(NODE_INPUT, hidden),
    stringField(NODE_INPUT, LOGITS_POSITIONS),
    stringField(NODE_OUTPUT, gathered),
    stringField(NODE_NAME, `/${LOGITS_POSITIONS}/Gather`),
    stringField(NODE_OP_TYPE, 'Gather'),
    intAttribute('axis', 1),
  ]);
  const editedMatmul = concat(matmul.map((f, i) => (i === firstInput ? stringField(NODE_INPUT, gathered) : f.bytes)));
  const positionsInput = concat([
    stringField(VALUE_INFO_NAME, LOGITS_POSITIONS),
    lengthField(
      VALUE_INFO_TYPE,
      lengthField(
        TYPE_TENSOR,
        concat([
          varintField(TENSOR_TYPE_ELEM, ELEM_INT64),
          lengthField(TENSOR_TYPE_SHAPE, lengthField(SHAPE_DIM, stringField(DIM_PARAM, 'positions'))),
        ]),
      ),
    ),
  ]);

  const lastInput = graphFields.reduce((last, field, i) => (field.number === GRAPH_INPUT ? i : last), -1);
  const graph: Uint8Array[] = [];
  graphFields.forEach((field, i) => {
    if (i === logitsIndex) graph.push(lengthField(GRAPH_NODE, gather), lengthField(GRAPH_NODE, editedMatmul));
    else graph.push(field.bytes);
    if (i === lastInput) graph.push(lengthField(GRAPH_INPUT, positionsInput));
  });
  return concat(graph);
}
