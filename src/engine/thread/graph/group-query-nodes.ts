/**
 * The nodes that replace a GroupQueryAttention (see group-query-slots.ts): each layer's, and those
 * the layers share (the masks, the step's lengths), made once.
 */
import { ELEM_FLOAT, ELEM_FLOAT16, ELEM_INT64, floatAttribute, graphNode, initializer, int64Initializer, intAttribute, intsAttribute } from './onnx-proto.js';
import { newKvName } from './new-kv-outputs.js';

export const MICROSOFT = 'com.microsoft';
/** Added to a masked score: far below any real one, and finite in the KV's type (0 × it must stay 0, not NaN). */
const MASKED = { [ELEM_FLOAT]: -1e9, [ELEM_FLOAT16]: -65504 } as const;

/** What one GroupQueryAttention node computes, as its inputs and attributes say. */
export interface Attention {
  node: { inputs: string[]; outputs: string[] };
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

/** The nodes of the edited attention: each layer's, and those all layers share (made once, on first use). */
export class SlotNodes {
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

  /**
   * `x` [B, S, N·D] rotated at position_ids as the kernel's own rotary does it: by the runtime's
   * RotaryEmbedding, which GroupQueryAttention's CPU kernel runs internally.
   */
  private rotate(x: string, heads: number, rotary: NonNullable<Attention['rotary']>, headDim: number, out: string, made: Uint8Array[]): string {
    const attributes = [intAttribute('interleaved', rotary.interleaved ? 1 : 0), intAttribute('num_heads', heads)];
    if (rotary.dim < headDim) attributes.push(intAttribute('rotary_embedding_dim', rotary.dim));
    made.push(node('RotaryEmbedding', [x, 'position_ids', rotary.cos, rotary.sin], [out], attributes, MICROSOFT));
    return out;
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
    if (rotary) {
      query = this.rotate(query, heads, rotary, headDim, at('query_rotated'), made);
      key = this.rotate(key, kvHeads, rotary, headDim, at('key_rotated'), made);
    }
    made.push(
      node('Reshape', [query, this.ints(`heads_${heads}_${headDim}`, [0, 0, heads, headDim])], [at('query_bsnd')]),
      node('Reshape', [key, this.ints(`heads_${kvHeads}_${headDim}`, [0, 0, kvHeads, headDim])], [at('key_bsnd')]),
      node('Reshape', [value, this.ints(`heads_${kvHeads}_${headDim}`, [0, 0, kvHeads, headDim])], [at('value_bsnd')]),
    );
    const toHeadsFirst = [intsAttribute('perm', [0, 2, 1, 3])];
    const newKey = newKvName(presentKey);
    const newValue = newKvName(presentValue);
    made.push(
      node('Transpose', [at('query_bsnd')], [at('query_heads')], toHeadsFirst),
      // The G query heads of each KV head as G × S rows: [B, KV, G·S, D].
      node('Reshape', [at('query_heads'), this.ints(`grouped_${kvHeads}_${headDim}`, [0, kvHeads, -1, headDim])], [at('query_grouped')]),
      node('Transpose', [at('key_bsnd')], [newKey], toHeadsFirst),
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
