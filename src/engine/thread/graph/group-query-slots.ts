/**
 * An edit of a graph whose attention is com.microsoft GroupQueryAttention (transformers.js v4 and
 * onnxruntime-genai exports) into attention to a past held in slots, as slot-attention.ts makes of
 * plain-op graphs. The kernel takes each row's length from `seqlens_k` as if no row were padded, so
 * rows of different lengths could not share a step; after the edit each layer computes, with the
 * KV heads unrepeated (query head h reads KV head h / G, G = num_heads / kv_num_heads, the G query
 * heads of a KV head as G × S rows of one product):
 *
 *   q, k   = rotated at position_ids, where the kernel did the rotary (its cos_cache and sin_cache)
 *   scores = scale · [q·past_kᵀ | q·kᵀ]  (softcapped where the kernel was), plus a mask of the free
 *            slots, the later positions of the step and those outside local_window_size
 *   out    = softmax[:, :C]·past_v + softmax[:, C:]·v
 *
 * Each row's past lies in slots 0, 1, … in position order, so a slot's index is its position. The
 * step's keys and values (rotated) are output as `new_key_values.*` for the engine to write into
 * slots; `present.*` are gone, and `position_ids` becomes an input where the graph has none. A graph
 * with an `attention_bias` or `head_sink` input to its attention, smooth_softmax, or a rotary cache
 * that is not an initializer is left as it is (undefined).
 */
import {
  concat,
  decodeText,
  editGraph,
  ELEM_FLOAT,
  ELEM_FLOAT16,
  ELEM_INT64,
  floatAttribute,
  GRAPH_INITIALIZER,
  GRAPH_INPUT,
  GRAPH_NODE,
  graphNode,
  GRAPH_OUTPUT,
  initializer,
  int64Initializer,
  opsetVersion,
  intAttribute,
  intsAttribute,
  parseFields,
  readNode,
  TENSOR_NAME,
  tensorDims,
  tensorElementType,
  tensorValueInfo,
  valueInfoDims,
  valueInfoName,
  withOpsetImport,
  withoutDeadNodes,
  type NodeSummary,
} from './onnx-proto.js';
import { newKvName } from './new-kv-outputs.js';

const PAST_KEY = /^past_key_values\.(\d+)\.key$/;
const MICROSOFT = 'com.microsoft';
/** Added to a masked score: far below any real one, and finite in the KV's type (0 × it must stay 0, not NaN). */
const MASKED = { [ELEM_FLOAT]: -1e9, [ELEM_FLOAT16]: -65504 } as const;

/** What one GroupQueryAttention node computes, as its inputs and attributes say. */
interface Attention {
  node: NodeSummary;
  index: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  softcap: number;
  /** local_window_size: a query attends this many positions, its own and those just before it; undefined: all. */
  window?: number;
  rotary?: { cos: string; sin: string; dim: number; interleaved: boolean };
}

/**
 * Rewrites `model` (the bytes of model.onnx): the edited model, undefined when it has no
 * GroupQueryAttention, or why one cannot be rewritten. `headDim`: for pasts whose shape leaves it symbolic.
 */
export function addGroupQuerySlots(model: Uint8Array, headDim: number): Uint8Array | string | undefined {
  let refusal: string | undefined;
  const edited = editGraph(model, (fields) => {
    const made = groupQuerySlots(fields.map((field) => field.bytes), headDim);
    if (typeof made === 'string') refusal = made;
    return typeof made === 'string' ? undefined : made;
  });
  if (edited && (opsetVersion(edited) ?? 0) < 13) return 'the graph imports an opset before 13';
  return refusal ?? (edited && withOpsetImport(edited, MICROSOFT));
}

