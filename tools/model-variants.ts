#!/usr/bin/env -S npx tsx
/**
 * Derives, from a model folder (the tiny test fixtures), the folder layouts and graph variants the
 * Hugging Face hub and its exporters produce, so that each can be served and checked against the
 * original: `npx tsx tools/model-variants.ts SOURCE_DIR TARGET_DIR [VARIANT ...]`.
 *
 * Variants:
 * - transformers-js: the graph under `onnx/`, its weights as chunked external data
 *   (`model.onnx_data`, `model.onnx_data_1`, …), as transformers.js repositories hold them.
 * - genai: an onnxruntime-genai folder: `genai_config.json` and no `config.json`.
 * - text-config: a multimodal-style config.json, the language model's fields under `text_config`.
 * - logits-to-keep: the graph takes `num_logits_to_keep` and computes logits for the last that many
 *   positions only, as newer Optimum exports do.
 * - fp16: the whole graph in float16 (weights, constants, cache, logits), as `model_fp16.onnx`.
 * - no-position-ids: no `position_ids` input; positions are counted from the cache's length.
 * - merged: Optimum's merged decoder (`decoder_model_merged.onnx`): one `If` on `use_cache_branch`.
 * - group-query-attention: each layer's attention as one com.microsoft GroupQueryAttention, as
 *   onnxruntime-genai's builder writes Llama graphs; group-query-attention-rotary with the rotary
 *   embedding fused into it (`do_rotary`, cos/sin caches), as the builder does by default.
 * - int4: the MatMuls by weights, the output head too, as com.microsoft MatMulNBits of 4-bit
 *   blocks, as int4 exports (transformers.js `model_q4`, onnxruntime-genai int4) have them.
 * - q4-zero-points, q8-blocks: the same MatMuls as an exporter writes them (MatMulNBits on the
 *   activations as they are): 4-bit blocks with a zero point each, or 8-bit blocks with none.
 * - gather-block-quantized: the token embeddings as com.microsoft GatherBlockQuantized of 4-bit
 *   blocks, as transformers.js v4 and onnxruntime-genai write them.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  ATTRIBUTE_INT,
  ATTRIBUTE_TENSOR,
  ATTRIBUTE_NAME,
  ATTRIBUTE_TYPE,
  concat,
  editGraph,
  ELEM_FLOAT,
  ELEM_FLOAT16,
  ELEM_INT64,
  ELEM_UINT8,
  GRAPH_INITIALIZER,
  GRAPH_INPUT,
  GRAPH_NAME,
  GRAPH_NODE,
  graphNode,
  GRAPH_OUTPUT,
  intsAttribute,
  initializer,
  intAttribute,
  lengthField,
  NODE_ATTRIBUTE,
  NODE_DOMAIN,
  NODE_INPUT,
  NODE_NAME,
  NODE_OP_TYPE,
  NODE_OUTPUT,
  parseFields,
  readNode,
  stringField,
  tensorAttribute,
  TENSOR_DATA_LOCATION,
  TENSOR_DATA_TYPE,
  TENSOR_DIMS,
  TENSOR_EXTERNAL_DATA,
  TENSOR_RAW_DATA,
  TENSOR_TYPE_ELEM,
  tensorElementType,
  tensorValueInfo,
  TYPE_TENSOR,
  VALUE_INFO_NAME,
  VALUE_INFO_TYPE,
  valueInfoName,
  varintField,
  withOpsetImport,
  withoutDeadNodes,
  type RawField,
} from '../src/engine/thread/graph/onnx-proto.js';
import { withExternalData } from '../src/engine/thread/graph/external-data.js';
import { floatWeight, INT4_BLOCK, quantizeInt4, quantizeWeights, type ExternalDataReader, type FloatWeight } from '../src/engine/thread/graph/weight-quantization.js';

const DATA_LOCATION_EXTERNAL = 1;
const ENTRY_KEY = 1;
const ENTRY_VALUE = 2;

type Json = Record<string, unknown>;
const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as Json;
const writeJson = (path: string, value: unknown) => writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);

/** Copies the folder's files but those named, creating `target`. */
function copyFolder(source: string, target: string, except: readonly string[] = []): void {
  mkdirSync(target, { recursive: true });
  for (const file of readdirSync(source)) if (!except.includes(file)) copyFileSync(join(source, file), join(target, file));
}

// ─── Graph building blocks ─────────────────────────────────────────────────────────────────────

function int64Tensor(values: readonly bigint[], dims: readonly number[]): Uint8Array {
  const raw = new Uint8Array(values.length * 8);
  const view = new DataView(raw.buffer);
  values.forEach((value, i) => view.setBigInt64(i * 8, value, true));
  return concat([...dims.map((dim) => varintField(TENSOR_DIMS, dim)), varintField(TENSOR_DATA_TYPE, ELEM_INT64), lengthField(TENSOR_RAW_DATA, raw)]);
}

const node = (opType: string, inputs: readonly string[], outputs: readonly string[], attributes: readonly Uint8Array[] = []) =>
  graphNode(opType, inputs, outputs, { name: `/variant/${opType}/${outputs[0]}`, attributes });

