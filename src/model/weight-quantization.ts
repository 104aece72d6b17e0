/**
 * An edit of the decoder graph that stores its weights in 4 bits: every `MatMul(x, W)` by a float32
 * 2-D weight whose rows split into blocks of 32 becomes a com.microsoft `MatMulNBits` (symmetric,
 * zero point 8, `accuracy_level` 4), as int4 exports have them. The weights take an eighth of the
 * memory (plus a scale per block), and a step at batch 1 reads that much less. The output head
 * (the MatMul that makes `logits`) stays in float32, so the logits keep their precision and the
 * `logits_positions` edit still applies. Each row's input is quantized on its own, so a sequence's
 * numbers do not depend on what it is batched with.
 *
 * Weights stored as external data are read from beside the graph (see ExternalDataReader); the
 * quantized ones then live in the edited graph, the others stay where they are.
 */
import {
  concat,
  decodeText,
  editGraph,
  ELEM_FLOAT,
  ELEM_UINT8,
  GRAPH_INITIALIZER,
  GRAPH_NODE,
  initializer,
  intAttribute,
  lengthField,
  NODE_DOMAIN,
  NODE_INPUT,
  NODE_NAME,
  NODE_OP_TYPE,
  NODE_OUTPUT,
  parseFields,
  readNode,
  stringField,
  TENSOR_DATA_LOCATION,
  TENSOR_DATA_TYPE,
  TENSOR_DIMS,
  TENSOR_EXTERNAL_DATA,
  TENSOR_NAME,
  TENSOR_RAW_DATA,
  withOpsetImport,
} from './onnx-proto.js';

export const INT4_BLOCK = 32;

const CONTRIB_DOMAIN = 'com.microsoft';

/**
 * A [K, N] weight (row-major) as MatMulNBits takes it: B uint8 [N, K/32, 16], the even k of each
 * pair in the low nibble, levels 0–15 around a zero point of 8, and scales [N · K/32].
 */
export function quantizeInt4(weight: Float32Array, k: number, n: number): { packed: Uint8Array; scales: Float32Array } {
  const blocks = k / INT4_BLOCK;
  const packed = new Uint8Array(n * blocks * (INT4_BLOCK / 2));
  const scales = new Float32Array(n * blocks);
  for (let column = 0; column < n; column++) {
    for (let block = 0; block < blocks; block++) {
      let max = 0;
      for (let i = 0; i < INT4_BLOCK; i++) max = Math.max(max, Math.abs(weight[(block * INT4_BLOCK + i) * n + column]!));
      const scale = max / 7 || 1;
      scales[column * blocks + block] = scale;
      const level = (row: number) => Math.max(0, Math.min(15, Math.round(weight[row * n + column]! / scale) + 8));
      for (let i = 0; i < INT4_BLOCK; i += 2) {
        const row = block * INT4_BLOCK + i;
        packed[(column * blocks + block) * (INT4_BLOCK / 2) + i / 2] = level(row) | (level(row + 1) << 4);
      }
    }
  }
  return { packed, scales };
}

interface FloatWeight {
  name: string;
  k: number;
  n: number;
  values: Float32Array;
}

/** Reads `length` bytes at `offset` of the external data file `location` (beside the graph). */
export type ExternalDataReader = (location: string, offset: number, length: number) => Uint8Array;

/** Where an initializer's external data lies: its `external_data` entries. */
function externalData(tensor: ReturnType<typeof parseFields>): { location: string; offset: number; length: number } | undefined {
  if (tensor.find((f) => f.number === TENSOR_DATA_LOCATION)?.value !== 1n) return undefined;
  const entries = new Map(
    tensor
      .filter((f) => f.number === TENSOR_EXTERNAL_DATA)
      .map((f) => parseFields(f.payload!))
      .map((entry) => [decodeText(entry.find((e) => e.number === 1)?.payload), decodeText(entry.find((e) => e.number === 2)?.payload)] as const),
  );
  const location = entries.get('location');
  const length = Number(entries.get('length'));
  if (!location || !Number.isSafeInteger(length)) return undefined;
  return { location, offset: Number(entries.get('offset') ?? 0), length };
}

