#!/usr/bin/env -S npx tsx
/**
 * Writes a bench model folder from a Hugging Face `config.json` of a Llama-family model (`llama`,
 * `qwen2`): the decoder graph as `torch.onnx.export` writes it for Optimum's text-generation-with-past
 * convention (RMSNorm, rotate-half RoPE and `repeat_kv` spelled out in plain ops, `present = Concat(past,
 * new)`, the shape arithmetic of the trace), its weights as external data described by
 * `weights-manifest.json` (random, deterministic: `make-weights.mjs` writes them), and a tokenizer
 * whose vocabulary has a token for every row of the embedding:
 *
 *   npx tsx bench/make-model.ts CONFIG.json OUT_DIR
 *
 * The tokenizer is the GPT-2 one of `bench-llama-135m`, whose ids the prompts use; rows past its
 * 50,257 tokens get tokens of their own, each two GPT-2 tokens joined (so any id decodes to text),
 * which no merge makes (so text tokenizes as GPT-2 does). The output head is a matrix of its own, as
 * the exporter writes a tied head.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  concat,
  DIM_PARAM,
  DIM_VALUE,
  ELEM_FLOAT,
  ELEM_INT64,
  GRAPH_INITIALIZER,
  GRAPH_INPUT,
  GRAPH_NAME,
  GRAPH_OUTPUT,
  graphNode,
  intAttribute,
  intsAttribute,
  lengthField,
  MODEL_GRAPH,
  MODEL_IR_VERSION,
  MODEL_PRODUCER_NAME,
  MODEL_OPSET_IMPORT,
  OPSET_DOMAIN,
  OPSET_VERSION,
  SHAPE_DIM,
  stringField,
  tensorAttribute,
  TENSOR_DATA_LOCATION,
  TENSOR_DATA_TYPE,
  TENSOR_DIMS,
  TENSOR_EXTERNAL_DATA,
  TENSOR_NAME,
  TENSOR_RAW_DATA,
  TENSOR_TYPE_ELEM,
  TENSOR_TYPE_SHAPE,
  TYPE_TENSOR,
  VALUE_INFO_NAME,
  VALUE_INFO_TYPE,
  varintField,
} from '../src/engine/thread/graph/onnx-proto.js';

const TOKENIZER_SOURCE = join(import.meta.dirname, 'models/bench-llama-135m');
const DATA_FILE = 'model.onnx.data';
const WEIGHT_STD = 0.02;
const INT64_MAX = 9223372036854775807n;
const FLOAT_LOWEST = -3.4028234663852886e38;
const ONNX_OPSET = 17;
const IR_VERSION = 8;

/** The shape a config gives a decoder. */
export interface DecoderShape {
  layers: number;
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  ropeTheta: number;
  rmsNormEps: number;
  /** q, k and v projections with biases (Qwen2). */
  qkvBias: boolean;
}

export function decoderShape(config: Record<string, unknown>): DecoderShape {
  const number = (key: string, fallback?: number): number => {
    const value = config[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`config.json: ${key} is not a number`);
    return value;
  };
  const modelType = config.model_type;
  if (modelType !== 'llama' && modelType !== 'qwen2') throw new Error(`config.json: model_type ${String(modelType)}; the bench writes llama and qwen2`);
  if (config.rope_scaling != null) throw new Error('config.json: rope_scaling is set; the bench writes the default RoPE only');
  const heads = number('num_attention_heads');
  const hidden = number('hidden_size');
  const rope = (config.rope_parameters ?? {}) as Record<string, unknown>;
  return {
    layers: number('num_hidden_layers'),
    hidden,
    intermediate: number('intermediate_size'),
    heads,
    kvHeads: number('num_key_value_heads', heads),
    headDim: number('head_dim', hidden / heads),
    vocab: number('vocab_size'),
    ropeTheta: typeof rope.rope_theta === 'number' ? rope.rope_theta : number('rope_theta', 10000),
    rmsNormEps: number('rms_norm_eps', 1e-6),
    qkvBias: modelType === 'qwen2' || config.attention_bias === true,
  };
}