const constant = (output: string, values: readonly bigint[], dims: readonly number[]) => node('Constant', [], [output], [tensorAttribute('value', int64Tensor(values, dims))]);

/** A ValueInfoProto with its element type changed, its shape kept. */
function withElemType(payload: Uint8Array, elemType: number): Uint8Array {
  const rewrite = (fields: RawField[], depth: number): Uint8Array =>
    concat(
      fields.map((field) => {
        if (depth === 0 && field.number === VALUE_INFO_TYPE) return lengthField(VALUE_INFO_TYPE, rewrite(parseFields(field.payload!), 1));
        if (depth === 1 && field.number === TYPE_TENSOR) return lengthField(TYPE_TENSOR, rewrite(parseFields(field.payload!), 2));
        if (depth === 2 && field.number === TENSOR_TYPE_ELEM) return varintField(TENSOR_TYPE_ELEM, elemType);
        return field.bytes;
      }),
    );
  return rewrite(parseFields(payload), 0);
}

/** A node with some of its input and output names replaced. */
function renamed(nodePayload: Uint8Array, inputs: ReadonlyMap<string, string>, outputs: ReadonlyMap<string, string> = new Map()): Uint8Array {
  const fields = parseFields(nodePayload).map((field) => {
    const names = field.number === NODE_INPUT ? inputs : field.number === NODE_OUTPUT ? outputs : undefined;
    if (!names) return field.bytes;
    const name = new TextDecoder().decode(field.payload);
    return stringField(field.number, names.get(name) ?? name);
  });
  return lengthField(GRAPH_NODE, concat(fields));
}

function editModel(path: string, edit: (fields: RawField[]) => Uint8Array[]): void {
  const edited = editGraph(readFileSync(path), (fields) => concat(edit(fields)));
  if (!edited) throw new Error(`${path}: no graph`);
  writeFileSync(path, edited);
}

// ─── Variants ──────────────────────────────────────────────────────────────────────────────────

/** Moves every initializer's raw data into files beside the graph, a new file every `chunkBytes`. */
function externalizeWeights(graphPath: string, chunkBytes: number): string[] {
  const base = graphPath.split('/').pop()!;
  const chunks: Uint8Array[][] = [[]];
  let chunkLength = 0;
  const location = (index: number) => (index === 0 ? `${base}_data` : `${base}_data_${index}`);
  editModel(graphPath, (fields) =>
    fields.map((field) => {
      if (field.number !== GRAPH_INITIALIZER) return field.bytes;
      const tensor = parseFields(field.payload!);
      const raw = tensor.find((f) => f.number === TENSOR_RAW_DATA)?.payload;
      if (!raw || raw.length < 256) return field.bytes;
      if (chunkLength > 0 && chunkLength + raw.length > chunkBytes) {
        chunks.push([]);
        chunkLength = 0;
      }
      const offset = chunkLength;
      chunks[chunks.length - 1]!.push(raw);
      chunkLength += raw.length;
      const entry = (key: string, value: string) => lengthField(TENSOR_EXTERNAL_DATA, concat([stringField(ENTRY_KEY, key), stringField(ENTRY_VALUE, value)]));
      const kept = tensor.filter((f) => f.number !== TENSOR_RAW_DATA).map((f) => f.bytes);
      return lengthField(
        GRAPH_INITIALIZER,
        concat([...kept, entry('location', location(chunks.length - 1)), entry('offset', String(offset)), entry('length', String(raw.length)), varintField(TENSOR_DATA_LOCATION, DATA_LOCATION_EXTERNAL)]),
      );
    }),
  );
  const dir = graphPath.slice(0, graphPath.length - base.length);
  return chunks.map((parts, index) => {
    writeFileSync(join(dir, location(index)), concat(parts));
    return location(index);
  });
}

function transformersJs(source: string, target: string): void {
  copyFolder(source, target, ['model.onnx']);
  mkdirSync(join(target, 'onnx'), { recursive: true });
  copyFileSync(join(source, 'model.onnx'), join(target, 'onnx', 'model.onnx'));
  // Chunks of 256 KiB, or smaller for a graph too small to fill several (a quantized one).
  const files = externalizeWeights(join(target, 'onnx', 'model.onnx'), Math.min(256 * 1024, Math.floor(statSync(join(source, 'model.onnx')).size / 4)));
  if (files.length < 2) throw new Error('the weights fit one chunk: lower the chunk size');
}