/** A float32 2-D initializer, held in the graph or (with `readExternal`) in its external data, as a weight; undefined for anything else. */
function floatWeight(payload: Uint8Array, readExternal?: ExternalDataReader): FloatWeight | undefined {
  const tensor = parseFields(payload);
  const external = readExternal ? externalData(tensor) : undefined;
  const raw = external ? readExternal!(external.location, external.offset, external.length) : tensor.find((f) => f.number === TENSOR_RAW_DATA)?.payload;
  const dims = tensor.filter((f) => f.number === TENSOR_DIMS && f.value !== undefined).map((f) => Number(f.value));
  if (tensor.find((f) => f.number === TENSOR_DATA_TYPE)?.value !== BigInt(ELEM_FLOAT) || !raw || dims.length !== 2) return undefined;
  // A copy of its own: the bytes may be a Buffer's slice, which shares (and offsets into) its memory.
  const copy = new Uint8Array(raw);
  return { name: decodeText(tensor.find((f) => f.number === TENSOR_NAME)?.payload), k: dims[0]!, n: dims[1]!, values: new Float32Array(copy.buffer, 0, copy.length / 4) };
}

/**
 * `model` with its weights in 4 bits (see above) and how many MatMuls changed; undefined when none
 * could. `keepHead: false` quantizes the output head too, as int4 exports do.
 */
export function quantizeWeightsInt4(model: Uint8Array, { keepHead = true, readExternal }: { keepHead?: boolean; readExternal?: ExternalDataReader } = {}): { model: Uint8Array; matmuls: number } | undefined {
  let matmuls = 0;
  const edited = editGraph(model, (fields) => {
    const weights = new Map<string, FloatWeight>();
    for (const field of fields) {
      const weight = field.number === GRAPH_INITIALIZER ? floatWeight(field.payload!, readExternal) : undefined;
      if (weight) weights.set(weight.name, weight);
    }
    const packed = new Set<string>();
    const out = fields.flatMap((field) => {
      if (field.number !== GRAPH_NODE) return [field.bytes];
      const matmul = readNode(field.payload!);
      const weight = matmul.opType === 'MatMul' && matmul.domain === '' ? weights.get(matmul.inputs[1] ?? '') : undefined;
      if (!weight || weight.k % INT4_BLOCK !== 0 || (keepHead && matmul.outputs[0] === 'logits')) return [field.bytes];
      matmuls++;
      const name = `${weight.name}/int4`;
      const initializers: Uint8Array[] = [];
      if (!packed.has(name)) {
        packed.add(name);
        const { packed: bytes, scales } = quantizeInt4(weight.values, weight.k, weight.n);
        initializers.push(initializer(`${name}/B`, ELEM_UINT8, [weight.n, weight.k / INT4_BLOCK, INT4_BLOCK / 2], bytes), initializer(`${name}/scales`, ELEM_FLOAT, [weight.n * (weight.k / INT4_BLOCK)], new Uint8Array(scales.buffer)));
      }
      const node = concat([
        ...[matmul.inputs[0]!, `${name}/B`, `${name}/scales`].map((input) => stringField(NODE_INPUT, input)),
        stringField(NODE_OUTPUT, matmul.outputs[0]!),
        stringField(NODE_NAME, `/int4/${matmul.outputs[0]}`),
        stringField(NODE_OP_TYPE, 'MatMulNBits'),
        stringField(NODE_DOMAIN, CONTRIB_DOMAIN),
        intAttribute('K', weight.k),
        intAttribute('N', weight.n),
        intAttribute('bits', 4),
        intAttribute('block_size', INT4_BLOCK),
        intAttribute('accuracy_level', 4),
      ]);
      return [...initializers, lengthField(GRAPH_NODE, node)];
    });
    if (matmuls === 0) return undefined;
    // The float32 weights no node reads any more are left out.
    const read = new Set(out.map((bytes) => parseFields(bytes)[0]!).filter((f) => f.number === GRAPH_NODE).flatMap((f) => readNode(f.payload!).inputs));
    return concat(
      out.filter((bytes) => {
        const [field] = parseFields(bytes);
        const name = field?.number === GRAPH_INITIALIZER ? decodeText(parseFields(field.payload!).find((f) => f.number === TENSOR_NAME)?.payload) : undefined;
        return name === undefined || !weights.has(name) || read.has(name);
      }),
    );
  });
  return edited && { model: withOpsetImport(edited, CONTRIB_DOMAIN), matmuls };
}