// ---------- protobuf pieces the graph edits have no use for ----------

type Dim = number | string;

function valueInfo(field: number, name: string, elemType: number, dims: readonly Dim[]): Uint8Array {
  const shape = concat(dims.map((dim) => lengthField(SHAPE_DIM, typeof dim === 'number' ? varintField(DIM_VALUE, dim) : stringField(DIM_PARAM, dim))));
  const tensorType = concat([varintField(TENSOR_TYPE_ELEM, elemType), lengthField(TENSOR_TYPE_SHAPE, shape)]);
  return lengthField(field, concat([stringField(VALUE_INFO_NAME, name), lengthField(VALUE_INFO_TYPE, lengthField(TYPE_TENSOR, tensorType))]));
}

function externalInitializer(name: string, dims: readonly number[], offset: number, length: number): Uint8Array {
  const entry = (key: string, value: string) => lengthField(TENSOR_EXTERNAL_DATA, concat([stringField(1, key), stringField(2, value)]));
  return lengthField(
    GRAPH_INITIALIZER,
    concat([
      ...dims.map((dim) => varintField(TENSOR_DIMS, dim)),
      varintField(TENSOR_DATA_TYPE, ELEM_FLOAT),
      stringField(TENSOR_NAME, name),
      entry('location', DATA_FILE),
      entry('offset', String(offset)),
      entry('length', String(length)),
      varintField(TENSOR_DATA_LOCATION, 1),
    ]),
  );
}

function tensorProto(elemType: number, dims: readonly number[], raw: Uint8Array): Uint8Array {
  return concat([...dims.map((dim) => varintField(TENSOR_DIMS, dim)), varintField(TENSOR_DATA_TYPE, elemType), lengthField(TENSOR_RAW_DATA, raw)]);
}


// ---------- the graph ----------

interface ManifestTensor {
  name: string;
  offset: number;
  length: number;
  dtype: 'float32';
  dims: number[];
  kind: 'normal' | 'ones';
  std: number;
}

/** Nodes in the order the trace writes them, named as it names them (`/m/<scope>/<Op>_<n>`). */
class GraphWriter {
  readonly nodes: Uint8Array[] = [];
  readonly initializers: Uint8Array[] = [];
  readonly manifest: ManifestTensor[] = [];
  private readonly counts = new Map<string, number>();
  private dataBytes = 0;

  private name(scope: string, op: string): string {
    const key = `${scope}/${op}`;
    const n = this.counts.get(key) ?? 0;
    this.counts.set(key, n + 1);
    return `/m${scope}/${op}${n === 0 ? '' : `_${n}`}`;
  }

  op(scope: string, opType: string, inputs: readonly string[], attributes: readonly Uint8Array[] = []): string {
    const name = this.name(scope, opType);
    const output = `${name}_output_0`;
    this.nodes.push(graphNode(opType, inputs, [output], { name, attributes }));
    return output;
  }

  /** A node whose output is a graph output. */
  opTo(scope: string, opType: string, inputs: readonly string[], output: string, attributes: readonly Uint8Array[] = []): string {
    this.nodes.push(graphNode(opType, inputs, [output], { name: this.name(scope, opType), attributes }));
    return output;
  }

  /** A Constant of int64 values: a scalar, or a 1-D list. */
  int64(scope: string, values: readonly bigint[] | bigint): string {
    return typeof values === 'bigint' ? this.constant(scope, ELEM_INT64, [], BigInt64Array.of(values)) : this.constant(scope, ELEM_INT64, [values.length], BigInt64Array.from(values));
  }

  /** A Constant of float32 values: a scalar, or a 1-D list. */
  float(scope: string, values: readonly number[] | number): string {
    return typeof values === 'number' ? this.constant(scope, ELEM_FLOAT, [], Float32Array.of(values)) : this.constant(scope, ELEM_FLOAT, [values.length], Float32Array.from(values));
  }

  private constant(scope: string, elemType: number, dims: readonly number[], values: BigInt64Array | Float32Array): string {
    return this.op(scope, 'Constant', [], [tensorAttribute('value', tensorProto(elemType, dims, new Uint8Array(values.buffer)))]);
  }

