/**
 * Converts a bench model's ONNX graph (and its external data) into a GGUF v3 file for llama.cpp,
 * so that llama.cpp runs on the very weights the raw loop and the server run.
 *
 *   npx tsx tools/gguf.ts --model bench/models/bench-gpt2-124m --type f32|q8_0|q4_0 [--out FILE]
 *
 * Architectures: `gpt2` (GPT-2 graphs), `llama` and `qwen2` (Hugging Face Llama and Qwen2 graphs, see
 * mapLlama).
 * Which initializer is which comes from the graph, not from names; for gpt2: the Gathers of
 * `input_ids` and `position_ids`, the LayerNormalization nodes in order, the MatMuls by a 2-D weight
 * in order, each followed by the Add of its bias. Initializers an exporter deduplicated are reached through the
 * Identity nodes that rename them. A MatMul weight is stored [K, N] in ONNX; ggml wants it [N, K]
 * row-major (ne0 = K), so every one is transposed. The output head is whatever matrix the graph's
 * `logits` MatMul reads (a graph may hold its own copy even where config.json says it is tied).
 *
 * q8_0: every 2-D tensor but the position embeddings (kept in f32, as llama.cpp's converter does)
 * in blocks of 32 along each row, a float16 scale max|x|/127 and 32 int8 per block; 1-D tensors
 * stay f32. q4_0: the same tensors in ggml's q4_0 blocks (see quantizeQ4_0), the embeddings and the
 * output head too (as `llama-quantize --pure` writes them). Converted files are cached in bench/models/<model>-gguf/ (git-ignored).
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  decodeText,
  ELEM_FLOAT,
  externalDataOf,
  GRAPH_INITIALIZER,
  GRAPH_INPUT,
  GRAPH_NODE,
  MODEL_GRAPH,
  parseFields,
  readNode,
  TENSOR_DATA_LOCATION,
  TENSOR_DATA_TYPE,
  TENSOR_DIMS,
  TENSOR_NAME,
  TENSOR_RAW_DATA,
  valueInfoName,
  type NodeSummary,
} from '../src/engine/thread/graph/onnx-proto.js';
import { ensureWeights, ROOT } from '../bench/common.js';

export type GgufType = 'f32' | 'q8_0' | 'q4_0';
export const GGUF_TYPES: readonly GgufType[] = ['f32', 'q8_0', 'q4_0'];

// ---------- GGUF writing ----------

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
const GGUF_VERSION = 3;
const ALIGNMENT = 32;

/** GGUF metadata value types. */
const enum Kv {
  Uint32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
}

/** ggml tensor types. */
const GGML_F32 = 0;
const GGML_Q8_0 = 8;
export const Q8_0_BLOCK = 32;
export const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK;

/** llama_ftype of the whole file. */
const GGML_Q4_0 = 2;
export const Q4_0_BLOCK = 32;
export const Q4_0_BLOCK_BYTES = 2 + Q4_0_BLOCK / 2;
const FILE_TYPE: Record<GgufType, number> = { f32: 0, q8_0: 7, q4_0: 2 };

type KvValue =
  | { type: Kv.Uint32 | Kv.Int32 | Kv.Float32; value: number }
  | { type: Kv.Bool; value: boolean }
  | { type: Kv.String; value: string }
  | { type: Kv.Array; of: Kv.Int32; values: readonly number[] }
  | { type: Kv.Array; of: Kv.String; values: readonly string[] };

const u32 = (value: number): KvValue => ({ type: Kv.Uint32, value });
const f32 = (value: number): KvValue => ({ type: Kv.Float32, value });
const str = (value: string): KvValue => ({ type: Kv.String, value });

/** Little-endian bytes, grown as needed. */
class ByteWriter {
  private buffer = Buffer.alloc(1 << 16);
  length = 0;

