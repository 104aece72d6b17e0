import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { addLogitsPositions, LOGITS_POSITIONS, LOGITS_TO_KEEP } from './logits-positions.js';
import { addNewKvOutputs, newKvName } from './new-kv-outputs.js';
import { addSlotAttention } from './slot-attention.js';
import { addGroupQuerySlots } from './group-query-slots.js';
import { ModelLoadError } from '../../../model/errors.js';
import type { ModelConfig } from '../../../model/config.js';
import { positionTableSize, takesUnpaddedRows } from './graph-limits.js';
import { runtimeRefusal } from './runtime-refusal.js';
import { withExternalData } from './external-data.js';
import { INT4_BLOCK, quantizeWeights } from './weight-quantization.js';
import type { AttentionFormat, Device, GraphLimits, QuantizedWeights, WeightFormat } from '../../protocol.js';

export type KvDataType = 'float32' | 'float16';

/** The decoder's inputs and outputs, discovered from the graph rather than assumed. */
export interface DecoderSignature {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  kvType: KvDataType;
  hasPositionIds: boolean;
  /** Merged decoders (one graph for the first and later steps) switch on this boolean input. */
  hasUseCacheBranch: boolean;
  /** The graph computes logits only at the positions given in `logits_positions` (see logits-positions.ts). */
  hasLogitsPositions: boolean;
  /** The input (`num_logits_to_keep` or `logits_to_keep`, an int64 scalar) by which the graph computes logits for the last positions only. */
  logitsToKeep?: string;
  /** `past_key_values.{i}.key`, `.value` for every layer, in layer order. */
  pastNames: string[];
  /** `present.{i}.key`, `.value`, matching `pastNames` one for one. */
  presentNames: string[];
  /** `new_key_values.{i}.key`, `.value`, where the graph outputs a step's new positions on their own (see new-kv-outputs.ts). */
  newKvNames?: string[];
  /** The graph takes its past in slots and has no `present.*` (see slot-attention.ts). */
  pastSlots?: boolean;
}


export interface SessionOptions {
  device: Device;
  /** Threads per forward pass; 0: `defaultThreads()`. */
  threads: number;
  weights?: WeightFormat;
  /** Quantized weights give a sequence the same numbers alone as batched, at a cost to a lone stream. */
  batchInvariant?: boolean;
  attention?: AttentionFormat;
  /** config.json's, for graphs whose past leaves it symbolic. */
  headDim?: number;
}

const PAST = /^past_key_values\.(\d+)\.(key|value)$/;
const KNOWN_INPUTS = new Set(['input_ids', 'attention_mask', 'position_ids', 'use_cache_branch', LOGITS_POSITIONS, ...LOGITS_TO_KEEP]);

interface TensorMeta {
  name: string;
  type: string;
  shape: readonly (number | string)[];
}

function tensorMeta(list: readonly ort.InferenceSession.ValueMetadata[]): Map<string, TensorMeta> {
  const byName = new Map<string, TensorMeta>();
  for (const meta of list) {
    if (meta.isTensor) byName.set(meta.name, { name: meta.name, type: meta.type, shape: meta.shape });
  }
  return byName;
}

function dataType(meta: TensorMeta, what: string): KvDataType {
  if (meta.type === 'float32' || meta.type === 'float16') return meta.type;
  throw new ModelLoadError(`model graph: ${what} ${meta.name} has type ${meta.type}; float32 or float16 expected`);
}