  weight(name: string, dims: number[], kind: ManifestTensor['kind'] = 'normal'): string {
    const length = dims.reduce((a, b) => a * b, 1) * 4;
    this.initializers.push(externalInitializer(name, dims, this.dataBytes, length));
    this.manifest.push({ name, offset: this.dataBytes, length, dtype: 'float32', dims, kind, std: kind === 'normal' ? WEIGHT_STD : 0 });
    this.dataBytes += length;
    return name;
  }

  get totalBytes(): number {
    return this.dataBytes;
  }
}

/** The decoder graph, node for node as the trace of a Hugging Face Llama (or Qwen2) model writes it. */
export function writeDecoderGraph(shape: DecoderShape): { model: Uint8Array; manifest: { data_file: string; total_bytes: number; tensors: ManifestTensor[] } } {
  const g = new GraphWriter();
  const { layers, hidden, intermediate, heads, kvHeads, headDim, vocab } = shape;
  const groups = heads / kvHeads;
  if (!Number.isInteger(groups)) throw new Error(`${heads} heads do not split into ${kvHeads} KV heads`);

  const embedTokens = g.weight('model.embed_tokens.weight', [vocab, hidden]);
  const batch = g.op('', 'Gather', [g.op('', 'Shape', ['input_ids']), g.int64('', 0n)], [intAttribute('axis', 0)]);
  const sequence = g.op('', 'Gather', [g.op('', 'Shape', ['input_ids']), g.int64('', 1n)], [intAttribute('axis', 0)]);
  let residual = g.op('/embed_tokens', 'Gather', [embedTokens, 'input_ids']);

  // The mask: causal over the positions after the past, and whatever attention_mask hides.
  const pastLength = g.op('', 'Gather', [g.op('', 'Shape', ['past_key_values.0.key']), g.int64('', 2n)], [intAttribute('axis', 0)]);
  const totalLength = g.op('', 'Cast', [g.op('', 'Gather', [g.op('', 'Shape', ['attention_mask']), g.int64('', 1n)], [intAttribute('axis', 0)])], [intAttribute('to', ELEM_INT64)]);
  const positions = g.op('', 'Range', [g.int64('', 0n), totalLength, g.int64('', 1n)]);
  const axis0 = g.int64('', [0n]);
  const queryPositions = g.op('', 'Slice', [positions, g.op('', 'Unsqueeze', [pastLength, g.int64('', [0n])]), g.int64('', [INT64_MAX]), axis0, g.int64('', [1n])]);
  const causal = g.op('', 'LessOrEqual', [g.op('', 'Unsqueeze', [positions, g.int64('', [0n])]), g.op('', 'Unsqueeze', [queryPositions, g.int64('', [1n])])]);
  const causal4d = g.op('', 'Unsqueeze', [g.op('', 'Unsqueeze', [causal, g.int64('', [0n])]), g.int64('', [0n])]);
  const padding = g.op('', 'Unsqueeze', [g.op('', 'Unsqueeze', ['attention_mask', g.int64('', [1n])]), g.int64('', [2n])]);
  const allowed = g.op('', 'And', [causal4d, g.op('', 'Greater', [padding, g.int64('', 0n)])]);

  // RoPE's cos and sin at each position: [batch, 1, sequence, head_dim].
  const inverseFrequencies = Array.from({ length: headDim / 2 }, (_, i) => 1 / shape.ropeTheta ** ((2 * i) / headDim));
  const angles = g.op('', 'Mul', [g.op('', 'Cast', [g.op('', 'Unsqueeze', ['position_ids', g.int64('', [2n])])], [intAttribute('to', ELEM_FLOAT)]), g.float('', inverseFrequencies)]);
  const doubled = g.op('', 'Concat', [angles, angles], [intAttribute('axis', -1)]);
  const cos = g.op('', 'Unsqueeze', [g.op('', 'Cos', [doubled]), g.int64('', [1n])]);
  const sin = g.op('', 'Unsqueeze', [g.op('', 'Sin', [doubled]), g.int64('', [1n])]);

  const rmsNorm = (scope: string, x: string, weight: string): string => {
    const variance = g.op(scope, 'ReduceMean', [g.op(scope, 'Pow', [x, g.float(scope, 2)])], [intsAttribute('axes', [-1]), intAttribute('keepdims', 1)]);
    const inverse = g.op(scope, 'Div', [g.float(scope, 1), g.op(scope, 'Sqrt', [g.op(scope, 'Add', [variance, g.float(scope, shape.rmsNormEps)])])]);
    return g.op(scope, 'Mul', [weight, g.op(scope, 'Mul', [x, inverse])]);
  };
  const linear = (scope: string, x: string, name: string, k: number, n: number, bias = false): string => {
    const product = g.op(scope, 'MatMul', [x, g.weight(`${name}.weight`, [k, n])]);
    return bias ? g.op(scope, 'Add', [g.weight(`${name}.bias`, [n]), product]) : product;
  };
  /** [batch, sequence, n·headDim] → [batch, n, sequence, headDim], the target shape built from the input's as the trace does. */
  const splitHeads = (x: string, n: number): string => {
    const target = g.op('', 'Concat', [g.op('', 'Unsqueeze', [batch, g.int64('', [0n])]), g.op('', 'Unsqueeze', [sequence, g.int64('', [0n])]), g.int64('', [BigInt(n)]), g.int64('', [BigInt(headDim)])], [intAttribute('axis', 0)]);
    return g.op('', 'Transpose', [g.op('', 'Reshape', [x, target], [intAttribute('allowzero', 0)])], [intsAttribute('perm', [0, 2, 1, 3])]);
  };
  const rotate = (x: string): string => {
    const half = g.op('', 'Cast', [g.op('', 'Cast', [g.op('', 'Div', [g.op('', 'Gather', [g.op('', 'Shape', [x]), g.int64('', 3n)], [intAttribute('axis', 0)]), g.int64('', 2n)])], [intAttribute('to', ELEM_INT64)])], [intAttribute('to', ELEM_INT64)]);
    const secondHalf = g.op('', 'Slice', [x, g.op('', 'Unsqueeze', [half, g.int64('', [0n])]), g.int64('', [INT64_MAX]), g.int64('', [3n]), g.int64('', [1n])]);
    const firstHalf = g.op('', 'Slice', [x, g.int64('', [0n]), g.op('', 'Unsqueeze', [half, g.int64('', [0n])]), g.int64('', [3n]), g.int64('', [1n])]);
    const rotated = g.op('', 'Concat', [g.op('', 'Neg', [secondHalf]), firstHalf], [intAttribute('axis', -1)]);
    return g.op('', 'Add', [g.op('', 'Mul', [x, cos]), g.op('', 'Mul', [rotated, sin])]);
  };
  /** HF's repeat_kv: [batch, kv, T, d] → [batch, kv·groups, T, d]. */
  const repeatKv = (x: string): string => {
    const tiled = g.op('', 'Tile', [g.op('', 'Unsqueeze', [x, g.int64('', [2n])]), g.int64('', [1n, 1n, BigInt(groups), 1n, 1n])]);
    const tiledShape = g.op('', 'Shape', [tiled]);
    const leading = g.op('', 'Slice', [tiledShape, g.int64('', [0n]), g.int64('', [1n]), g.int64('', [0n])]);
    const trailing = g.op('', 'Slice', [tiledShape, g.int64('', [3n]), g.int64('', [5n]), g.int64('', [0n])]);
    return g.op('', 'Reshape', [tiled, g.op('', 'Concat', [leading, g.int64('', [-1n]), trailing], [intAttribute('axis', 0)])], [intAttribute('allowzero', 0)]);
  };

  let notAllowed: string | undefined;
  for (let layer = 0; layer < layers; layer++) {
    const suffix = layer === 0 ? '' : `_${layer}`;
    const prefix = `model.layers.${layer}`;
    const normed = rmsNorm(`/input_layernorm${suffix}`, residual, g.weight(`${prefix}.input_layernorm.weight`, [hidden], 'ones'));
    const q = splitHeads(linear(`/q_proj${suffix}`, normed, `${prefix}.self_attn.q_proj`, hidden, heads * headDim, shape.qkvBias), heads);
    const k = splitHeads(linear(`/k_proj${suffix}`, normed, `${prefix}.self_attn.k_proj`, hidden, kvHeads * headDim, shape.qkvBias), kvHeads);
    const v = splitHeads(linear(`/v_proj${suffix}`, normed, `${prefix}.self_attn.v_proj`, hidden, kvHeads * headDim, shape.qkvBias), kvHeads);
    const queries = rotate(q);
    const keys = g.opTo('', 'Concat', [`past_key_values.${layer}.key`, rotate(k)], `present.${layer}.key`, [intAttribute('axis', 2)]);
    const values = g.opTo('', 'Concat', [`past_key_values.${layer}.value`, v], `present.${layer}.value`, [intAttribute('axis', 2)]);
    const keysRepeated = repeatKv(keys);
    const valuesRepeated = repeatKv(values);
    const scores = g.op('', 'Div', [g.op('', 'MatMul', [queries, g.op('', 'Transpose', [keysRepeated], [intsAttribute('perm', [0, 1, 3, 2])])]), g.float('', Math.sqrt(headDim))]);
    notAllowed ??= g.op('', 'Not', [allowed]);
    const masked = g.op('', 'Where', [g.op('', 'Cast', [notAllowed], [intAttribute('to', 9)]), g.float('', FLOAT_LOWEST), scores]);
    const attended = g.op('', 'MatMul', [g.op('', 'Softmax', [masked], [intAttribute('axis', -1)]), valuesRepeated]);
    const merged = g.op('', 'Transpose', [attended], [intsAttribute('perm', [0, 2, 1, 3])]);
    const mergedShape = g.op('', 'Concat', [g.op('', 'Unsqueeze', [batch, g.int64('', [0n])]), g.op('', 'Unsqueeze', [sequence, g.int64('', [0n])]), g.int64('', [BigInt(heads * headDim)])], [intAttribute('axis', 0)]);
    const output = linear(`/o_proj${suffix}`, g.op('', 'Reshape', [merged, mergedShape], [intAttribute('allowzero', 0)]), `${prefix}.self_attn.o_proj`, heads * headDim, hidden);
    const afterAttention = g.op('', 'Add', [residual, output]);
    const normed2 = rmsNorm(`/post_attention_layernorm${suffix}`, afterAttention, g.weight(`${prefix}.post_attention_layernorm.weight`, [hidden], 'ones'));
    const gate = linear(`/gate_proj${suffix}`, normed2, `${prefix}.mlp.gate_proj`, hidden, intermediate);
    const activated = g.op('', 'Mul', [gate, g.op('', 'Sigmoid', [gate])]);
    const up = linear(`/up_proj${suffix}`, normed2, `${prefix}.mlp.up_proj`, hidden, intermediate);
    const down = linear(`/down_proj${suffix}`, g.op('', 'Mul', [activated, up]), `${prefix}.mlp.down_proj`, intermediate, hidden);
    residual = g.op('', 'Add', [afterAttention, down]);
  }
  const final = rmsNorm('/norm', residual, g.weight('model.norm.weight', [hidden], 'ones'));
  g.nodes.push(graphNode('MatMul', [final, g.weight('lm_head.weight', [hidden, vocab])], ['logits'], { name: '/lm_head/MatMul' }));

  const kvDims = (length: string): Dim[] => ['batch_size', kvHeads, length, headDim];
  const inputs = [
    valueInfo(GRAPH_INPUT, 'input_ids', ELEM_INT64, ['batch_size', 'sequence_length']),
    valueInfo(GRAPH_INPUT, 'attention_mask', ELEM_INT64, ['batch_size', 'total_sequence_length']),
    valueInfo(GRAPH_INPUT, 'position_ids', ELEM_INT64, ['batch_size', 'sequence_length']),
    ...Array.from({ length: layers }, (_, layer) => ['key', 'value'].map((kind) => valueInfo(GRAPH_INPUT, `past_key_values.${layer}.${kind}`, ELEM_FLOAT, kvDims('past_sequence_length')))).flat(),
  ];
  const outputs = [
    valueInfo(GRAPH_OUTPUT, 'logits', ELEM_FLOAT, ['batch_size', 'sequence_length', vocab]),
    ...Array.from({ length: layers }, (_, layer) => ['key', 'value'].map((kind) => valueInfo(GRAPH_OUTPUT, `present.${layer}.${kind}`, ELEM_FLOAT, kvDims('total_sequence_length')))).flat(),
  ];
  const graph = concat([...g.nodes, stringField(GRAPH_NAME, 'main_graph'), ...g.initializers, ...inputs, ...outputs]);
  const model = concat([
    varintField(MODEL_IR_VERSION, IR_VERSION),
    stringField(MODEL_PRODUCER_NAME, 'ortserve bench'),
    lengthField(MODEL_GRAPH, graph),
    lengthField(MODEL_OPSET_IMPORT, concat([stringField(OPSET_DOMAIN, ''), varintField(OPSET_VERSION, ONNX_OPSET)])),
  ]);
  return { model, manifest: { data_file: DATA_FILE, total_bytes: g.totalBytes, tensors: g.manifest } };
}

