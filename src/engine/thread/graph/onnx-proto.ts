/**
 * Just enough of the protobuf wire format to edit an ONNX graph in memory: fields are parsed as
 * byte ranges and written back untouched, so initializers and everything not edited pass through
 * as they are.
 */

const WIRE_VARINT = 0;
const WIRE_64BIT = 1;
const WIRE_LENGTH = 2;
const WIRE_32BIT = 5;

/** One field of a protobuf message, as it lies in the buffer. */
export interface RawField {
  number: number;
  wireType: number;
  /** The whole field, tag included. */
  bytes: Uint8Array;
  /** For length-delimited fields: the payload. */
  payload?: Uint8Array;
  /** For varint fields: the value. */
  value?: bigint;
}

/** The varint at `offset`, and the offset after it. */
export function readVarint(buffer: Uint8Array, offset: number): [bigint, number] {
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

export function parseFields(message: Uint8Array): RawField[] {
  const fields: RawField[] = [];
  let offset = 0;
  while (offset < message.length) {
    const start = offset;
    const [tag, afterTag] = readVarint(message, offset);
    offset = afterTag;
    const number = Number(tag >> 3n);
    const wireType = Number(tag & 7n);
    let payload: Uint8Array | undefined;
    let value: bigint | undefined;
    if (wireType === WIRE_VARINT) [value, offset] = readVarint(message, offset);
    else if (wireType === WIRE_64BIT) offset += 8;
    else if (wireType === WIRE_32BIT) offset += 4;
    else if (wireType === WIRE_LENGTH) {
      const [length, afterLength] = readVarint(message, offset);
      offset = afterLength + Number(length);
      payload = message.subarray(afterLength, offset);
    } else throw new Error(`unsupported wire type ${wireType}`);
    if (offset > message.length) throw new Error('truncated field');
    fields.push({ number, wireType, bytes: message.subarray(start, offset), payload, value });
  }
  return fields;
}

function varint(value: number | bigint): number[] {
  // A negative integer is written as its 64-bit two's complement, as protobuf's int64 is.
  let rest = BigInt.asUintN(64, BigInt(value));
  const bytes: number[] = [];
  do {
    const low = Number(rest & 0x7fn);
    rest >>= 7n;
    bytes.push(rest > 0n ? low | 0x80 : low);
  } while (rest > 0n);
  return bytes;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export function lengthField(number: number, payload: Uint8Array): Uint8Array {
  return concat([Uint8Array.from([...varint((number << 3) | WIRE_LENGTH), ...varint(payload.length)]), payload]);
}

export function varintField(number: number, value: number): Uint8Array {
  return Uint8Array.from([...varint((number << 3) | WIRE_VARINT), ...varint(value)]);
}

const text = (value: string) => new TextEncoder().encode(value);
export const decodeText = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);
export const stringField = (number: number, value: string) => lengthField(number, text(value));

// Field numbers of onnx.proto.
export const MODEL_IR_VERSION = 1;
export const MODEL_PRODUCER_NAME = 2;
export const MODEL_GRAPH = 7;
export const GRAPH_NODE = 1;
export const GRAPH_NAME = 2;
export const GRAPH_INITIALIZER = 5;
export const GRAPH_INPUT = 11;
export const GRAPH_OUTPUT = 12;
export const NODE_INPUT = 1;
export const NODE_OUTPUT = 2;
export const NODE_NAME = 3;
export const NODE_OP_TYPE = 4;
export const NODE_ATTRIBUTE = 5;
export const NODE_DOMAIN = 7;
export const ATTRIBUTE_NAME = 1;
export const ATTRIBUTE_FLOAT = 2;
export const ATTRIBUTE_INT = 3;
export const ATTRIBUTE_TENSOR = 5;
export const ATTRIBUTE_GRAPH = 6;
export const ATTRIBUTE_INTS = 8;
export const ATTRIBUTE_TYPE = 20;
export const ATTRIBUTE_TYPE_FLOAT = 1;
export const ATTRIBUTE_TYPE_INT = 2;
export const ATTRIBUTE_TYPE_TENSOR = 4;
export const ATTRIBUTE_TYPE_INTS = 7;
export const TENSOR_DIMS = 1;
export const TENSOR_DATA_TYPE = 2;
export const TENSOR_INT64_DATA = 7;
export const TENSOR_NAME = 8;
export const TENSOR_RAW_DATA = 9;
export const TENSOR_EXTERNAL_DATA = 13;
export const TENSOR_DATA_LOCATION = 14;
export const MODEL_OPSET_IMPORT = 8;
export const OPSET_DOMAIN = 1;
export const OPSET_VERSION = 2;
export const VALUE_INFO_NAME = 1;
export const VALUE_INFO_TYPE = 2;
export const TYPE_TENSOR = 1;
export const TENSOR_TYPE_ELEM = 1;
export const TENSOR_TYPE_SHAPE = 2;
export const SHAPE_DIM = 1;
export const DIM_VALUE = 1;
export const DIM_PARAM = 2;
export const ELEM_FLOAT = 1;
export const ELEM_UINT8 = 2;
export const ELEM_INT8 = 3;
export const ELEM_INT64 = 7;
export const ELEM_FLOAT16 = 10;

/** A node's integer attribute, as a NodeProto field. */
export const intAttribute = (name: string, value: number) =>
  lengthField(NODE_ATTRIBUTE, concat([stringField(ATTRIBUTE_NAME, name), varintField(ATTRIBUTE_INT, value), varintField(ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_INT)]));

/** A node's float attribute, as a NodeProto field. */
export function floatAttribute(name: string, value: number): Uint8Array {
  const bits = new Uint8Array(5);
  bits[0] = (ATTRIBUTE_FLOAT << 3) | WIRE_32BIT;
  new DataView(bits.buffer).setFloat32(1, value, true);
  return lengthField(NODE_ATTRIBUTE, concat([stringField(ATTRIBUTE_NAME, name), bits, varintField(ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_FLOAT)]));
}

/** A node's tensor attribute (a Constant's `value`), as a NodeProto field; `tensor` is a TensorProto's bytes. */
export const tensorAttribute = (name: string, tensor: Uint8Array) =>
  lengthField(NODE_ATTRIBUTE, concat([stringField(ATTRIBUTE_NAME, name), lengthField(ATTRIBUTE_TENSOR, tensor), varintField(ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_TENSOR)]));

/** A node's attribute of a list of integers, as a NodeProto field. */
export const intsAttribute = (name: string, values: readonly number[]) =>
  lengthField(
    NODE_ATTRIBUTE,
    concat([stringField(ATTRIBUTE_NAME, name), ...values.map((value) => varintField(ATTRIBUTE_INTS, value)), varintField(ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_INTS)]),
  );

/** A node, as a GraphProto field; named after its op and first output unless `name` is given. */
export function graphNode(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  { name = `/${opType}/${outputs[0]}`, attributes = [], domain = '' }: { name?: string; attributes?: readonly Uint8Array[]; domain?: string } = {},
): Uint8Array {
  return lengthField(
    GRAPH_NODE,
    concat([
      ...inputs.map((input) => stringField(NODE_INPUT, input)),
      ...outputs.map((output) => stringField(NODE_OUTPUT, output)),
      stringField(NODE_NAME, name),
      stringField(NODE_OP_TYPE, opType),
      ...(domain ? [stringField(NODE_DOMAIN, domain)] : []),
      ...attributes,
    ]),
  );
}

/** A graph input or output (`field`: GRAPH_INPUT or GRAPH_OUTPUT) of a tensor with no shape given. */
export const tensorValueInfo = (field: number, name: string, elemType: number) =>
  lengthField(field, concat([stringField(VALUE_INFO_NAME, name), lengthField(VALUE_INFO_TYPE, lengthField(TYPE_TENSOR, varintField(TENSOR_TYPE_ELEM, elemType)))]));

/** An initializer of raw little-endian data, as a GraphProto field. */
export const initializer = (name: string, elemType: number, dims: readonly number[], raw: Uint8Array) =>
  lengthField(GRAPH_INITIALIZER, concat([...dims.map((dim) => varintField(TENSOR_DIMS, dim)), varintField(TENSOR_DATA_TYPE, elemType), stringField(TENSOR_NAME, name), lengthField(TENSOR_RAW_DATA, raw)]));

/** Where a TensorProto's (its parsed `fields`) data lies when it is external: its `external_data` entries; undefined when it is in the graph or the entries lack a location or length. */
export function externalDataOf(fields: readonly RawField[]): { location: string; offset: number; length: number } | undefined {
  if (fields.find((f) => f.number === TENSOR_DATA_LOCATION)?.value !== 1n) return undefined;
  const entries = new Map(
    fields
      .filter((f) => f.number === TENSOR_EXTERNAL_DATA)
      .map((f) => parseFields(f.payload!))
      .map((entry) => [decodeText(entry.find((e) => e.number === 1)?.payload), decodeText(entry.find((e) => e.number === 2)?.payload)] as const),
  );
  const location = entries.get('location');
  const length = Number(entries.get('length'));
  if (!location || !Number.isSafeInteger(length)) return undefined;
  return { location, offset: Number(entries.get('offset') ?? 0), length };
}

/** The version of `domain`'s opset (the default domain: '') that `model` (a ModelProto) imports; undefined when it imports none. */
export function opsetVersion(model: Uint8Array, domain = ''): number | undefined {
  for (const field of parseFields(model)) {
    if (field.number !== MODEL_OPSET_IMPORT) continue;
    const entry = parseFields(field.payload!);
    if (decodeText(entry.find((f) => f.number === OPSET_DOMAIN)?.payload) === domain) return Number(entry.find((f) => f.number === OPSET_VERSION)?.value ?? 1n);
  }
  return undefined;
}

/** A 1-D int64 initializer (shapes, axes, slice bounds), as a GraphProto field. */
export const int64Initializer = (name: string, values: readonly (number | bigint)[]) =>
  initializer(name, ELEM_INT64, [values.length], new Uint8Array(BigInt64Array.from(values, BigInt).buffer));

/** `model` (a ModelProto) with an import of `domain`'s opset 1, unless it has one. */
export function withOpsetImport(model: Uint8Array, domain: string): Uint8Array {
  const imports = parseFields(model).filter((field) => field.number === MODEL_OPSET_IMPORT);
  if (imports.some((field) => decodeText(parseFields(field.payload!).find((f) => f.number === OPSET_DOMAIN)?.payload) === domain)) return model;
  return concat([model, lengthField(MODEL_OPSET_IMPORT, concat([stringField(OPSET_DOMAIN, domain), varintField(OPSET_VERSION, 1)]))]);
}

export interface NodeSummary {
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  /** The node's integer attributes by name. */
  ints: Map<string, bigint>;
  /** The node's float attributes by name. */
  floats: Map<string, number>;
}

/** The parts of a NodeProto that say what it computes from what. */
export function readNode(payload: Uint8Array): NodeSummary {
  const fields = parseFields(payload);
  const strings = (number: number) => fields.filter((f) => f.number === number).map((f) => decodeText(f.payload));
  const attributes = fields.filter((f) => f.number === NODE_ATTRIBUTE).map((f) => parseFields(f.payload!));
  const nameOf = (attribute: RawField[]) => decodeText(attribute.find((f) => f.number === ATTRIBUTE_NAME)?.payload);
  const floats = new Map<string, number>();
  for (const attribute of attributes) {
    const value = attribute.find((f) => f.number === ATTRIBUTE_FLOAT && f.wireType === WIRE_32BIT);
    if (value) floats.set(nameOf(attribute), new DataView(value.bytes.buffer, value.bytes.byteOffset + value.bytes.length - 4, 4).getFloat32(0, true));
  }
  return {
    opType: strings(NODE_OP_TYPE)[0] ?? '',
    domain: strings(NODE_DOMAIN)[0] ?? '',
    inputs: strings(NODE_INPUT),
    outputs: strings(NODE_OUTPUT),
    ints: new Map(
      attributes
        .filter((attribute) => attribute.some((f) => f.number === ATTRIBUTE_INT))
        .map((attribute) => [nameOf(attribute), BigInt.asIntN(64, attribute.find((f) => f.number === ATTRIBUTE_INT)!.value!)]),
    ),
    floats,
  };
}

/** The values of a repeated integer field `number` of a message (its parsed fields), packed or not, as signed 64-bit integers. */
export function repeatedInts(fields: readonly RawField[], number: number): bigint[] {
  const values: bigint[] = [];
  for (const field of fields) {
    if (field.number !== number) continue;
    if (field.value !== undefined) values.push(BigInt.asIntN(64, field.value));
    for (let offset = 0; field.payload && offset < field.payload.length; ) {
      const [value, next] = readVarint(field.payload, offset);
      values.push(BigInt.asIntN(64, value));
      offset = next;
    }
  }
  return values;
}

/** The dims of a TensorProto (its parsed fields). */
export const tensorDims = (fields: readonly RawField[]): number[] => repeatedInts(fields, TENSOR_DIMS).map(Number);

/**
 * GraphProto fields (each one whole field) less the nodes that nothing the graph outputs depends
 * on, in whatever order the nodes come, and the initializers only those read. A graph with
 * subgraphs (an If), whose nodes may read outer tensors without naming them as inputs, is returned
 * whole.
 */
export function withoutDeadNodes(fields: readonly Uint8Array[]): Uint8Array[] {
  const parsed = fields.map((bytes) => parseFields(bytes)[0]!);
  const nodes = new Map<number, NodeSummary>();
  parsed.forEach((field, index) => {
    if (field.number === GRAPH_NODE) nodes.set(index, readNode(field.payload!));
  });
  const hasSubgraph = parsed.some((field) => field.number === GRAPH_NODE && parseFields(field.payload!).some((f) => f.number === NODE_ATTRIBUTE && parseFields(f.payload!).some((a) => a.number === ATTRIBUTE_GRAPH)));
  if (hasSubgraph) return [...fields];
  const producer = new Map<string, number>();
  for (const [index, node] of nodes) for (const output of node.outputs) producer.set(output, index);
  const live = new Set<number>();
  const pending = parsed.filter((field) => field.number === GRAPH_OUTPUT).map((field) => valueInfoName(field.payload!));
  while (pending.length > 0) {
    const index = producer.get(pending.pop()!);
    if (index === undefined || live.has(index)) continue;
    live.add(index);
    pending.push(...nodes.get(index)!.inputs.filter((input) => input !== ''));
  }
  const read = new Set([...live].flatMap((index) => nodes.get(index)!.inputs));
  const inputs = new Set(parsed.filter((field) => field.number === GRAPH_INPUT).map((field) => valueInfoName(field.payload!)));
  // An initializer nothing reads any more goes too (the runtime warns of each), unless it doubles as a graph input.
  const unread = (field: RawField) => {
    if (field.number !== GRAPH_INITIALIZER) return false;
    const name = decodeText(parseFields(field.payload!).find((f) => f.number === TENSOR_NAME)?.payload);
    return !read.has(name) && !inputs.has(name);
  };
  return fields.filter((_, index) => (nodes.has(index) ? live.has(index) : !unread(parsed[index]!)));
}

/** The name of a ValueInfoProto (a graph input or output). */
export function valueInfoName(payload: Uint8Array): string {
  return decodeText(parseFields(payload).find((f) => f.number === VALUE_INFO_NAME)?.payload);
}

/** The dims of a ValueInfoProto that describes a tensor: a number where fixed, the parameter's name where symbolic, undefined where neither. */
export function valueInfoDims(payload: Uint8Array): (number | string | undefined)[] {
  const type = parseFields(payload).find((f) => f.number === VALUE_INFO_TYPE)?.payload;
  const tensor = type && parseFields(type).find((f) => f.number === TYPE_TENSOR)?.payload;
  const shape = tensor && parseFields(tensor).find((f) => f.number === TENSOR_TYPE_SHAPE)?.payload;
  if (!shape) return [];
  return parseFields(shape)
    .filter((f) => f.number === SHAPE_DIM)
    .map((f) => {
      const dim = parseFields(f.payload!);
      const value = dim.find((d) => d.number === DIM_VALUE)?.value;
      if (value !== undefined) return Number(value);
      const param = dim.find((d) => d.number === DIM_PARAM)?.payload;
      return param && decodeText(param);
    });
}

/** The element type of a ValueInfoProto that describes a tensor; undefined for anything else. */
export function tensorElementType(payload: Uint8Array): number | undefined {
  const type = parseFields(payload).find((f) => f.number === VALUE_INFO_TYPE)?.payload;
  const tensor = type && parseFields(type).find((f) => f.number === TYPE_TENSOR)?.payload;
  const elem = tensor && parseFields(tensor).find((f) => f.number === TENSOR_TYPE_ELEM)?.value;
  return elem === undefined ? undefined : Number(elem);
}

/**
 * `model` (the bytes of a ModelProto) with its GraphProto replaced by what `edit` makes of it;
 * undefined when the model has no graph or `edit` returns none.
 */
export function editGraph(model: Uint8Array, edit: (graphFields: RawField[], graph: Uint8Array) => Uint8Array | undefined): Uint8Array | undefined {
  const modelFields = parseFields(model);
  const graphField = modelFields.find((field) => field.number === MODEL_GRAPH && field.payload);
  if (!graphField) return undefined;
  const graph = edit(parseFields(graphField.payload!), graphField.payload!);
  return graph && concat(modelFields.map((field) => (field === graphField ? lengthField(MODEL_GRAPH, graph) : field.bytes)));
}