function groupQuerySlots(fieldBytes: Uint8Array[], headDimHint: number): Uint8Array | string | undefined {
  const fields = fieldBytes.map((bytes) => parseFields(bytes)[0]!);
  const initializers = new Map<string, number[]>();
  const inputs = new Map<string, Uint8Array>();
  const outputs = new Set<string>();
  for (const field of fields) {
    if (field.number === GRAPH_INITIALIZER) {
      const tensor = parseFields(field.payload!);
      initializers.set(decodeText(tensor.find((f) => f.number === TENSOR_NAME)?.payload), tensorDims(tensor));
    } else if (field.number === GRAPH_INPUT) inputs.set(valueInfoName(field.payload!), field.payload!);
    else if (field.number === GRAPH_OUTPUT) outputs.add(valueInfoName(field.payload!));
  }
  const attentions: Attention[] = [];
  for (const [index, field] of fields.entries()) {
    if (field.number !== GRAPH_NODE) continue;
    const node = readNode(field.payload!);
    if (node.opType !== 'GroupQueryAttention') continue;
    const attention = readAttention(node, index, inputs, outputs, initializers, headDimHint);
    if (typeof attention === 'string') return `GroupQueryAttention ${node.outputs[0]}: ${attention}`;
    attentions.push(attention);
  }
  if (attentions.length === 0) return undefined;
  const kvType = tensorElementType(inputs.get(attentions[0]!.node.inputs[3]!)!);
  if (kvType !== ELEM_FLOAT && kvType !== ELEM_FLOAT16) return 'the KV cache is neither float32 nor float16';

  const made = new SlotNodes(kvType);
  const replaced = new Map<number, Uint8Array[]>();
  for (const attention of attentions) replaced.set(attention.index, made.layer(attention));
  const presents = new Set(attentions.flatMap((attention) => attention.node.outputs.slice(1, 3)));
  const edited: Uint8Array[] = [];
  // What the layers share reads only graph inputs and initializers: it goes before the first layer, in graph order.
  const first = attentions[0]!.index;
  fieldBytes.forEach((bytes, index) => {
    const field = fields[index]!;
    if (index === first) edited.push(...made.shared);
    if (replaced.has(index)) edited.push(...replaced.get(index)!);
    else if (field.number === GRAPH_OUTPUT && presents.has(valueInfoName(field.payload!))) return;
    else edited.push(bytes);
  });
  if (!inputs.has('position_ids')) edited.push(tensorValueInfo(GRAPH_INPUT, 'position_ids', ELEM_INT64));
  for (const present of presents) edited.push(tensorValueInfo(GRAPH_OUTPUT, newKvName(present), kvType));
  return concat(withoutDeadNodes(edited));
}

/** What `node` computes, or why it cannot be rewritten. */
function readAttention(node: NodeSummary, index: number, inputs: Map<string, Uint8Array>, outputs: Set<string>, initializers: Map<string, number[]>, headDimHint: number): Attention | string {
  const [, , , pastKey = '', pastValue = '', , , cos = '', sin = '', , bias = '', sink = ''] = node.inputs;
  const layer = PAST_KEY.exec(pastKey)?.[1];
  if (node.domain !== MICROSOFT) return `its domain is '${node.domain}'`;
  if (layer === undefined || pastValue !== `past_key_values.${layer}.value` || !inputs.has(pastKey) || !inputs.has(pastValue)) return 'its past is not a past_key_values.N.key/value input pair';
  const [, presentKey, presentValue] = node.outputs;
  if (presentKey !== `present.${layer}.key` || presentValue !== `present.${layer}.value` || !outputs.has(presentKey) || !outputs.has(presentValue)) return `its presents are not the outputs present.${layer}.key/value`;
  if (bias !== '') return 'it takes an attention_bias';
  if (sink !== '') return 'it takes a head_sink';
  if ((node.ints.get('smooth_softmax') ?? 0n) !== 0n) return 'it uses smooth_softmax';
  const heads = Number(node.ints.get('num_heads') ?? 0n);
  const kvHeads = Number(node.ints.get('kv_num_heads') ?? 0n);
  if (heads <= 0 || kvHeads <= 0 || heads % kvHeads !== 0) return `num_heads ${heads} is not a multiple of kv_num_heads ${kvHeads}`;
  const pastDim = valueInfoDims(inputs.get(pastKey)!)[3];
  const headDim = typeof pastDim === 'number' && pastDim > 0 ? pastDim : headDimHint;
  const window = Number(node.ints.get('local_window_size') ?? -1n);
  const attention: Attention = {
    node,
    index,
    heads,
    kvHeads,
    headDim,
    scale: node.floats.get('scale') || 1 / Math.sqrt(headDim),
    softcap: node.floats.get('softcap') ?? 0,
    ...(window >= 0 && { window }),
  };
  if (node.ints.get('do_rotary') === 1n) {
    const dims = initializers.get(cos);
    if (!dims || dims.length !== 2 || initializers.get(sin)?.join() !== dims.join() || 2 * dims[1]! > headDim) return 'its rotary cos_cache and sin_cache are not initializers of one [positions, ≤ head_dim / 2] shape';
    attention.rotary = { cos, sin, dim: 2 * dims[1]!, interleaved: node.ints.get('rotary_interleaved') === 1n };
  }
  return attention;
}