function genai(source: string, target: string): void {
  copyFolder(source, target, ['config.json']);
  const config = readJson(join(source, 'config.json')) as Record<string, number>;
  const layers = config.num_hidden_layers ?? config.n_layer;
  const heads = config.num_attention_heads ?? config.n_head;
  const hidden = config.hidden_size ?? config.n_embd;
  writeJson(join(target, 'genai_config.json'), {
    model: {
      type: config.model_type,
      vocab_size: config.vocab_size,
      context_length: config.max_position_embeddings ?? config.n_positions,
      bos_token_id: config.bos_token_id,
      eos_token_id: config.eos_token_id,
      pad_token_id: config.pad_token_id ?? config.eos_token_id,
      decoder: {
        filename: 'model.onnx',
        head_size: hidden! / heads!,
        hidden_size: hidden,
        num_attention_heads: heads,
        num_hidden_layers: layers,
        num_key_value_heads: config.num_key_value_heads ?? heads,
        inputs: {
          input_ids: 'input_ids',
          attention_mask: 'attention_mask',
          position_ids: 'position_ids',
          past_key_names: 'past_key_values.%d.key',
          past_value_names: 'past_key_values.%d.value',
        },
        outputs: { logits: 'logits', present_key_names: 'present.%d.key', present_value_names: 'present.%d.value' },
      },
    },
    search: { do_sample: false, max_length: config.max_position_embeddings ?? config.n_positions, past_present_share_buffer: false, temperature: 1, top_k: 1, top_p: 1 },
  });
}

function textConfig(source: string, target: string): void {
  copyFolder(source, target, ['config.json']);
  const config = readJson(join(source, 'config.json'));
  writeJson(join(target, 'config.json'), { model_type: 'multimodal-test', architectures: ['TestForConditionalGeneration'], text_config: config, vision_config: { hidden_size: 8 } });
}

function logitsToKeep(source: string, target: string): void {
  copyFolder(source, target);
  editModel(join(target, 'model.onnx'), (fields) => {
    const logits = fields.findIndex((field) => field.number === GRAPH_NODE && readNode(field.payload!).outputs[0] === 'logits');
    const head = readNode(fields[logits]!.payload!);
    if (head.opType !== 'MatMul') throw new Error(`logits come from ${head.opType}, not a MatMul`);
    const hidden = head.inputs[0]!;
    const kept = `${hidden}/kept`;
    const slice = [
      constant('/variant/minus_one', [-1n], []),
      node('Mul', ['num_logits_to_keep', '/variant/minus_one'], ['/variant/neg_keep']),
      constant('/variant/one_dim', [1n], [1]),
      node('Reshape', ['/variant/neg_keep', '/variant/one_dim'], ['/variant/starts']),
      constant('/variant/ends', [9223372036854775807n], [1]),
      constant('/variant/axes', [1n], [1]),
      node('Slice', [hidden, '/variant/starts', '/variant/ends', '/variant/axes'], [kept]),
    ];
    const lastInput = fields.reduce((last, field, i) => (field.number === GRAPH_INPUT ? i : last), -1);
    return fields.flatMap((field, i) => {
      if (i === logits) return [...slice, renamed(field.payload!, new Map([[hidden, kept]]))];
      if (i === lastInput) return [field.bytes, tensorValueInfo(GRAPH_INPUT, 'num_logits_to_keep', ELEM_INT64)];
      return [field.bytes];
    });
  });
}

/**
 * The graph without a `position_ids` input: it counts positions from the cache's length, as
 * Optimum's exports of Gemma do (`cache_position` = past length + 0, 1, …).
 */
function noPositionIds(source: string, target: string): void {
  copyFolder(source, target);
  editModel(join(target, 'model.onnx'), (fields) => {
    const positions = [
      node('Shape', ['past_key_values.0.key'], ['/variant/past_shape']),
      constant('/variant/two', [2n], []),
      node('Gather', ['/variant/past_shape', '/variant/two'], ['/variant/past_length'], [intAttribute('axis', 0)]),
      node('Shape', ['input_ids'], ['/variant/input_shape']),
      constant('/variant/one', [1n], []),
      node('Gather', ['/variant/input_shape', '/variant/one'], ['/variant/step_length'], [intAttribute('axis', 0)]),
      node('Add', ['/variant/past_length', '/variant/step_length'], ['/variant/total_length']),
      node('Range', ['/variant/past_length', '/variant/total_length', '/variant/one'], ['/variant/range']),
      constant('/variant/zero_axis', [0n], [1]),
      node('Unsqueeze', ['/variant/range', '/variant/zero_axis'], ['/variant/row_positions']),
      node('Expand', ['/variant/row_positions', '/variant/input_shape'], ['position_ids']),
    ];
    const kept = fields.filter((field) => !(field.number === GRAPH_INPUT && valueInfoName(field.payload!) === 'position_ids')).map((field) => field.bytes);
    if (kept.length === fields.length) throw new Error('the graph has no position_ids input');
    return [...kept, ...positions];
  });
}

/** Writes an edited model that uses com.microsoft operators, with that domain's opset imported. */
function writeWithContribOps(path: string, edited: Uint8Array | undefined): void {
  if (!edited) throw new Error(`${path}: no graph`);
  writeFileSync(path, withOpsetImport(edited, 'com.microsoft'));
}

/** Every MatMul by a float32 weight whose rows split into blocks of 32, the output head too, becomes an int4 MatMulNBits, as int4 exports have them. */
function int4(source: string, target: string): void {
  copyFolder(source, target);
  const path = join(target, 'model.onnx');
  const quantized = withExternalData(target, (readExternal) => quantizeWeights(readFileSync(path), 'int4', { keepHead: false, readExternal }));
  if (!quantized) throw new Error('no MatMul to quantize');
  writeFileSync(path, quantized.model);
}