/** Reads a decoder's I/O from the session metadata; `config` fills what the shapes leave symbolic. */
export function readDecoderSignature(
  session: Pick<ort.InferenceSession, 'inputMetadata' | 'outputMetadata'>,
  config: Pick<ModelConfig, 'numKvHeads' | 'headDim'>,
): DecoderSignature {
  const inputs = tensorMeta(session.inputMetadata);
  const outputs = tensorMeta(session.outputMetadata);
  for (const name of ['input_ids', 'attention_mask']) {
    if (!inputs.has(name)) throw new ModelLoadError(`model graph: required input ${name} is missing`);
  }
  const logits = outputs.get('logits');
  if (!logits) throw new ModelLoadError('model graph: output logits is missing');
  dataType(logits, 'output');

  const layers = new Set<number>();
  for (const name of inputs.keys()) {
    const match = PAST.exec(name);
    if (match) layers.add(Number(match[1]));
    else if (!KNOWN_INPUTS.has(name)) throw new ModelLoadError(`model graph: unsupported input ${name}`);
  }
  if (layers.size === 0) {
    throw new ModelLoadError('model graph: no past_key_values.* inputs; export it with --task text-generation-with-past');
  }
  const numLayers = layers.size;
  const pastNames: string[] = [];
  const presentNames: string[] = [];
  for (let layer = 0; layer < numLayers; layer++) {
    for (const kind of ['key', 'value']) {
      const past = `past_key_values.${layer}.${kind}`;
      const present = `present.${layer}.${kind}`;
      if (!inputs.has(past)) throw new ModelLoadError(`model graph: input ${past} is missing`);
      if (!outputs.has(present) && !outputs.has(newKvName(present))) throw new ModelLoadError(`model graph: output ${present} is missing`);
      pastNames.push(past);
      presentNames.push(present);
    }
  }
  const firstPast = inputs.get(pastNames[0])!;
  const dim = (index: number, fallback: number) => {
    const value = firstPast.shape[index];
    return typeof value === 'number' && value > 0 ? value : fallback;
  };
  return {
    numLayers,
    numKvHeads: dim(1, config.numKvHeads),
    headDim: dim(3, config.headDim),
    kvType: dataType(firstPast, 'input'),
    hasPositionIds: inputs.has('position_ids'),
    hasUseCacheBranch: inputs.has('use_cache_branch'),
    hasLogitsPositions: inputs.has(LOGITS_POSITIONS),
    ...(LOGITS_TO_KEEP.some((name) => inputs.has(name)) && { logitsToKeep: LOGITS_TO_KEEP.find((name) => inputs.has(name))! }),
    pastNames,
    presentNames,
    newKvNames: presentNames.every((name) => outputs.has(newKvName(name))) ? presentNames.map(newKvName) : undefined,
    ...(presentNames.every((name) => !outputs.has(name) && outputs.has(newKvName(name))) && { pastSlots: true }),
  };
}

/**
 * Threads for a forward pass when none are configured: one per core. The HTTP thread is idle most
 * of the time, so a core kept for it is mostly a core lost: on 2 cores, two threads gave one client
 * 12–59% more tokens/s than one thread, and 16 clients 29–44% more, with `/health` answering within
 * 23 ms under 16 streams (bench/README.md, "Threads").
 */
export function defaultThreads(cores = availableParallelism()): number {
  return Math.max(1, cores);
}

/** An edit of the graph as it loads: what it made of the graph, or undefined where the graph's shape does not suit it. */
interface GraphEdit {
  name: string;
  /** Why a graph gets no such edit, for the log. */
  unsuited?: string;
  /** The edited model and what was made, undefined where the graph's shape does not suit the edit, or why not where the edit says. */
  edit(model: Uint8Array): { model: Uint8Array; what: string } | string | undefined;
}

const described = (what: string, edit: (model: Uint8Array) => Uint8Array | undefined) => (model: Uint8Array) => {
  const edited = edit(model);
  return edited && { model: edited, what };
};

/** The edits made to every graph as it loads, where its shape suits them. */
const GRAPH_EDITS: GraphEdit[] = [
  { name: LOGITS_POSITIONS, edit: described('logits computed only at the positions read', addLogitsPositions) },
  { name: 'new_key_values', edit: described("each step's new keys and values fetched on their own", addNewKvOutputs) },
];

/** `--attention slots`: the plain-op attention of slot-attention.ts, or GroupQueryAttention as group-query-slots.ts rewrites it. */
const slotAttention = (headDim: number): GraphEdit => ({
  name: 'slot_attention',
  unsuited:
    "a layer's attention is neither Concat(past, new) read by a MatMul on each (with position_ids) nor a GroupQueryAttention without attention_bias, head_sink or smooth_softmax whose rotary caches are initializers",
  edit: (model) => {
    const plain = addSlotAttention(model);
    if (plain) return { model: plain, what: 'attention to a past held in slots that each step writes into, nothing of it copied (present.* removed)' };
    const grouped = addGroupQuerySlots(model, headDim);
    if (typeof grouped === 'string') return grouped;
    return (
      grouped && {
        model: grouped,
        what: 'GroupQueryAttention as attention to a past held in slots, KV heads unrepeated, rows of any length together (present.* removed, position_ids given)',
      }
    );
  },
});

const QUANTIZED: Record<QuantizedWeights, { unsuited: string; what: (matmuls: number) => string }> = {
  int8: {
    unsuited: 'no MatMul by a float32 weight: the weights are quantized already, say',
    what: (matmuls) => `${matmuls} MatMuls as 8-bit DynamicQuantizeMatMul (per output column, each row's input on its own), the output head too`,
  },
  int4: {
    unsuited: 'no MatMul by a float32 weight whose rows split into blocks of 32: the weights are quantized already, say',
    what: (matmuls) => `${matmuls} MatMuls as 4-bit MatMulNBits (blocks of ${INT4_BLOCK}), the output head too`,
  },
};