/** The nodes of the edited attention: each layer's, and those all layers share (made once, on first use). */
class SlotNodes {
  readonly shared: Uint8Array[] = [];
  private readonly made = new Set<string>();
  private readonly fused: boolean;

  constructor(private readonly kvType: number) {
    // FusedMatMul (transposed B, scaled) runs on float32 only; float16 takes MatMul and a Transpose.
    this.fused = kvType === ELEM_FLOAT;
  }

  private once(name: string, make: () => Uint8Array[]): string {
    if (!this.made.has(name)) {
      this.made.add(name);
      this.shared.push(...make());
    }
    return name;
  }

  private ints(name: string, values: readonly number[]): string {
    return this.once(`/gqa_slots/ints/${name}`, () => [int64Initializer(`/gqa_slots/ints/${name}`, values)]);
  }

  private scalar(name: string, value: number): string {
    return this.once(`/gqa_slots/scalars/${name}`, () => [initializer(`/gqa_slots/scalars/${name}`, ELEM_INT64, [], new Uint8Array(BigInt64Array.of(BigInt(value)).buffer))]);
  }

  /** A float constant in the KV's type. */
  private float(name: string, value: number): string {
    const out = `/gqa_slots/floats/${name}`;
    return this.once(out, () => {
      const raw = initializer(`${out}/float32`, ELEM_FLOAT, [], new Uint8Array(Float32Array.of(value).buffer));
      return [raw, node('Cast', [`${out}/float32`], [out], [intAttribute('to', this.kvType)])];
    });
  }

  /** [S] and [C], the step's length and the slots', from position_ids and the attention mask. */
  private lengths(): { step: string; slots: string; stepScalar: string } {
    const step = this.once('/gqa_slots/step', () => [
      node('Shape', ['position_ids'], ['/gqa_slots/positions_shape']),
      node('Slice', ['/gqa_slots/positions_shape', this.ints('one', [1]), this.ints('two', [2])], ['/gqa_slots/step']),
    ]);
    const slots = this.once('/gqa_slots/slots', () => [
      node('Shape', ['attention_mask'], ['/gqa_slots/mask_shape']),
      node('Slice', ['/gqa_slots/mask_shape', this.ints('one', [1]), this.ints('two', [2])], ['/gqa_slots/mask_width']),
      node('Sub', ['/gqa_slots/mask_width', step], ['/gqa_slots/slots']),
    ]);
    const stepScalar = this.once('/gqa_slots/step_scalar', () => [node('Reshape', [step, this.ints('scalar_shape', [])], ['/gqa_slots/step_scalar'])]);
    return { step, slots, stepScalar };
  }

  /** The mask's additive bias, [B, 1, 1, C] for the slots and [B, 1, 1, S] for the step's positions. */
  private paddingBias(): { past: string; step: string } {
    const { slots } = this.lengths();
    const past = '/gqa_slots/padding_past';
    const step = '/gqa_slots/padding_step';
    this.once(past, () => [
      node('Cast', ['attention_mask'], ['/gqa_slots/mask_float'], [intAttribute('to', this.kvType)]),
      node('Sub', [this.float('one', 1), '/gqa_slots/mask_float'], ['/gqa_slots/unmasked']),
      node('Mul', ['/gqa_slots/unmasked', this.float('masked', MASKED[this.kvType as keyof typeof MASKED])], ['/gqa_slots/padding']),
      node('Reshape', ['/gqa_slots/padding', this.ints('bias_shape', [0, 1, 1, -1])], ['/gqa_slots/padding_4d']),
      node('Slice', ['/gqa_slots/padding_4d', this.ints('zero', [0]), slots, this.ints('last_axis', [3])], [past]),
      node('Slice', ['/gqa_slots/padding_4d', slots, this.ints('end', [2 ** 53]), this.ints('last_axis', [3])], [step]),
    ]);
    return { past, step };
  }