/** How an exporter stores a weight in blocks of 32 along K: 4 or 8 bits, with a zero point per block or the format's default (8, 128). */
interface BlockFormat {
  bits: 4 | 8;
  zeroPoints: boolean;
}

const BLOCK = 32;

/**
 * A [K, N] weight (row-major) in MatMulNBits' layout: B uint8 [N, K/32, 32·bits/8] (for 4 bits the
 * even k of each pair in the low nibble), scales [N·K/32], and, with zero points, uint8
 * [N, K/32] (8 bits) or [N, ceil(K/64)] (4 bits, the even block in the low nibble).
 */
function blockQuantized(weight: Float32Array, k: number, n: number, { bits, zeroPoints }: BlockFormat): { data: Uint8Array; scales: Float32Array; zeroPoints?: Uint8Array } {
  const blocks = k / BLOCK;
  const top = 2 ** bits - 1;
  const perByte = 8 / bits;
  const data = new Uint8Array((n * blocks * BLOCK) / perByte);
  const scales = new Float32Array(n * blocks);
  const points = zeroPoints ? new Uint8Array(n * (bits === 8 ? blocks : Math.ceil(blocks / 2))) : undefined;
  for (let column = 0; column < n; column++) {
    for (let block = 0; block < blocks; block++) {
      const values = Array.from({ length: BLOCK }, (_, i) => weight[(block * BLOCK + i) * n + column]!);
      let scale: number;
      let zero: number;
      if (zeroPoints) {
        const low = Math.min(0, ...values);
        const high = Math.max(0, ...values);
        scale = (high - low) / top || 1;
        zero = Math.max(0, Math.min(top, Math.round(-low / scale)));
        if (bits === 8) points![column * blocks + block] = zero;
        else points![column * Math.ceil(blocks / 2) + (block >> 1)]! |= zero << (4 * (block & 1));
      } else {
        zero = (top + 1) / 2;
        scale = Math.max(...values.map(Math.abs)) / (zero - 1) || 1;
      }
      scales[column * blocks + block] = scale;
      values.forEach((value, i) => {
        const level = Math.max(0, Math.min(top, Math.round(value / scale) + zero));
        const at = ((column * blocks + block) * BLOCK + i) / perByte;
        data[Math.floor(at)]! |= level << (bits * (i % perByte));
      });
    }
  }
  return { data, scales, ...(points && { zeroPoints: points }) };
}

/** The float32 2-D initializers of a graph, by name, as weights ([k, n]); those in external data too with `readExternal`. */
function floatMatrices(fields: readonly RawField[], readExternal?: ExternalDataReader): Map<string, FloatWeight> {
  const weights = fields.flatMap((field) => (field.number === GRAPH_INITIALIZER ? [floatWeight(field.payload!, readExternal)] : []));
  return new Map(weights.flatMap((weight) => (weight ? [[weight.name, weight] as const] : [])));
}

/**
 * Every MatMul by a float32 weight whose rows split into blocks of 32, the output head too, as one
 * MatMulNBits on the activations as they come (accuracy_level 4), as exporters write them.
 */
function exportedMatMulNBits(source: string, target: string, format: BlockFormat): void {
  copyFolder(source, target);
  const path = join(target, 'model.onnx');
  editModel(path, (fields) => {
    const matrices = withExternalData(target, (readExternal) => floatMatrices(fields, readExternal));
    const quantized = new Set<string>();
    const out = fields.flatMap((field) => {
      if (field.number !== GRAPH_NODE) return [field.bytes];
      const matmul = readNode(field.payload!);
      const weight = matmul.opType === 'MatMul' && matmul.domain === '' ? matrices.get(matmul.inputs[1]!) : undefined;
      if (!weight || weight.k % BLOCK !== 0) return [field.bytes];
      const name = `${matmul.inputs[1]}/q${format.bits}`;
      const { data, scales, zeroPoints } = blockQuantized(weight.values, weight.k, weight.n, format);
      const initializers = quantized.has(name)
        ? []
        : [
            initializer(`${name}/B`, ELEM_UINT8, [weight.n, weight.k / BLOCK, (BLOCK * format.bits) / 8], data),
            initializer(`${name}/scales`, ELEM_FLOAT, [scales.length], new Uint8Array(scales.buffer)),
            ...(zeroPoints ? [initializer(`${name}/zero_points`, ELEM_UINT8, [zeroPoints.length], zeroPoints)] : []),
          ];
      quantized.add(name);
      const inputs = [matmul.inputs[0]!, `${name}/B`, `${name}/scales`, ...(zeroPoints ? [`${name}/zero_points`] : [])];
      const attributes = [
        intAttribute('K', weight.k),
        intAttribute('N', weight.n),
        intAttribute('bits', format.bits),
        intAttribute('block_size', BLOCK),
        intAttribute('accuracy_level', 4),
      ];
      return [...initializers, graphNode('MatMulNBits', inputs, matmul.outputs, { name: `/variant/MatMulNBits/${matmul.outputs[0]}`, attributes, domain: 'com.microsoft' })];
    });
    if (quantized.size === 0) throw new Error('no MatMul to quantize');
    return withoutDeadNodes(out);
  });
  writeWithContribOps(path, readFileSync(path));
}