/** `--weights int8|int4`: the weights quantized, external data read from `dir`. */
const quantizedWeights = (format: QuantizedWeights, dir: string, batchInvariant: boolean): GraphEdit => ({
  name: `${format} weights`,
  unsuited: QUANTIZED[format].unsuited,
  edit: (model) => {
    const quantized = withExternalData(dir, (readExternal) => quantizeWeights(model, format, { readExternal, batchInvariant }));
    return quantized && { model: quantized.model, what: `${QUANTIZED[format].what(quantized.matmuls)}${format === 'int4' && !batchInvariant ? ', one-row steps unpadded (not batch-invariant)' : ''}` };
  },
});

interface GraphReading {
  edited: Uint8Array | undefined;
  positions: number | undefined;
  unpaddedRows: boolean;
  /** For the start-up log: each edit, and whether it was made or why not. */
  rewrites: string[];
}

/** The graph with every edit made that suits it (undefined when none does), and what it fixes. */
function readGraph(modelPath: string, weights: WeightFormat, attention: AttentionFormat, headDim: number, batchInvariant: boolean): GraphReading {
  let original: Uint8Array;
  try {
    original = readFileSync(modelPath);
  } catch {
    return { edited: undefined, positions: undefined, unpaddedRows: false, rewrites: ['no edits: the graph file could not be read here (the runtime loads it)'] };
  }
  const attempt = <T>(read: () => T): T | undefined => {
    try {
      return read();
    } catch {
      return undefined;
    }
  };
  const rewrites: string[] = [];
  let edited = original;
    // The weights are quantized last, so that the output head is quantized with logits_positions' Gather in front of it.
  const edits = [...GRAPH_EDITS, ...(attention === 'slots' ? [slotAttention(headDim)] : []), ...(weights === 'as-exported' ? [] : [quantizedWeights(weights, dirname(modelPath), batchInvariant)])];
  for (const { name, unsuited, edit } of edits) {
    try {
      const made = edit(edited);
      if (made === undefined || typeof made === 'string') {
        rewrites.push(`${name}: not made (${made ?? unsuited ?? 'the graph has another shape'})`);
      } else {
        rewrites.push(`${name}: ${made.what}`);
        edited = made.model;
      }
    } catch (err) {
      rewrites.push(`${name}: not made (${(err as Error).message})`);
    }
  }
  return {
    edited: edited === original ? undefined : edited,
    positions: attempt(() => positionTableSize(original)),
    unpaddedRows: attempt(() => takesUnpaddedRows(edited)) ?? false,
    rewrites,
  };
}

export interface DecoderSession {
  session: ort.InferenceSession;
  /** What the graph fixes, whatever config.json says. */
  limits: GraphLimits;
  /** Each edit of the graph at load, made or why not. */
  rewrites: string[];
}

/**
 * Creates the session from the graph with the edits of logits-positions.ts and new-kv-outputs.ts
 * made where it has the plain shape they expect. Its external data, if any, is read from the
 * model's directory.
 */
export async function createDecoderSession(modelPath: string, options: SessionOptions): Promise<DecoderSession> {
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: [options.device],
    intraOpNumThreads: options.threads || defaultThreads(),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  };
  try {
    // A graph the edit does not suit, or a file it cannot read, is left for the runtime to load or refuse.
    const { edited, positions, unpaddedRows, rewrites } = readGraph(modelPath, options.weights ?? 'as-exported', options.attention ?? 'slots', options.headDim ?? 0, options.batchInvariant ?? true);
    let session: ort.InferenceSession | undefined;
    if (edited) {
      const externalData = { session: { model_external_initializers_file_folder_path: dirname(modelPath) } };
      session = await ort.InferenceSession.create(edited, { ...sessionOptions, extra: externalData }).catch((err: unknown) => {
        rewrites.push(`the runtime refused the edited graph, so it runs as exported (${(err as Error).message.split('\n')[0]})`);
        return undefined;
      });
    }
    session ??= await ort.InferenceSession.create(modelPath, sessionOptions);
    const logits = session.outputMetadata.find((meta) => meta.name === 'logits') as { shape?: readonly unknown[] } | undefined;
    const vocabSize = logits?.shape?.[2];
    return { session, limits: { positions, ...(typeof vocabSize === 'number' && vocabSize > 0 && { vocabSize }), ...(unpaddedRows && { unpaddedRows }) }, rewrites };
  } catch (err) {
    throw new ModelLoadError(`${modelPath}: cannot load the ONNX graph: ${runtimeRefusal((err as Error).message, options.device)}`);
  }
}