  /** The step's positions as rows [S, 1] and as columns [1, S] (int64). */
  private stepIndexes(): { rows: string; columns: string } {
    const { stepScalar } = this.lengths();
    const rows = this.once('/gqa_slots/step_rows', () => [
      node('Range', [this.scalar('zero_scalar', 0), stepScalar, this.scalar('one_scalar', 1)], ['/gqa_slots/step_range']),
      node('Reshape', ['/gqa_slots/step_range', this.ints('column_shape', [-1, 1])], ['/gqa_slots/step_rows']),
      node('Reshape', ['/gqa_slots/step_range', this.ints('row_shape', [1, -1])], ['/gqa_slots/step_columns']),
    ]);
    return { rows, columns: '/gqa_slots/step_columns' };
  }

  /** [G·S, S]: a step's later positions masked for each of the G query heads' rows, and those `window` or more back. */
  private stepMask(groups: number, window: number | undefined): string {
    const tag = `${groups}_${window ?? 'all'}`;
    const { rows, columns } = this.stepIndexes();
    const out = `/gqa_slots/step_mask_${tag}`;
    return this.once(out, () => {
      const made = [node('Less', [rows, columns], [`${out}/later`])];
      let masked = `${out}/later`;
      if (window !== undefined) {
        made.push(
          node('Sub', [rows, this.ints(`reach_${window}`, [window - 1])], [`${out}/first_allowed`]),
          node('Less', [columns, `${out}/first_allowed`], [`${out}/too_far`]),
          node('Or', [`${out}/later`, `${out}/too_far`], [`${out}/masked`]),
        );
        masked = `${out}/masked`;
      }
      made.push(
        node('Cast', [masked], [`${out}/masked_float`], [intAttribute('to', this.kvType)]),
        node('Mul', [`${out}/masked_float`, this.float('masked', MASKED[this.kvType as keyof typeof MASKED])], [`${out}/bias`]),
        node('Tile', [`${out}/bias`, this.ints(`tile_rows_${groups}`, [groups, 1])], [out]),
      );
      return made;
    });
  }

  /** [B, 1, G·S, C]: the slots `window` or more positions before each query's (as ORT's kernel counts the window). */
  private windowMask(groups: number, window: number): string {
    const { slots } = this.lengths();
    const out = `/gqa_slots/window_mask_${groups}_${window}`;
    return this.once(out, () => [
      node('Reshape', [slots, this.ints('scalar_shape', [])], [`${out}/slots_scalar`]),
      node('Range', [this.scalar('zero_scalar', 0), `${out}/slots_scalar`, this.scalar('one_scalar', 1)], [`${out}/slot_positions`]),
      node('Sub', ['position_ids', this.ints(`reach_${window}`, [window - 1])], [`${out}/first_allowed`]),
      node('Unsqueeze', [`${out}/first_allowed`, this.ints('last_axis_2', [2])], [`${out}/first_allowed_3d`]),
      node('Less', [`${out}/slot_positions`, `${out}/first_allowed_3d`], [`${out}/too_far`]),
      node('Cast', [`${out}/too_far`], [`${out}/too_far_float`], [intAttribute('to', this.kvType)]),
      node('Mul', [`${out}/too_far_float`, this.float('masked', MASKED[this.kvType as keyof typeof MASKED])], [`${out}/bias_3d`]),
      node('Unsqueeze', [`${out}/bias_3d`, this.ints('second_axis', [1])], [`${out}/bias`]),
      node('Tile', [`${out}/bias`, this.ints(`tile_groups_${groups}`, [1, 1, groups, 1])], [out]),
    ]);
  }

  /** cos and sin of the rotary at position_ids, [B, S, 1, R/2] (or [B, S, 1, R/2, 1] interleaved). */
  private rotaryTables(rotary: NonNullable<Attention['rotary']>): { cos: string; sin: string } {
    const shape = rotary.interleaved ? this.ints('rotary_interleaved_shape', [0, 0, 1, -1, 1]) : this.ints('rotary_shape', [0, 0, 1, -1]);
    const table = (name: string) =>
      this.once(`/gqa_slots/${name}_at_positions${rotary.interleaved ? '_interleaved' : ''}`, () => [
        node('Gather', [name, 'position_ids'], [`/gqa_slots/${name}_gathered`]),
        node('Cast', [`/gqa_slots/${name}_gathered`], [`/gqa_slots/${name}_cast`], [intAttribute('to', this.kvType)]),
        node('Reshape', [`/gqa_slots/${name}_cast`, shape], [`/gqa_slots/${name}_at_positions${rotary.interleaved ? '_interleaved' : ''}`]),
      ]);
    return { cos: table(rotary.cos), sin: table(rotary.sin) };
  }