/** The token embeddings (the Gather of a float32 table by input_ids) as GatherBlockQuantized of 4-bit blocks along the hidden size. */
function gatherBlockQuantized(source: string, target: string): void {
  copyFolder(source, target);
  const path = join(target, 'model.onnx');
  editModel(path, (fields) => {
    const matrices = floatMatrices(fields);
    let found = false;
    const out = fields.flatMap((field) => {
      if (field.number !== GRAPH_NODE) return [field.bytes];
      const gather = readNode(field.payload!);
      const table = gather.opType === 'Gather' && gather.inputs[1] === 'input_ids' ? matrices.get(gather.inputs[0]!) : undefined;
      if (!table || table.n % INT4_BLOCK !== 0) return [field.bytes];
      found = true;
      // Blocks run along each row: quantized as the [hidden, vocabulary] weight whose columns are the rows.
      const [rows, columns] = [table.k, table.n];
      const transposed = new Float32Array(table.values.length);
      for (let row = 0; row < rows; row++) for (let column = 0; column < columns; column++) transposed[column * rows + row] = table.values[row * columns + column]!;
      const { packed: data, scales } = quantizeInt4(transposed, columns, rows);
      const name = `${gather.inputs[0]}/q4`;
      return [
        initializer(`${name}/data`, ELEM_UINT8, [rows, columns / 2], data),
        initializer(`${name}/scales`, ELEM_FLOAT, [rows, columns / INT4_BLOCK], new Uint8Array(scales.buffer)),
        graphNode('GatherBlockQuantized', [`${name}/data`, 'input_ids', `${name}/scales`], gather.outputs, {
          name: `/variant/GatherBlockQuantized/${gather.outputs[0]}`,
          attributes: [intAttribute('gather_axis', 0), intAttribute('quantize_axis', 1), intAttribute('block_size', INT4_BLOCK), intAttribute('bits', 4)],
          domain: 'com.microsoft',
        }),
      ];
    });
    if (!found) throw new Error('no embedding Gather by input_ids');
    return withoutDeadNodes(out);
  });
  writeWithContribOps(path, readFileSync(path));
}

const ELEM_INT32 = 6;

/**
 * Each layer's attention as one com.microsoft GroupQueryAttention (rotary applied before it, as
 * the graph does), with `seqlens_k` and `total_sequence_length` from the attention mask, as
 * onnxruntime-genai's builder writes Llama graphs. The kernel takes every row as unpadded.
 */
