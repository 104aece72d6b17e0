import * as ort from 'onnxruntime-node';
import { LOGITS_POSITIONS } from './graph/logits-positions.js';
import type { DecoderSignature } from './graph/session.js';
import type { KvCache, KvUpdate } from './kv-cache.js';
import { float16ToNumber } from './float16.js';

export interface DecoderStep {
  /** [batch, stepLength] token ids, row-major. */
  inputIds: BigInt64Array;
  stepLength: number;
  cache: KvCache;
  /**
   * Real tokens of each row, the first of its `stepLength`; the rest are padding after them, which
   * no real token attends to (the step is causal). Omitted: every row is `stepLength` long.
   */
  rowLengths?: readonly number[];
  /** Logits of every position are wanted, not only of the last (for prompt log-probabilities). */
  allPositions?: boolean;
}

export interface DecoderOutput {
  /** Logits of the last real position of each row. */
  logits: Float32Array[];
  /** Logits of `row` at `position` of the step (with `allPositions`: for prompt log-probabilities). */
  logitsAt(row: number, position: number): Float32Array;
  kv: KvUpdate;
}

/** One forward pass of an ONNX decoder over a batch, feeding and returning the KV cache. */
export class DecoderRunner {
  constructor(
    private readonly session: ort.InferenceSession,
    readonly signature: DecoderSignature,
  ) {}

  async run(step: DecoderStep): Promise<DecoderOutput> {
    const { cache, stepLength } = step;
    const batch = cache.batchSize;
    const lastPosition = (row: number) => (step.rowLengths?.[row] ?? stepLength) - 1;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', step.inputIds, [batch, stepLength]),
      attention_mask: new ort.Tensor('int64', cache.attentionMask(stepLength), [batch, cache.pastLength + stepLength]),
    };
    if (this.signature.hasPositionIds) {
      feeds.position_ids = new ort.Tensor('int64', this.positionIds(step, lastPosition), [batch, stepLength]);
    }
    const lastPositions = Array.from({ length: batch }, (_, row) => lastPosition(row));
    const wanted = step.allPositions ? Array.from({ length: stepLength }, (_, i) => i) : [...new Set(lastPositions)].sort((a, b) => a - b);
    if (this.signature.hasLogitsPositions) {
      feeds[LOGITS_POSITIONS] = new ort.Tensor('int64', BigInt64Array.from(wanted, BigInt), [wanted.length]);
    }
    if (this.signature.logitsToKeep) {
      // The graph computes logits for the last that many positions of the step.
      feeds[this.signature.logitsToKeep] = new ort.Tensor('int64', BigInt64Array.of(BigInt(stepLength - wanted[0]!)), []);
    }
    if (this.signature.hasUseCacheBranch) {
      feeds.use_cache_branch = new ort.Tensor('bool', new Uint8Array([cache.pastLength > 0 ? 1 : 0]), [1]);
    }
    this.signature.pastNames.forEach((name, i) => {
      feeds[name] = cache.pastTensors[i]!;
    });
    const { newKvNames, presentNames } = this.signature;
    const outputs = await this.session.run(feeds, ['logits', ...(newKvNames ?? presentNames)]);
    const logits = outputs.logits!;
    const [, kept, vocab] = logits.dims as [number, number, number];
    const data = logits.data as Float32Array | Uint16Array;
    // The graph computed the `wanted` positions (logits_positions) or the last `kept` of the step.
    const index = this.signature.hasLogitsPositions ? (position: number) => wanted.indexOf(position) : (position: number) => position - (stepLength - kept);
    const logitsAt = (row: number, position: number) => {
      const at = index(position);
      if (at < 0 || at >= kept) throw new Error(`logits of position ${position} were not computed`);
      return logitsRow(data, (row * kept + at) * vocab, vocab, logits.type);
    };
    return {
      logits: lastPositions.map((position, row) => logitsAt(row, position)),
      logitsAt,
      kv: newKvNames ? { appended: newKvNames.map((name) => outputs[name]!) } : { present: presentNames.map((name) => outputs[name]!) },
    };
  }

  /**
   * Positions count real tokens only, so a padded row sees the same positions as it would alone;
   * a row's padding after its real tokens repeats its last position.
   */
  private positionIds(step: DecoderStep, lastPosition: (row: number) => number): BigInt64Array {
    const { cache, stepLength } = step;
    const ids = new BigInt64Array(cache.batchSize * stepLength);
    for (let row = 0; row < cache.batchSize; row++) {
      const start = cache.realLength(row);
      const last = lastPosition(row);
      for (let i = 0; i < stepLength; i++) ids[row * stepLength + i] = BigInt(start + Math.min(i, last));
    }
    return ids;
  }
}

function logitsRow(data: Float32Array | Uint16Array, offset: number, vocab: number, type: string): Float32Array {
  if (type === 'float32') return (data as Float32Array).slice(offset, offset + vocab);
  const row = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) row[i] = float16ToNumber(data[offset + i]!);
  return row;
}