  private reserve(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const grown = Buffer.alloc(Math.max(this.buffer.length * 2, this.length + bytes));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }
  u32(value: number): void {
    this.reserve(4);
    this.length = this.buffer.writeUInt32LE(value, this.length);
  }
  i32(value: number): void {
    this.reserve(4);
    this.length = this.buffer.writeInt32LE(value, this.length);
  }
  f32(value: number): void {
    this.reserve(4);
    this.length = this.buffer.writeFloatLE(value, this.length);
  }
  u64(value: number): void {
    this.reserve(8);
    this.length = this.buffer.writeBigUInt64LE(BigInt(value), this.length);
  }
  u8(value: number): void {
    this.reserve(1);
    this.length = this.buffer.writeUInt8(value, this.length);
  }
  string(value: string): void {
    const bytes = Buffer.from(value, 'utf8');
    this.u64(bytes.length);
    this.reserve(bytes.length);
    this.length += bytes.copy(this.buffer, this.length);
  }
  pad(alignment: number): void {
    const padding = (alignment - (this.length % alignment)) % alignment;
    this.reserve(padding);
    this.buffer.fill(0, this.length, this.length + padding);
    this.length += padding;
  }
  bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

function writeKv(out: ByteWriter, key: string, kv: KvValue): void {
  out.string(key);
  out.u32(kv.type);
  switch (kv.type) {
    case Kv.Uint32:
      out.u32(kv.value);
      break;
    case Kv.Int32:
      out.i32(kv.value);
      break;
    case Kv.Float32:
      out.f32(kv.value);
      break;
    case Kv.Bool:
      out.u8(kv.value ? 1 : 0);
      break;
    case Kv.String:
      out.string(kv.value);
      break;
    case Kv.Array:
      out.u32(kv.of);
      out.u64(kv.values.length);
      if (kv.of === Kv.String) for (const value of kv.values) out.string(value);
      else for (const value of kv.values) out.i32(value);
      break;
  }
}

/** A tensor of the GGUF file: its shape in ggml's order (ne0 first) and how to make its bytes. */
interface GgufTensor {
  name: string;
  ne: number[];
  type: number;
  data(): Uint8Array;
}

const tensorBytes = (tensor: Pick<GgufTensor, 'ne' | 'type'>): number => {
  const count = tensor.ne.reduce((a, b) => a * b, 1);
  if (tensor.type === GGML_Q8_0) return (count / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
  if (tensor.type === GGML_Q4_0) return (count / Q4_0_BLOCK) * Q4_0_BLOCK_BYTES;
  return count * 4;
};

/** Writes header, metadata, tensor infos and the aligned tensor data to `path` (through a temporary file). */
function writeGguf(path: string, metadata: [string, KvValue][], tensors: GgufTensor[]): number {
  const head = new ByteWriter();
  head.u32(GGUF_MAGIC);
  head.u32(GGUF_VERSION);
  head.u64(tensors.length);
  head.u64(metadata.length);
  for (const [key, kv] of metadata) writeKv(head, key, kv);
  let offset = 0;
  for (const tensor of tensors) {
    head.string(tensor.name);
    head.u32(tensor.ne.length);
    for (const n of tensor.ne) head.u64(n);
    head.u32(tensor.type);
    head.u64(offset);
    offset += tensorBytes(tensor);
    offset += (ALIGNMENT - (offset % ALIGNMENT)) % ALIGNMENT;
  }
  head.pad(ALIGNMENT);
  const temporary = `${path}.tmp`;
  const fd = openSync(temporary, 'w');
  let written = 0;
  const write = (bytes: Uint8Array) => {
    for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done, written + done);
    written += bytes.length;
  };
  try {
    write(head.bytes());
    const zeros = new Uint8Array(ALIGNMENT);
    for (const tensor of tensors) {
      const data = tensor.data();
      if (data.length !== tensorBytes(tensor)) throw new Error(`${tensor.name}: ${data.length} bytes, expected ${tensorBytes(tensor)}`);
      write(data);
      write(zeros.subarray(0, (ALIGNMENT - (data.length % ALIGNMENT)) % ALIGNMENT));
    }
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
  return written;
}

// ---------- tensor data ----------

/** float32 → IEEE half bits, rounding to nearest even. */
export function toFloat16(value: number): number {
  const bits = new Uint32Array(Float32Array.of(value).buffer)[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  const mantissa = bits & 0x7fffff;
  if (((bits >>> 23) & 0xff) === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  if (exponent >= 0x1f) return sign | 0x7c00;
  if (exponent <= 0) {
    if (exponent < -10) return sign;
    const full = mantissa | 0x800000;
    const shift = 14 - exponent;
    let half = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = sign | (exponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
  return half;
}

/** roundf: halves away from zero. */
const roundAway = (x: number): number => Math.sign(x) * Math.round(Math.abs(x));

/** Rows of `rowLength` float32 values as q8_0 blocks, as ggml's reference quantizer makes them. */
export function quantizeQ8_0(values: Float32Array, rowLength: number): Uint8Array {
  if (rowLength % Q8_0_BLOCK !== 0) throw new Error(`q8_0 needs rows of a multiple of ${Q8_0_BLOCK} values, not ${rowLength}`);
  const blocks = values.length / Q8_0_BLOCK;
  const out = new Uint8Array(blocks * Q8_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  const quants = new Int8Array(out.buffer);
  for (let block = 0; block < blocks; block++) {
    const start = block * Q8_0_BLOCK;
    let max = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) max = Math.max(max, Math.abs(values[start + i]!));
    const d = Math.fround(max / 127);
    const id = d === 0 ? 0 : Math.fround(1 / d);
    const at = block * Q8_0_BLOCK_BYTES;
    view.setUint16(at, toFloat16(d), true);
    for (let i = 0; i < Q8_0_BLOCK; i++) quants[at + 2 + i] = roundAway(Math.fround(values[start + i]! * id));
  }
  return out;
}

/**
 * Rows of `rowLength` float32 values as q4_0 blocks, as ggml's reference quantizer
 * (`quantize_row_q4_0_ref`) makes them: per block of 32, the value of largest magnitude over −8 as a
 * float16 scale, then 16 bytes, value j in the low nibble of byte j and value j + 16 in its high
 * nibble, each `min(15, trunc(x / d + 8.5))`.
 */
export function quantizeQ4_0(values: Float32Array, rowLength: number): Uint8Array {
  if (rowLength % Q4_0_BLOCK !== 0) throw new Error(`q4_0 needs rows of a multiple of ${Q4_0_BLOCK} values, not ${rowLength}`);
  const blocks = values.length / Q4_0_BLOCK;
  const out = new Uint8Array(blocks * Q4_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  const half = Q4_0_BLOCK / 2;
  for (let block = 0; block < blocks; block++) {
    const start = block * Q4_0_BLOCK;
    let largest = 0;
    let signed = 0;
    for (let i = 0; i < Q4_0_BLOCK; i++) {
      const value = values[start + i]!;
      if (largest < Math.abs(value)) {
        largest = Math.abs(value);
        signed = value;
      }
    }
    const d = Math.fround(signed / -8);
    const id = d === 0 ? 0 : Math.fround(1 / d);
    const at = block * Q4_0_BLOCK_BYTES;
    view.setUint16(at, toFloat16(d), true);
    const nibble = (value: number) => Math.min(15, Math.trunc(Math.fround(Math.fround(value * id) + 8.5)));
    for (let j = 0; j < half; j++) out[at + 2 + j] = nibble(values[start + j]!) | (nibble(values[start + half + j]!) << 4);
  }
  return out;
}

/** A [rows, columns] row-major matrix transposed to [columns, rows]. */
function transpose(values: Float32Array, rows: number, columns: number): Float32Array {
  const out = new Float32Array(values.length);
  const TILE = 32;
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE);
    for (let c0 = 0; c0 < columns; c0 += TILE) {
      const c1 = Math.min(columns, c0 + TILE);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = values[r * columns + c]!;
    }
  }
  return out;
}

const asBytes = (values: Float32Array) => new Uint8Array(values.buffer, values.byteOffset, values.byteLength);

// ---------- reading the ONNX graph ----------

interface Initializer {
  name: string;
  dims: number[];
  dataType: number;
  raw?: Uint8Array;
  external?: { location: string; offset: number; length: number };
}

interface OnnxGraph {
  dir: string;
  initializers: Map<string, Initializer>;
  /** Output name → input name of every Identity node. */
  aliases: Map<string, string>;
  nodes: NodeSummary[];
  inputs: Set<string>;
}

function readInitializer(payload: Uint8Array): Initializer {
  const fields = parseFields(payload);
  const initializer: Initializer = {
    name: decodeText(fields.find((f) => f.number === TENSOR_NAME)?.payload),
    dims: fields.filter((f) => f.number === TENSOR_DIMS && f.value !== undefined).map((f) => Number(f.value)),
    dataType: Number(fields.find((f) => f.number === TENSOR_DATA_TYPE)?.value ?? 0n),
    raw: fields.find((f) => f.number === TENSOR_RAW_DATA)?.payload,
  };
  if (fields.find((f) => f.number === TENSOR_DATA_LOCATION)?.value === 1n) {
    initializer.external = externalDataOf(fields);
    if (!initializer.external) throw new Error(`${initializer.name}: external data without a location or length`);
  }
  return initializer;
}

function readGraph(modelDir: string): OnnxGraph {
  const model = readFileSync(join(modelDir, 'model.onnx'));
  const graph = parseFields(model).find((f) => f.number === MODEL_GRAPH)?.payload;
  if (!graph) throw new Error(`${modelDir}/model.onnx has no graph`);
  const initializers = new Map<string, Initializer>();
  const aliases = new Map<string, string>();
  const nodes: NodeSummary[] = [];
  const inputs = new Set<string>();
  for (const field of parseFields(graph)) {
    if (field.number === GRAPH_INITIALIZER) {
      const initializer = readInitializer(field.payload!);
      initializers.set(initializer.name, initializer);
    } else if (field.number === GRAPH_NODE) {
      const node = readNode(field.payload!);
      nodes.push(node);
      if (node.opType === 'Identity' && node.domain === '') aliases.set(node.outputs[0]!, node.inputs[0]!);
    } else if (field.number === GRAPH_INPUT) inputs.add(valueInfoName(field.payload!));
  }
  return { dir: modelDir, initializers, aliases, nodes, inputs };
}

/** The initializer that `name` is, through any Identity nodes; undefined when it is computed. */
function initializerOf(graph: OnnxGraph, name: string | undefined): Initializer | undefined {
  const seen = new Set<string>();
  while (name !== undefined && !graph.initializers.has(name) && graph.aliases.has(name) && !seen.has(name)) {
    seen.add(name);
    name = graph.aliases.get(name);
  }
  return name === undefined ? undefined : graph.initializers.get(name);
}

/** An initializer's float32 values (a copy of their own). */
function floatValues(graph: OnnxGraph, initializer: Initializer): Float32Array {
  if (initializer.dataType !== ELEM_FLOAT) throw new Error(`${initializer.name}: element type ${initializer.dataType}, only float32 is converted`);
  const count = initializer.dims.reduce((a, b) => a * b, 1);
  const out = new Float32Array(count);
  const bytes = asBytes(out);
  if (initializer.external) {
    const { location, offset, length } = initializer.external;
    if (length !== bytes.length) throw new Error(`${initializer.name}: ${length} bytes of external data for ${count} floats`);
    const fd = openSync(join(graph.dir, location), 'r');
    try {
      for (let done = 0; done < length; ) {
        const read = readSync(fd, bytes, done, length - done, offset + done);
        if (read === 0) throw new Error(`${initializer.name}: ${location} ends before ${offset + length}`);
        done += read;
      }
    } finally {
      closeSync(fd);
    }
  } else if (initializer.raw && initializer.raw.length === bytes.length) bytes.set(initializer.raw);
  else throw new Error(`${initializer.name}: no raw data of ${bytes.length} bytes (float_data is not read)`);
  return out;
}

/** A MatMul by a 2-D float initializer, with the 1-D initializer an Add puts on its output (if any). */
interface Linear {
  node: NodeSummary;
  weight: Initializer;
  bias: Initializer | undefined;
}

function linears(graph: OnnxGraph): Linear[] {
  const out: Linear[] = [];
  for (const node of graph.nodes) {
    if (node.opType !== 'MatMul' || node.domain !== '') continue;
    const weight = initializerOf(graph, node.inputs[1]);
    if (!weight || weight.dims.length !== 2) continue;
    const product = node.outputs[0]!;
    let bias: Initializer | undefined;
    for (const add of graph.nodes) {
      if (add.opType !== 'Add' || !add.inputs.includes(product)) continue;
      const other = initializerOf(graph, add.inputs.find((input) => input !== product));
      if (other && other.dims.length === 1 && other.dims[0] === weight.dims[1]) bias = other;
      break;
    }
    out.push({ node, weight, bias });
  }
  return out;
}

// ---------- architectures ----------

type Config = Record<string, unknown>;

interface Mapped {
  architecture: string;
  metadata: [string, KvValue][];
  /**
   * GGUF name → the ONNX initializer, whether it is a MatMul weight to transpose, and (q and k of a
   * rotate-half RoPE) the heads whose rows to interleave.
   */
  tensors: { name: string; source: Initializer; transposed: boolean; ropeHeads?: number }[];
  vocabRows: number;
}

const need = (condition: boolean, message: string): void => {
  if (!condition) throw new Error(`unsupported graph: ${message}`);
};

const num = (config: Config, ...keys: string[]): number => {
  for (const key of keys) if (typeof config[key] === 'number') return config[key] as number;
  throw new Error(`config.json has none of ${keys.join(', ')}`);
};

function mapGpt2(graph: OnnxGraph, config: Config): Mapped {
  const layers = num(config, 'n_layer');
  const heads = num(config, 'n_head');
  const gathers = graph.nodes.filter((n) => n.opType === 'Gather').map((n) => ({ node: n, table: initializerOf(graph, n.inputs[0]) })).filter((g) => g.table?.dims.length === 2);
  const tokenEmbedding = gathers.find((g) => g.node.inputs[1] === 'input_ids')?.table;
  const positionEmbedding = gathers.find((g) => g.node.inputs[1] === 'position_ids')?.table ?? gathers.find((g) => g.table !== tokenEmbedding)?.table;
  need(tokenEmbedding !== undefined, 'no Gather of input_ids from an initializer');
  need(positionEmbedding !== undefined, 'no position embedding Gather');
  const [vocab, hidden] = tokenEmbedding!.dims as [number, number];
  need(positionEmbedding!.dims[1] === hidden, 'position embeddings of another width than the token embeddings');

  const norms = graph.nodes.filter((n) => n.opType === 'LayerNormalization');
  need(norms.length === 2 * layers + 1, `${norms.length} LayerNormalization nodes for ${layers} layers (expected ${2 * layers + 1})`);
  const norm = (node: NodeSummary) => {
    const weight = initializerOf(graph, node.inputs[1]);
    const bias = initializerOf(graph, node.inputs[2]);
    need(weight?.dims[0] === hidden && bias?.dims[0] === hidden, 'a LayerNormalization without a scale and bias of the hidden width');
    return { weight: weight!, bias: bias! };
  };

  const matmuls = linears(graph);
  need(matmuls.length === 4 * layers + 1, `${matmuls.length} MatMuls by a weight for ${layers} layers (expected ${4 * layers + 1})`);
  const head = matmuls[4 * layers]!;
  need(head.node.outputs[0] === 'logits', 'the last MatMul by a weight does not make logits');
  need(head.weight.dims[0] === hidden && head.weight.dims[1] === vocab, `output head of shape ${head.weight.dims.join('×')}`);
  const feedForward = matmuls[2]!.weight.dims[1]!;

  const tensors: Mapped['tensors'] = [
    { name: 'token_embd.weight', source: tokenEmbedding!, transposed: false },
    { name: 'position_embd.weight', source: positionEmbedding!, transposed: false },
  ];
  const linear = (name: string, l: Linear, k: number, n: number) => {
    need(l.weight.dims[0] === k && l.weight.dims[1] === n, `${name}: weight ${l.weight.dims.join('×')}, expected ${k}×${n}`);
    need(l.bias !== undefined, `${name}: no bias`);
    tensors.push({ name: `${name}.weight`, source: l.weight, transposed: true }, { name: `${name}.bias`, source: l.bias!, transposed: false });
  };
  for (let layer = 0; layer < layers; layer++) {
    const attnNorm = norm(norms[2 * layer]!);
    const ffnNorm = norm(norms[2 * layer + 1]!);
    const [qkv, attnOut, up, down] = matmuls.slice(4 * layer, 4 * layer + 4) as [Linear, Linear, Linear, Linear];
    tensors.push({ name: `blk.${layer}.attn_norm.weight`, source: attnNorm.weight, transposed: false }, { name: `blk.${layer}.attn_norm.bias`, source: attnNorm.bias, transposed: false });
    linear(`blk.${layer}.attn_qkv`, qkv, hidden, 3 * hidden);
    linear(`blk.${layer}.attn_output`, attnOut, hidden, hidden);
    tensors.push({ name: `blk.${layer}.ffn_norm.weight`, source: ffnNorm.weight, transposed: false }, { name: `blk.${layer}.ffn_norm.bias`, source: ffnNorm.bias, transposed: false });
    linear(`blk.${layer}.ffn_up`, up, hidden, feedForward);
    linear(`blk.${layer}.ffn_down`, down, feedForward, hidden);
  }
  const outputNorm = norm(norms[2 * layers]!);
  tensors.push(
    { name: 'output_norm.weight', source: outputNorm.weight, transposed: false },
    { name: 'output_norm.bias', source: outputNorm.bias, transposed: false },
    { name: 'output.weight', source: head.weight, transposed: true },
  );
  return {
    architecture: 'gpt2',
    metadata: [
      ['gpt2.context_length', u32(positionEmbedding!.dims[0]!)],
      ['gpt2.embedding_length', u32(hidden)],
      ['gpt2.feed_forward_length', u32(feedForward)],
      ['gpt2.block_count', u32(layers)],
      ['gpt2.attention.head_count', u32(heads)],
      ['gpt2.attention.layer_norm_epsilon', f32(typeof config.layer_norm_epsilon === 'number' ? config.layer_norm_epsilon : 1e-5)],
    ],
    tensors,
    vocabRows: vocab,
  };
}

/** Whether a node that reads `name` (or reads what those nodes make, `depth` nodes deep) is a `opType`. */
function reaches(graph: OnnxGraph, name: string, opType: string, depth: number): boolean {
  let frontier = [name];
  for (let level = 0; level < depth && frontier.length > 0; level++) {
    const next: string[] = [];
    for (const node of graph.nodes) {
      if (!node.inputs.some((input) => frontier.includes(input))) continue;
      if (node.opType === opType) return true;
      next.push(...node.outputs);
    }
    frontier = next;
  }
  return false;
}

/**
 * Rows of a [heads × headDim, columns] matrix reordered within each head from Hugging Face's
 * rotate-half RoPE (the first half of a head's dimensions paired with the second) to llama.cpp's
 * (adjacent pairs): row 2i + j of a head comes from row j · headDim/2 + i, as convert_hf_to_gguf.py's
 * permute does.
 */
export function interleaveRopeRows(values: Float32Array, heads: number, columns: number): Float32Array {
  const headDim = values.length / columns / heads;
  const half = headDim / 2;
  const out = new Float32Array(values.length);
  for (let head = 0; head < heads; head++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = (head * headDim + j * half + i) * columns;
        out.set(values.subarray(from, from + columns), (head * headDim + 2 * i + j) * columns);
      }
    }
  }
  return out;
}

/**
 * A Hugging Face Llama graph as exported with its RMSNorms and RoPE spelled out: per layer the
 * norm's scale (a Mul by a 1-D weight), q, k, v (k and v told apart by the Neg of rotate-half that
 * follows k), o, the norm, gate (the one a Sigmoid reads: SiLU), up and down; then the final norm
 * and the head. Qwen2 is the same graph with biases on q, k and v; llama.cpp's `qwen2` rotates
 * half of each head against the other half as the graph does (NEOX), so its q and k rows keep
 * their order, where `llama` pairs adjacent dimensions and they are interleaved.
 */
function mapLlama(graph: OnnxGraph, config: Config, architecture: 'llama' | 'qwen2'): Mapped {
  const layers = num(config, 'num_hidden_layers');
  const heads = num(config, 'num_attention_heads');
  const kvHeads = typeof config.num_key_value_heads === 'number' ? config.num_key_value_heads : heads;
  const tokenEmbedding = graph.nodes
    .filter((n) => n.opType === 'Gather' && n.inputs[1] === 'input_ids')
    .map((n) => initializerOf(graph, n.inputs[0]))
    .find((table) => table?.dims.length === 2);
  need(tokenEmbedding !== undefined, 'no Gather of input_ids from an initializer');
  const [vocab, hidden] = tokenEmbedding!.dims as [number, number];
  const headDim = typeof config.head_dim === 'number' ? config.head_dim : hidden / heads;

  const norms = graph.nodes
    .filter((n) => n.opType === 'Mul')
    .map((node) => ({ node, weight: node.inputs.map((input) => initializerOf(graph, input)).find((w) => w?.dims.length === 1 && w.dims[0] === hidden) }))
    .filter((n): n is { node: NodeSummary; weight: Initializer } => n.weight !== undefined);
  need(norms.length === 2 * layers + 1, `${norms.length} RMSNorm scales (a Mul by a 1-D weight) for ${layers} layers (expected ${2 * layers + 1})`);
  const ropeNegs = graph.nodes.filter((n) => n.opType === 'Neg').length;
  need(ropeNegs === 2 * layers, `${ropeNegs} Neg nodes: not the rotate-half RoPE of q and k in each layer`);

  const matmuls = linears(graph);
  need(matmuls.length === 7 * layers + 1, `${matmuls.length} MatMuls by a weight for ${layers} layers (expected ${7 * layers + 1})`);
  const head = matmuls[7 * layers]!;
  need(head.node.outputs[0] === 'logits', 'the last MatMul by a weight does not make logits');
  need(head.weight.dims[0] === hidden && head.weight.dims[1] === vocab, `output head of shape ${head.weight.dims.join('×')}`);
  const feedForward = matmuls[4]!.weight.dims[1]!;

  const tensors: Mapped['tensors'] = [{ name: 'token_embd.weight', source: tokenEmbedding!, transposed: false }];
  const qkvBiases = architecture === 'qwen2';
  const linear = (name: string, l: Linear, k: number, n: number, { ropeHeads, bias = false }: { ropeHeads?: number; bias?: boolean } = {}) => {
    need(l.weight.dims[0] === k && l.weight.dims[1] === n, `${name}: weight ${l.weight.dims.join('×')}, expected ${k}×${n}`);
    need(bias || l.bias === undefined, `${name}: a bias, which llama.cpp's ${architecture} does not load`);
    need(!bias || l.bias !== undefined, `${name}: no bias, which llama.cpp's ${architecture} needs`);
    tensors.push({ name: `${name}.weight`, source: l.weight, transposed: true, ...(architecture === 'llama' && { ropeHeads }) });
    if (bias) tensors.push({ name: `${name}.bias`, source: l.bias!, transposed: false });
  };
  for (let layer = 0; layer < layers; layer++) {
    const [attnNorm, ffnNorm] = [norms[2 * layer]!, norms[2 * layer + 1]!];
    const block = matmuls.slice(7 * layer, 7 * layer + 7);
    const reading = (norm: { node: NodeSummary }) => block.filter((l) => l.node.inputs[0] === norm.node.outputs[0]);
    const qkv = reading(attnNorm);
    const gateUp = reading(ffnNorm);
    need(qkv.length === 3 && gateUp.length === 2, `layer ${layer}: ${qkv.length} MatMuls read the attention norm, ${gateUp.length} the feed-forward norm`);
    const rotated = qkv.filter((l) => reaches(graph, l.node.outputs[0]!, 'Neg', 6));
    const v = qkv.find((l) => !rotated.includes(l));
    need(rotated.length === 2 && v !== undefined, `layer ${layer}: no single MatMul among q, k, v without RoPE`);
    const [q, k] = rotated[0]!.weight.dims[1] === heads * headDim ? [rotated[0]!, rotated[1]!] : [rotated[1]!, rotated[0]!];
    const gate = gateUp.find((l) => reaches(graph, l.node.outputs[0]!, 'Sigmoid', 1));
    const up = gateUp.find((l) => l !== gate);
    need(gate !== undefined && up !== undefined, `layer ${layer}: no gate MatMul read by a Sigmoid`);
    const attnOut = block.find((l) => ![...qkv, ...gateUp].includes(l) && l.weight.dims[1] === hidden && l.weight.dims[0] === heads * headDim && block.indexOf(l) < block.indexOf(gate!));
    const down = block.find((l) => ![...qkv, ...gateUp].includes(l) && l !== attnOut);
    need(attnOut !== undefined && down !== undefined, `layer ${layer}: no attention output or down projection`);
    tensors.push({ name: `blk.${layer}.attn_norm.weight`, source: attnNorm.weight, transposed: false });
    linear(`blk.${layer}.attn_q`, q, hidden, heads * headDim, { ropeHeads: heads, bias: qkvBiases });
    linear(`blk.${layer}.attn_k`, k, hidden, kvHeads * headDim, { ropeHeads: kvHeads, bias: qkvBiases });
    linear(`blk.${layer}.attn_v`, v!, hidden, kvHeads * headDim, { bias: qkvBiases });
    linear(`blk.${layer}.attn_output`, attnOut!, heads * headDim, hidden);
    tensors.push({ name: `blk.${layer}.ffn_norm.weight`, source: ffnNorm.weight, transposed: false });
    linear(`blk.${layer}.ffn_gate`, gate!, hidden, feedForward);
    linear(`blk.${layer}.ffn_up`, up!, hidden, feedForward);
    linear(`blk.${layer}.ffn_down`, down!, feedForward, hidden);
  }
  tensors.push({ name: 'output_norm.weight', source: norms[2 * layers]!.weight, transposed: false }, { name: 'output.weight', source: head.weight, transposed: true });
  const rope = (config.rope_parameters ?? {}) as Config;
  const theta = typeof rope.rope_theta === 'number' ? rope.rope_theta : typeof config.rope_theta === 'number' ? config.rope_theta : 10000;
  need((rope.rope_type ?? 'default') === 'default' && config.rope_scaling == null, 'a scaled RoPE');
  const a = architecture;
  return {
    architecture,
    metadata: [
      [`${a}.context_length`, u32(num(config, 'max_position_embeddings'))],
      [`${a}.embedding_length`, u32(hidden)],
      [`${a}.feed_forward_length`, u32(feedForward)],
      [`${a}.block_count`, u32(layers)],
      [`${a}.attention.head_count`, u32(heads)],
      [`${a}.attention.head_count_kv`, u32(kvHeads)],
      [`${a}.attention.key_length`, u32(headDim)],
      [`${a}.attention.value_length`, u32(headDim)],
      [`${a}.attention.layer_norm_rms_epsilon`, f32(typeof config.rms_norm_eps === 'number' ? config.rms_norm_eps : 1e-5)],
      [`${a}.rope.dimension_count`, u32(headDim)],
      [`${a}.rope.freq_base`, f32(theta)],
      [`${a}.vocab_size`, u32(vocab)],
    ],
    tensors,
    vocabRows: vocab,
  };
}

/**
 * The weights of a Llama-family model folder's graph by their GGUF names, each as the graph holds it
 * (a MatMul weight [K, N], not transposed, rows in the graph's order).
 */
export function llamaWeights(modelDir: string): Map<string, { dims: number[]; values: Float32Array }> {
  const config = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as Config;
  const graph = readGraph(modelDir);
  const modelType = config.model_type === 'qwen2' ? 'qwen2' : 'llama';
  return new Map(mapLlama(graph, config, modelType).tensors.map(({ name, source }) => [name, { dims: source.dims, values: floatValues(graph, source) }]));
}

// ---------- tokenizer ----------

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[] };
  added_tokens?: { id: number; content: string; special?: boolean }[];
}

/** Token types of llama.cpp's vocabulary. */
const TOKEN_NORMAL = 1;
const TOKEN_CONTROL = 3;
const TOKEN_USER_DEFINED = 4;
const TOKEN_UNUSED = 5;

function tokenizerMetadata(modelDir: string, vocabRows: number, config: Config): [string, KvValue][] {
  const tokenizer = JSON.parse(readFileSync(join(modelDir, 'tokenizer.json'), 'utf8')) as TokenizerJson;
  need(tokenizer.model?.type === 'BPE' && tokenizer.model.vocab !== undefined, 'tokenizer.json is not a BPE tokenizer');
  const tokens: string[] = new Array<string>(vocabRows);
  const types: number[] = new Array<number>(vocabRows).fill(TOKEN_NORMAL);
  for (const [token, id] of Object.entries(tokenizer.model!.vocab!)) if (id < vocabRows) tokens[id] = token;
  for (const added of tokenizer.added_tokens ?? []) {
    if (added.id >= vocabRows) continue;
    tokens[added.id] = added.content;
    types[added.id] = added.special ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
  }
  for (let id = 0; id < vocabRows; id++) {
    if (tokens[id] !== undefined) continue;
    tokens[id] = `[PAD${id}]`;
    types[id] = TOKEN_UNUSED;
  }
  const merges = (tokenizer.model!.merges ?? []).map((merge) => (typeof merge === 'string' ? merge : merge.join(' ')));
  let generation: Config = {};
  if (existsSync(join(modelDir, 'generation_config.json'))) generation = JSON.parse(readFileSync(join(modelDir, 'generation_config.json'), 'utf8')) as Config;
  const firstId = (value: unknown): number | undefined => [value].flat().find((id): id is number => typeof id === 'number');
  const bos = firstId(config.bos_token_id) ?? firstId(generation.bos_token_id);
  const eos = firstId(generation.eos_token_id) ?? firstId(config.eos_token_id);
  return [
    ['tokenizer.ggml.model', str('gpt2')],
    ['tokenizer.ggml.pre', str('gpt-2')],
    ['tokenizer.ggml.tokens', { type: Kv.Array, of: Kv.String, values: tokens }],
    ['tokenizer.ggml.token_type', { type: Kv.Array, of: Kv.Int32, values: types }],
    ['tokenizer.ggml.merges', { type: Kv.Array, of: Kv.String, values: merges }],
    ...(bos === undefined ? [] : ([['tokenizer.ggml.bos_token_id', u32(bos)]] as [string, KvValue][])),
    ...(eos === undefined ? [] : ([['tokenizer.ggml.eos_token_id', u32(eos)]] as [string, KvValue][])),
    ['tokenizer.ggml.add_bos_token', { type: Kv.Bool, value: false }],
  ];
}

// ---------- conversion ----------

export interface ConversionResult {
  path: string;
  architecture: string;
  type: GgufType;
  tensors: number;
  bytes: number;
  ms: number;
}

/** Converts `modelDir`'s model.onnx into a GGUF file of `type` at `out`. */
export function convertToGguf(modelDir: string, type: GgufType, out: string): ConversionResult {
  const started = performance.now();
  const config = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as Config;
  const graph = readGraph(modelDir);
  const modelType = String(config.model_type ?? '');
  need(modelType === 'gpt2' || modelType === 'llama' || modelType === 'qwen2', `model_type ${modelType || '(none)'}; the converter knows gpt2, llama and qwen2`);
  const mapped = modelType === 'gpt2' ? mapGpt2(graph, config) : mapLlama(graph, config, modelType === 'qwen2' ? 'qwen2' : 'llama');
  const metadata: [string, KvValue][] = [
    ['general.architecture', str(mapped.architecture)],
    ['general.name', str(basename(resolve(modelDir)))],
    ['general.file_type', u32(FILE_TYPE[type])],
    ...(type === 'f32' ? [] : ([['general.quantization_version', u32(2)]] as [string, KvValue][])),
    ['general.alignment', u32(ALIGNMENT)],
    ...mapped.metadata,
    ...tokenizerMetadata(modelDir, mapped.vocabRows, config),
  ];
  const tensors: GgufTensor[] = mapped.tensors.map(({ name, source, transposed, ropeHeads }) => {
    const ne = [...source.dims].reverse();
    if (transposed) ne.reverse();
    const quantized = type !== 'f32' && ne.length === 2 && name !== 'position_embd.weight';
    return {
      name,
      ne,
      type: !quantized ? GGML_F32 : type === 'q4_0' ? GGML_Q4_0 : GGML_Q8_0,
      data: () => {
        let values = floatValues(graph, source);
        if (transposed) values = transpose(values, source.dims[0]!, source.dims[1]!);
        if (ropeHeads !== undefined) values = interleaveRopeRows(values, ropeHeads, ne[0]!);
        if (!quantized) return asBytes(values);
        return type === 'q4_0' ? quantizeQ4_0(values, ne[0]!) : quantizeQ8_0(values, ne[0]!);
      },
    };
  });
  mkdirSync(dirname(out), { recursive: true });
  const bytes = writeGguf(out, metadata, tensors);
  return { path: out, architecture: mapped.architecture, type, tensors: tensors.length, bytes, ms: performance.now() - started };
}

const CONVERTER = fileURLToPath(import.meta.url);

/** Where the cached GGUF file of `modelDir` in `type` lives: bench/models/<model>-gguf/<model>-<type>.gguf. */
export function ggufPath(modelDir: string, type: GgufType): string {
  const id = basename(resolve(modelDir));
  return join(ROOT, 'bench', 'models', `${id}-gguf`, `${id}-${type}.gguf`);
}

/**
 * The cached GGUF file of `modelDir` in `type`, converted first when missing or older than the graph,
 * its external data, config.json, tokenizer.json or this converter.
 */
export async function ensureGguf(modelDir: string, type: GgufType): Promise<{ path: string; converted?: ConversionResult }> {
  await ensureWeights(modelDir);
  const path = ggufPath(modelDir, type);
  const sources = ['model.onnx', 'model.onnx.data', 'config.json', 'tokenizer.json'].map((file) => join(modelDir, file)).filter((file) => existsSync(file));
  const newest = Math.max(...[...sources, CONVERTER].map((file) => statSync(file).mtimeMs));
  if (existsSync(path) && statSync(path).mtimeMs >= newest) return { path };
  return { path, converted: convertToGguf(modelDir, type, path) };
}

// ---------- command line ----------

if (process.argv[1] && resolve(process.argv[1]) === CONVERTER) {
  const usage = 'usage: npx tsx tools/gguf.ts --model DIR --type f32|q8_0|q4_0 [--out FILE]\n';
  let values: { model?: string; type?: string; out?: string };
  try {
    ({ values } = parseArgs({ options: { model: { type: 'string' }, type: { type: 'string', default: 'f32' }, out: { type: 'string' } } }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage}`);
    process.exit(2);
  }
  const type = values.type as GgufType;
  if (!values.model || !GGUF_TYPES.includes(type)) {
    process.stderr.write(usage);
    process.exit(2);
  }
  await ensureWeights(values.model);
  const result = convertToGguf(values.model, type, values.out ?? ggufPath(values.model, type));
  console.log(`wrote ${result.path}: ${result.architecture}, ${result.type}, ${result.tensors} tensors, ${(result.bytes / 2 ** 20).toFixed(1)} MiB in ${(result.ms / 1000).toFixed(1)} s`);
}