function groupQueryAttention(source: string, target: string, fusedRotary = false): void {
  copyFolder(source, target);
  const config = readJson(join(source, 'config.json')) as Record<string, number> & { rope_parameters?: { rope_theta?: number }; rope_theta?: number };
  const heads = config.num_attention_heads!;
  const kvHeads = config.num_key_value_heads ?? heads;
  const headDim = config.head_dim ?? config.hidden_size! / heads;
  const theta = config.rope_parameters?.rope_theta ?? config.rope_theta ?? 10000;
  const path = join(target, 'model.onnx');
  const edited = editGraph(readFileSync(path), (fields) => {
    const nodes = fields.map((field, index) => ({ index, field, node: field.number === GRAPH_NODE ? readNode(field.payload!) : undefined }));
    const producer = new Map<string, (typeof nodes)[number]>();
    const consumers = new Map<string, (typeof nodes)[number][]>();
    for (const entry of nodes) {
      for (const output of entry.node?.outputs ?? []) producer.set(output, entry);
      for (const input of entry.node?.inputs ?? []) consumers.set(input, [...(consumers.get(input) ?? []), entry]);
    }
    /** The first MatMul reached forward from `start` that takes what was reached as its second input. */
    const matmulAfter = (start: string) => {
      const queue = [start];
      const seen = new Set(queue);
      while (queue.length > 0) {
        const name = queue.shift()!;
        for (const entry of consumers.get(name) ?? []) {
          if (entry.node!.opType === 'MatMul' && entry.node!.inputs[1] === name) return entry;
          for (const output of entry.node!.outputs) if (!seen.has(output) && entry.node!.opType !== 'MatMul') (seen.add(output), queue.push(output));
        }
      }
      throw new Error(`no MatMul after ${start}`);
    };
    const replaced = new Map<number, Uint8Array[]>();
    const common = [
      constant('/gqa/axes', [1n], [1]),
      node('ReduceSum', ['attention_mask', '/gqa/axes'], ['/gqa/mask_sum'], [intAttribute('keepdims', 0)]),
      constant('/gqa/one', [1n], []),
      node('Sub', ['/gqa/mask_sum', '/gqa/one'], ['/gqa/seqlens_k_64']),
      node('Cast', ['/gqa/seqlens_k_64'], ['/gqa/seqlens_k'], [intAttribute('to', ELEM_INT32)]),
      node('Shape', ['attention_mask'], ['/gqa/mask_shape']),
      node('Gather', ['/gqa/mask_shape', '/gqa/one'], ['/gqa/total_64'], [intAttribute('axis', 0)]),
      node('Cast', ['/gqa/total_64'], ['/gqa/total_sequence_length'], [intAttribute('to', ELEM_INT32)]),
      constant('/gqa/flat', [0n, 0n, -1n], [3]),
    ];
    const outputNames = fields.filter((field) => field.number === GRAPH_OUTPUT).map((field) => valueInfoName(field.payload!));
    const layers = outputNames.filter((name) => /^present\.\d+\.key$/.test(name)).map((name) => Number(name.split('.')[1]));
    const added: Uint8Array[] = [...common];
    if (fusedRotary) {
      // cos and sin of position × θ^(−2j/d) for every position and j < d/2, as the kernel's rotary takes them.
      const positions = config.max_position_embeddings!;
      const half = headDim / 2;
      const table = (fn: (x: number) => number) => Float32Array.from({ length: positions * half }, (_, i) => fn(Math.floor(i / half) * theta ** ((-2 * (i % half)) / headDim)));
      added.push(initializer('/gqa/cos_cache', ELEM_FLOAT, [positions, half], new Uint8Array(table(Math.cos).buffer)));
      added.push(initializer('/gqa/sin_cache', ELEM_FLOAT, [positions, half], new Uint8Array(table(Math.sin).buffer)));
    }
    /** With the rotary fused in: the query or key before the graph's rotary, `Add(Mul(x, cos), Mul(rotate_half(x), sin))`. */
    const beforeRotary = (rotated: string) => {
      const add = producer.get(rotated)?.node;
      const mul = add?.opType === 'Add' ? producer.get(add.inputs[0]!)?.node : undefined;
      if (mul?.opType !== 'Mul') throw new Error(`${rotated} is not the rotary's Add(Mul(x, cos), …)`);
      return mul.inputs[0]!;
    };
    for (const layer of layers) {
      const keyConcat = producer.get(`present.${layer}.key`)!;
      const valueConcat = producer.get(`present.${layer}.value`)!;
      if (keyConcat.node!.opType !== 'Concat' || valueConcat.node!.opType !== 'Concat') throw new Error(`layer ${layer}: present is no Concat`);
      const keyRotated = keyConcat.node!.inputs[1]!;
      const valueNew = valueConcat.node!.inputs[1]!;
      const scores = matmulAfter(`present.${layer}.key`);
      const queryRotated = scores.node!.inputs[0]!;
      const weighted = matmulAfter(`present.${layer}.value`);
      const transpose = consumers.get(weighted.node!.outputs[0]!)![0]!;
      const reshape = consumers.get(transpose.node!.outputs[0]!)![0]!;
      if (transpose.node!.opType !== 'Transpose' || reshape.node!.opType !== 'Reshape') throw new Error(`layer ${layer}: no Transpose, Reshape after the attention`);
      const output = `/gqa/${layer}/output`;
      const flat = (name: string, what: string) => [
        node('Transpose', [name], [`/gqa/${layer}/${what}_bsnh`], [intsAttribute('perm', [0, 2, 1, 3])]),
        node('Reshape', [`/gqa/${layer}/${what}_bsnh`, '/gqa/flat'], [`/gqa/${layer}/${what}`]),
      ];
      added.push(
        ...flat(fusedRotary ? beforeRotary(queryRotated) : queryRotated, 'query'),
        ...flat(fusedRotary ? beforeRotary(keyRotated) : keyRotated, 'key'),
        ...flat(valueNew, 'value'),
        lengthField(
          GRAPH_NODE,
          concat([
            ...[`/gqa/${layer}/query`, `/gqa/${layer}/key`, `/gqa/${layer}/value`, `past_key_values.${layer}.key`, `past_key_values.${layer}.value`, '/gqa/seqlens_k', '/gqa/total_sequence_length']
              .concat(fusedRotary ? ['/gqa/cos_cache', '/gqa/sin_cache'] : [])
              .map((input) => stringField(NODE_INPUT, input)),
            ...[output, `present.${layer}.key`, `present.${layer}.value`].map((name) => stringField(NODE_OUTPUT, name)),
            stringField(NODE_NAME, `/gqa/${layer}/GroupQueryAttention`),
            stringField(NODE_OP_TYPE, 'GroupQueryAttention'),
            stringField(NODE_DOMAIN, 'com.microsoft'),
            intAttribute('num_heads', heads),
            intAttribute('kv_num_heads', kvHeads),
            ...(fusedRotary ? [intAttribute('do_rotary', 1), intAttribute('rotary_interleaved', 0)] : []),
          ]),
        ),
      );
      // The old attention's Concats no longer make the presents; whatever reads its output reads the new one.
      replaced.set(keyConcat.index, [renamed(keyConcat.field.payload!, new Map(), new Map([[`present.${layer}.key`, `/gqa/${layer}/unused_key`]]))]);
      replaced.set(valueConcat.index, [renamed(valueConcat.field.payload!, new Map(), new Map([[`present.${layer}.value`, `/gqa/${layer}/unused_value`]]))]);
      for (const entry of consumers.get(reshape.node!.outputs[0]!) ?? []) replaced.set(entry.index, [renamed(entry.field.payload!, new Map([[reshape.node!.outputs[0]!, output]]))]);
    }
    if (layers.length === 0) throw new Error('no present outputs');
    const rewritten = nodes.flatMap((entry) => {
      const replacement = replaced.get(entry.index);
      if (!replacement) return [entry.field.bytes];
      // Consumers of the old presents now read the dead Concats' outputs.
      return replacement;
    });
    const renamedReaders = rewritten.map((bytes) => {
      const [field] = parseFields(bytes);
      if (field?.number !== GRAPH_NODE) return bytes;
      const { inputs, opType } = readNode(field.payload!);
      if (opType === 'GroupQueryAttention') return bytes;
      const map = new Map(inputs.filter((input) => /^present\.\d+\.(key|value)$/.test(input)).map((input) => [input, `/gqa/${input.split('.')[1]}/unused_${input.split('.')[2]}`]));
      return map.size > 0 ? renamed(field.payload!, map) : bytes;
    });
    return concat(withoutDeadNodes([...renamedReaders, ...added]));
  });
  writeWithContribOps(path, edited);
}

