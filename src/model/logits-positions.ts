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

export const LOGITS_POSITIONS = 'logits_positions';

const WIRE_VARINT = 0;
const WIRE_64BIT = 1;
const WIRE_LENGTH = 2;
const WIRE_32BIT = 5;

/** One field of a protobuf message, as it lies in the buffer. */
interface RawField {
  number: number;
  wireType: number;
  /** The whole field, tag included. */
  bytes: Uint8Array;
  /** For length-delimited fields: the payload. */
  payload?: Uint8Array;
}

function readVarint(buffer: Uint8Array, offset: number): [bigint, number] {
  let value = 0n;
  let shift = 0n;
  for (;;) {
    if (offset >= buffer.length) throw new Error('truncated varint');
    const byte = buffer[offset++]!;
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [value, offset];
    shift += 7n;
    if (shift > 63n) throw new Error('varint too long');
  }
}

function parseFields(message: Uint8Array): RawField[] {
  const fields: RawField[] = [];
  let offset = 0;
  while (offset < message.length) {
    const start = offset;
    const [tag, afterTag] = readVarint(message, offset);
    offset = afterTag;
    const number = Number(tag >> 3n);
    const wireType = Number(tag & 7n);
    let payload: Uint8Array | undefined;
    if (wireType === WIRE_VARINT) offset = readVarint(message, offset)[1];
    else if (wireType === WIRE_64BIT) offset += 8;
    else if (wireType === WIRE_32BIT) offset += 4;
    else if (wireType === WIRE_LENGTH) {
      const [length, afterLength] = readVarint(message, offset);
      offset = afterLength + Number(length);
      payload = message.subarray(afterLength, offset);
    } else throw new Error(`unsupported wire type ${wireType}`);
    if (offset > message.length) throw new Error('truncated field');
    fields.push({ number, wireType, bytes: message.subarray(start, offset), payload });
  }
  return fields;
}

function varint(value: number | bigint): number[] {
  let rest = BigInt(value);
  const bytes: number[] = [];
  do {
    const low = Number(rest & 0x7fn);
    rest >>= 7n;
    bytes.push(rest > 0n ? low | 0x80 : low);
  } while (rest > 0n);
  return bytes;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function lengthField(number: number, payload: Uint8Array): Uint8Array {
  return concat([Uint8Array.from([...varint((number << 3) | WIRE_LENGTH), ...varint(payload.length)]), payload]);
}

function varintField(number: number, value: number): Uint8Array {
  return Uint8Array.from([...varint((number << 3) | WIRE_VARINT), ...varint(value)]);
}

const text = (value: string) => new TextEncoder().encode(value);
const decodeText = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);
const stringField = (number: number, value: string) => lengthField(number, text(value));

// Field numbers of onnx.proto.
const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;
const GRAPH_INPUT = 11;
const NODE_INPUT = 1;
const NODE_OUTPUT = 2;
const NODE_NAME = 3;
const NODE_OP_TYPE = 4;
const NODE_ATTRIBUTE = 5;
const NODE_DOMAIN = 7;
const ATTRIBUTE_NAME = 1;
const ATTRIBUTE_INT = 3;
const ATTRIBUTE_TYPE = 20;
const ATTRIBUTE_TYPE_INT = 2;
const VALUE_INFO_NAME = 1;
const VALUE_INFO_TYPE = 2;
const TYPE_TENSOR = 1;
const TENSOR_TYPE_ELEM = 1;
const TENSOR_TYPE_SHAPE = 2;
const SHAPE_DIM = 1;
const DIM_PARAM = 2;
const ELEM_INT64 = 7;

/** Rewrites `model` (the bytes of model.onnx); undefined when its graph has another shape. */
export function addLogitsPositions(model: Uint8Array): Uint8Array | undefined {
  const modelFields = parseFields(model);
  const graphField = modelFields.find((field) => field.number === MODEL_GRAPH && field.payload);
  if (!graphField) return undefined;
  const graphFields = parseFields(graphField.payload!);
  const inputNames = graphFields
    .filter((field) => field.number === GRAPH_INPUT)
    .map((field) => decodeText(parseFields(field.payload!).find((f) => f.number === VALUE_INFO_NAME)?.payload));
  if (inputNames.includes(LOGITS_POSITIONS)) return undefined;

  const logitsIndex = graphFields.findIndex((field) => {
    if (field.number !== GRAPH_NODE) return false;
    const node = parseFields(field.payload!);
    const outputs = node.filter((f) => f.number === NODE_OUTPUT).map((f) => decodeText(f.payload));
    const opType = decodeText(node.find((f) => f.number === NODE_OP_TYPE)?.payload);
    const domain = decodeText(node.find((f) => f.number === NODE_DOMAIN)?.payload);
    return opType === 'MatMul' && domain === '' && outputs.length === 1 && outputs[0] === 'logits';
  });
  if (logitsIndex === -1) return undefined;

  const matmul = parseFields(graphFields[logitsIndex]!.payload!);
  const firstInput = matmul.findIndex((f) => f.number === NODE_INPUT);
  const hidden = decodeText(matmul[firstInput]?.payload);
  if (firstInput === -1 || hidden === '') return undefined;
  const gathered = `${hidden}/${LOGITS_POSITIONS}`;

  const gather = concat([
    stringField(NODE_INPUT, hidden),
    stringField(NODE_INPUT, LOGITS_POSITIONS),
    stringField(NODE_OUTPUT, gathered),
    stringField(NODE_NAME, `/${LOGITS_POSITIONS}/Gather`),
    stringField(NODE_OP_TYPE, 'Gather'),
    lengthField(
      NODE_ATTRIBUTE,
      concat([stringField(ATTRIBUTE_NAME, 'axis'), varintField(ATTRIBUTE_INT, 1), varintField(ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_INT)]),
    ),
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
  return concat(modelFields.map((field) => (field === graphField ? lengthField(MODEL_GRAPH, concat(graph)) : field.bytes)));
}