// ---------- the tokenizer ----------

interface TokenizerJson {
  model: { vocab: Record<string, number> };
}

/** GPT-2's tokenizer with a token for every id up to `rows`: two of its own tokens joined, none of which a merge makes. */
export function tokenizerForRows(source: TokenizerJson, rows: number): TokenizerJson {
  const vocab = { ...source.model.vocab };
  const byId: string[] = [];
  for (const [token, id] of Object.entries(vocab)) byId[id] = token;
  const taken = new Set(Object.keys(vocab));
  // The joined pieces are ordinary tokens: neither the 256 single bytes nor the special `<|…|>` ones.
  const pieces = byId.filter((token, id) => token !== undefined && id >= 256 && !token.startsWith('<|'));
  let next = byId.length;
  let step = 0;
  while (next < rows) {
    // Each round pairs every piece with another; rounds differ in the partner.
    const round = Math.floor(step / pieces.length);
    const first = pieces[step % pieces.length]!;
    const second = pieces[(round * 7919 + (step % pieces.length) * 31 + 1) % pieces.length]!;
    step++;
    const token = first + second.replace(/^Ġ/, '');
    if (taken.has(token)) continue;
    taken.add(token);
    vocab[token] = next++;
  }
  return { ...source, model: { ...source.model, vocab } };
}