const GRAPH_VALUE_INFO = 13;
const ATTRIBUTE_G = 6;
const ATTRIBUTE_TYPE_GRAPH = 5;
const ELEM_BOOL = 9;

const graphAttribute = (name: string, graph: Uint8Array) =>
  lengthField(NODE_ATTRIBUTE, concat([stringField(ATTRIBUTE_NAME, name), lengthField(ATTRIBUTE_G, graph), varintField(ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_GRAPH)]));

/**
 * A merged decoder, as Optimum's `decoder_model_merged.onnx`: one `If` on a `use_cache_branch`
 * input, whose `then_branch` is the decoder with a past and whose `else_branch`, for the first
 * step, makes its presents from the new keys and values alone. The weights stay at the top, shared.
 */
function merged(source: string, target: string): void {
  copyFolder(source, target, ['model.onnx']);
  const model = readFileSync(join(source, 'model.onnx'));
  const edited = editGraph(model, (fields) => {
    const outputs = fields.filter((field) => field.number === GRAPH_OUTPUT).map((field) => valueInfoName(field.payload!));
    const branch = (name: string, withPast: boolean) => {
      const renames = new Map(outputs.map((output) => [output, `${output}/${name}`]));
      const nodes = fields
        .filter((field) => field.number === GRAPH_NODE)
        .map((field) => {
          const summary = readNode(field.payload!);
          const present = summary.outputs.find((output) => /^present\./.test(output));
          // Without a past, a present is just the step's keys or values.
          if (!withPast && present && summary.opType === 'Concat') return node('Identity', [summary.inputs[1]!], [renames.get(present)!]);
          return renamed(field.payload!, renames, renames);
        });
      const branchOutputs = fields.filter((field) => field.number === GRAPH_OUTPUT).map((field) => {
        const name = valueInfoName(field.payload!);
        return lengthField(GRAPH_OUTPUT, concat(parseFields(field.payload!).map((f) => (f.number === VALUE_INFO_NAME ? stringField(VALUE_INFO_NAME, renames.get(name)!) : f.bytes))));
      });
      const valueInfo = fields.filter((field) => field.number === GRAPH_VALUE_INFO).map((field) => field.bytes);
      return concat([...nodes, stringField(GRAPH_NAME, name), ...branchOutputs, ...valueInfo]);
    };
    const ifNode = lengthField(
      GRAPH_NODE,
      concat([
        stringField(NODE_INPUT, 'use_cache_branch'),
        ...outputs.map((output) => stringField(NODE_OUTPUT, output)),
        stringField(NODE_NAME, '/variant/If'),
        stringField(NODE_OP_TYPE, 'If'),
        graphAttribute('then_branch', branch('with_past', true)),
        graphAttribute('else_branch', branch('without_past', false)),
      ]),
    );
    const kept = fields.filter((field) => field.number !== GRAPH_NODE && field.number !== GRAPH_VALUE_INFO).map((field) => field.bytes);
    return concat([ifNode, ...kept, tensorValueInfo(GRAPH_INPUT, 'use_cache_branch', ELEM_BOOL)]);
  });
  if (!edited) throw new Error('no graph');
  writeFileSync(join(target, 'decoder_model_merged.onnx'), edited);
}