  /** `x` [B, S, N, D] rotated as the kernel's rotary would rotate it. */
  private rotate(x: string, rotary: NonNullable<Attention['rotary']>, headDim: number, at: (step: string) => string, made: Uint8Array[]): string {
    const { cos, sin } = this.rotaryTables(rotary);
    const { dim } = rotary;
    const half = dim / 2;
    const axis = rotary.interleaved ? 4 : 3;
    let part = x;
    if (dim < headDim) made.push(node('Slice', [x, this.ints('zero', [0]), this.ints(`dim_${dim}`, [dim]), this.ints('last_axis', [3])], [(part = at('rotated_part'))]));
    if (rotary.interleaved) made.push(node('Reshape', [part, this.ints('pairs_shape', [0, 0, 0, -1, 2])], [(part = at('pairs'))]));
    const [start, middle, end] = rotary.interleaved ? [0, 1, 2] : [0, half, dim];
    const axes = this.ints(`axis_${axis}`, [axis]);
    made.push(
      node('Slice', [part, this.ints(`at_${start}`, [start]), this.ints(`at_${middle}`, [middle]), axes], [at('x1')]),
      node('Slice', [part, this.ints(`at_${middle}`, [middle]), this.ints(`at_${end}`, [end]), axes], [at('x2')]),
      node('Mul', [at('x1'), cos], [at('x1_cos')]),
      node('Mul', [at('x2'), sin], [at('x2_sin')]),
      node('Mul', [at('x2'), cos], [at('x2_cos')]),
      node('Mul', [at('x1'), sin], [at('x1_sin')]),
      node('Sub', [at('x1_cos'), at('x2_sin')], [at('y1')]),
      node('Add', [at('x2_cos'), at('x1_sin')], [at('y2')]),
      node('Concat', [at('y1'), at('y2')], [at('rotated')], [intAttribute('axis', axis)]),
    );
    let rotated = at('rotated');
    if (rotary.interleaved) made.push(node('Reshape', [rotated, this.ints(`rotary_shape_${dim}`, [0, 0, 0, dim])], [(rotated = at('rotated_4d'))]));
    if (dim < headDim) {
      made.push(
        node('Slice', [x, this.ints(`dim_${dim}`, [dim]), this.ints('end', [2 ** 53]), this.ints('last_axis', [3])], [at('unrotated')]),
        node('Concat', [rotated, at('unrotated')], [at('rotated_whole')], [intAttribute('axis', 3)]),
      );
      rotated = at('rotated_whole');
    }
    return rotated;
  }

  /** `scale · a·bᵀ` over the last two axes. */
  private scaledScores(a: string, b: string, scale: number, out: string, made: Uint8Array[]): void {
    if (this.fused) {
      made.push(node('FusedMatMul', [a, b], [out], [intAttribute('transB', 1), floatAttribute('alpha', scale)], MICROSOFT));
      return;
    }
    made.push(
      node('Transpose', [b], [`${out}/transposed`], [intsAttribute('perm', [0, 1, 3, 2])]),
      node('MatMul', [a, `${out}/transposed`], [`${out}/unscaled`]),
      node('Mul', [`${out}/unscaled`, this.float(`scale_${scale}`, scale)], [out]),
    );
  }