// ---------- the folder ----------

/** Writes `outDir` for `configPath`: config.json (as given), the graph, its weights' manifest and the tokenizer files. */
export function makeBenchModel(configPath: string, outDir: string): void {
  const config = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
  const shape = decoderShape(config);
  mkdirSync(outDir, { recursive: true });
  const { model, manifest } = writeDecoderGraph(shape);
  writeFileSync(join(outDir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  const tokenizer = JSON.parse(readFileSync(join(TOKENIZER_SOURCE, 'tokenizer.json'), 'utf8')) as TokenizerJson;
  writeFileSync(join(outDir, 'tokenizer.json'), JSON.stringify(tokenizerForRows(tokenizer, shape.vocab)));
  for (const file of ['tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) copyFileSync(join(TOKENIZER_SOURCE, file), join(outDir, file));
  writeFileSync(join(outDir, 'weights-manifest.json'), JSON.stringify(manifest));
  writeFileSync(join(outDir, 'model.onnx'), model);
}

/** The folder for `configPath`, written unless its graph is there already. */
export function ensureBenchModel(configPath: string, outDir: string): void {
  if (!existsSync(join(outDir, 'model.onnx'))) makeBenchModel(configPath, outDir);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [configPath, outDir] = process.argv.slice(2);
  if (!configPath || !outDir) {
    console.error('usage: npx tsx bench/make-model.ts CONFIG.json OUT_DIR');
    process.exit(2);
  }
  makeBenchModel(configPath, outDir);
  console.log(`wrote ${outDir}`);
}