const TENSOR_FLOAT_DATA = 4;
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** A float32 rounded to the nearest IEEE 754 half (ties to even), as its bits. */
export function toHalf(value: number): number {
  f32[0] = value;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  let mantissa = bits & 0x7fffff;
  if (((bits >>> 23) & 0xff) === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  if (exponent >= 0x1f) return sign | 0x7c00;
  if (exponent <= 0) {
    if (exponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - exponent;
    let half = mantissa >> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const middle = 1 << (shift - 1);
    if (rest > middle || (rest === middle && half & 1)) half++;
    return sign | half;
  }
  let half = (exponent << 10) | (mantissa >> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** A TensorProto's payload with its float32 data as float16; other tensors as they are. */
function halfTensor(payload: Uint8Array): Uint8Array {
  const fields = parseFields(payload);
  if (fields.find((f) => f.number === TENSOR_DATA_TYPE)?.value !== BigInt(ELEM_FLOAT)) return payload;
  const raw = fields.find((f) => f.number === TENSOR_RAW_DATA)?.payload;
  const packed = fields.find((f) => f.number === TENSOR_FLOAT_DATA)?.payload;
  const source = raw ?? packed;
  if (!source) throw new Error('a float tensor without raw or packed data');
  const floats = new Float32Array(new Uint8Array(source).buffer);
  const halves = Uint16Array.from(floats, toHalf);
  return concat([
    ...fields.filter((f) => f.number !== TENSOR_DATA_TYPE && f.number !== TENSOR_RAW_DATA && f.number !== TENSOR_FLOAT_DATA).map((f) => f.bytes),
    varintField(TENSOR_DATA_TYPE, ELEM_FLOAT16),
    lengthField(TENSOR_RAW_DATA, new Uint8Array(halves.buffer)),
  ]);
}

/**
 * The whole graph in float16, as transformers.js repositories' `model_fp16.onnx`: weights,
 * constants, casts, the cache and the logits (the runtime's CPU provider casts around the
 * operations it has no float16 kernel for).
 */
function fp16(source: string, target: string): void {
  copyFolder(source, target, ['model.onnx']);
  const attributeTensor = (attribute: RawField[]) => attribute.find((f) => f.number === ATTRIBUTE_TENSOR)?.payload;
  const edited = editGraph(readFileSync(join(source, 'model.onnx')), (fields) =>
    concat(
      fields.map((field) => {
        if (field.number === GRAPH_INITIALIZER) return lengthField(GRAPH_INITIALIZER, halfTensor(field.payload!));
        if (field.number === GRAPH_INPUT || field.number === GRAPH_OUTPUT || field.number === GRAPH_VALUE_INFO) {
          const type = tensorElementType(field.payload!);
          return type === ELEM_FLOAT ? lengthField(field.number, withElemType(field.payload!, ELEM_FLOAT16)) : field.bytes;
        }
        if (field.number !== GRAPH_NODE) return field.bytes;
        const { opType } = readNode(field.payload!);
        return lengthField(
          GRAPH_NODE,
          concat(
            parseFields(field.payload!).map((f) => {
              if (f.number !== NODE_ATTRIBUTE) return f.bytes;
              const attribute = parseFields(f.payload!);
              const name = new TextDecoder().decode(attribute.find((a) => a.number === ATTRIBUTE_NAME)?.payload);
              if (opType === 'Cast' && name === 'to' && attribute.find((a) => a.number === ATTRIBUTE_INT)?.value === BigInt(ELEM_FLOAT)) return intAttribute('to', ELEM_FLOAT16);
              const tensorValue = attributeTensor(attribute);
              if (tensorValue && (opType === 'Constant' || opType === 'ConstantOfShape')) return tensorAttribute(name, halfTensor(tensorValue));
              return f.bytes;
            }),
          ),
        );
      }),
    ),
  );
  if (!edited) throw new Error('no graph');
  writeFileSync(join(target, 'model.onnx'), edited);
}

export const VARIANTS = {
  'transformers-js': transformersJs,
  genai,
  'text-config': textConfig,
  'logits-to-keep': logitsToKeep,
  'no-position-ids': noPositionIds,
  int4,
  'q4-zero-points': (source: string, target: string) => exportedMatMulNBits(source, target, { bits: 4, zeroPoints: true }),
  'q8-blocks': (source: string, target: string) => exportedMatMulNBits(source, target, { bits: 8, zeroPoints: false }),
  'gather-block-quantized': gatherBlockQuantized,
  'group-query-attention': (source: string, target: string) => groupQueryAttention(source, target),
  'group-query-attention-rotary': (source: string, target: string) => groupQueryAttention(source, target, true),
  merged,
  fp16,
} as const;
export type VariantName = keyof typeof VARIANTS;

/** Writes `variant` of the model folder `source` into `target`; a list of variants is made one over the other (an int4 GroupQueryAttention genai folder, say). */
export function makeVariant(variant: VariantName | readonly VariantName[], source: string, target: string): void {
  const steps = typeof variant === 'string' ? [variant] : variant;
  let from = source;
  steps.forEach((step, i) => {
    const to = i === steps.length - 1 ? target : `${target}.step${i}`;
    VARIANTS[step](from, to);
    if (from !== source) rmSync(from, { recursive: true, force: true });
    from = to;
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [source, target, ...names] = process.argv.slice(2);
  if (!source || !target) {
    console.error(`usage: npx tsx tools/model-variants.ts SOURCE_DIR TARGET_DIR [${Object.keys(VARIANTS).join('|')} ...]`);
    process.exit(2);
  }
  // A name joined with `+` (group-query-attention+int4+genai) makes those variants one over the other.
  for (const name of names.length > 0 ? names : Object.keys(VARIANTS)) {
    const steps = name.split('+');
    for (const step of steps) if (!(step in VARIANTS)) throw new Error(`unknown variant ${step}`);
    makeVariant(steps as VariantName[], source, join(target, name));
    console.log(`${join(target, name)}: ${name}`);
  }
}