  /** The nodes that replace one GroupQueryAttention. */
  layer(attention: Attention): Uint8Array[] {
    const { node: gqa, heads, kvHeads, headDim, scale, softcap, window, rotary } = attention;
    const groups = heads / kvHeads;
    const [packed, keyInput, valueInput, pastKey, pastValue] = gqa.inputs as [string, string, string, string, string];
    const [output, presentKey, presentValue] = gqa.outputs as [string, string, string];
    const at = (step: string) => `/gqa_slots/${output}/${step}`;
    const made: Uint8Array[] = [];
    let [query, key, value] = [packed, keyInput, valueInput];
    if (key === '') {
      // Packed QKV: [B, S, (H + 2·KV)·D].
      const bounds = [0, heads * headDim, (heads + kvHeads) * headDim, (heads + 2 * kvHeads) * headDim];
      [query, key, value] = ['query', 'key', 'value'].map((part, i) => {
        made.push(node('Slice', [packed, this.ints(`at_${bounds[i]}`, [bounds[i]!]), this.ints(`at_${bounds[i + 1]}`, [bounds[i + 1]!]), this.ints('axis_2', [2])], [at(part)]));
        return at(part);
      }) as [string, string, string];
    }
    made.push(
      node('Reshape', [query, this.ints(`heads_${heads}_${headDim}`, [0, 0, heads, headDim])], [at('query_bsnd')]),
      node('Reshape', [key, this.ints(`heads_${kvHeads}_${headDim}`, [0, 0, kvHeads, headDim])], [at('key_bsnd')]),
      node('Reshape', [value, this.ints(`heads_${kvHeads}_${headDim}`, [0, 0, kvHeads, headDim])], [at('value_bsnd')]),
    );
    const queryRotated = rotary ? this.rotate(at('query_bsnd'), rotary, headDim, (step) => at(`query_${step}`), made) : at('query_bsnd');
    const keyRotated = rotary ? this.rotate(at('key_bsnd'), rotary, headDim, (step) => at(`key_${step}`), made) : at('key_bsnd');
    const toHeadsFirst = [intsAttribute('perm', [0, 2, 1, 3])];
    const newKey = newKvName(presentKey);
    const newValue = newKvName(presentValue);
    made.push(
      node('Transpose', [queryRotated], [at('query_heads')], toHeadsFirst),
      // The G query heads of each KV head as G × S rows: [B, KV, G·S, D].
      node('Reshape', [at('query_heads'), this.ints(`grouped_${kvHeads}_${headDim}`, [0, kvHeads, -1, headDim])], [at('query_grouped')]),
      node('Transpose', [keyRotated], [newKey], toHeadsFirst),
      node('Transpose', [at('value_bsnd')], [newValue], toHeadsFirst),
    );
    this.scaledScores(at('query_grouped'), pastKey, scale, at('scores_past_raw'), made);
    this.scaledScores(at('query_grouped'), newKey, scale, at('scores_step_raw'), made);
    let [scoresPast, scoresStep] = [at('scores_past_raw'), at('scores_step_raw')];
    if (softcap > 0) {
      for (const part of ['past', 'step']) {
        made.push(
          node('Div', [at(`scores_${part}_raw`), this.float(`softcap_${softcap}`, softcap)], [at(`scores_${part}_over_cap`)]),
          node('Tanh', [at(`scores_${part}_over_cap`)], [at(`scores_${part}_tanh`)]),
          node('Mul', [at(`scores_${part}_tanh`), this.float(`softcap_${softcap}`, softcap)], [at(`scores_${part}_capped`)]),
        );
      }
      [scoresPast, scoresStep] = [at('scores_past_capped'), at('scores_step_capped')];
    }
    const padding = this.paddingBias();
    made.push(
      node('Add', [scoresPast, padding.past], [at('scores_past_padded')]),
      node('Add', [scoresStep, padding.step], [at('scores_step_padded')]),
      node('Add', [at('scores_step_padded'), this.stepMask(groups, window)], [at('scores_step')]),
    );
    let past = at('scores_past_padded');
    if (window !== undefined) made.push(node('Add', [past, this.windowMask(groups, window)], [(past = at('scores_past'))]));
    const { slots } = this.lengths();
    made.push(
      node('Concat', [past, at('scores_step')], [at('scores')], [intAttribute('axis', -1)]),
      node('Softmax', [at('scores')], [at('weights')], [intAttribute('axis', -1)]),
      node('Slice', [at('weights'), this.ints('zero', [0]), slots, this.ints('last_axis', [3])], [at('weights_past')]),
      node('Slice', [at('weights'), slots, this.ints('end', [2 ** 53]), this.ints('last_axis', [3])], [at('weights_step')]),
      node('MatMul', [at('weights_past'), pastValue], [at('out_past')]),
      node('MatMul', [at('weights_step'), newValue], [at('out_step')]),
      node('Add', [at('out_past'), at('out_step')], [at('out_grouped')]),
      node('Reshape', [at('out_grouped'), this.ints(`ungrouped_${heads}`, [0, heads, -1, 0])], [at('out_heads')]),
      node('Transpose', [at('out_heads')], [at('out_bsnd')], toHeadsFirst),
      node('Reshape', [at('out_bsnd'), this.ints(`hidden_${heads * headDim}`, [0, 0, heads * headDim])], [output]),
    );
    return made;
  }
}

const node = (opType: string, inputs: readonly string[], outputs: readonly string[], attributes: Uint8Array[] = [], domain = '') =>
  graphNode(opType, inputs, outputs, { name: `${outputs[0]}/${opType}`, attributes, domain });
