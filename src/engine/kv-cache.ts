import * as ort from 'onnxruntime-node';
import type { KvDataType } from '../model/session.js';

export interface KvLayout {
  /** Number of past/present tensors: two per layer. */
  tensorCount: number;
  numKvHeads: number;
  headDim: number;
  kvType: KvDataType;
}

type KvData = Float32Array | Uint16Array;

function allocate(type: KvDataType, length: number): KvData {
  return type === 'float32' ? new Float32Array(length) : new Uint16Array(length);
}

/**
 * The key/value cache of every running sequence, as the tensors the decoder takes: one row per
 * sequence, all rows `pastLength` long. Shorter rows are padded on the left; `pads[row]` counts
 * the padding slots, which the attention mask hides.
 */
export class BatchKvCache {
  private constructor(
    readonly layout: KvLayout,
    private tensors: ort.Tensor[],
    private length: number,
    readonly pads: readonly number[],
  ) {}

  static empty(layout: KvLayout, batchSize: number): BatchKvCache {
    const dims = [batchSize, layout.numKvHeads, 0, layout.headDim];
    const tensors = Array.from({ length: layout.tensorCount }, () => new ort.Tensor(layout.kvType, allocate(layout.kvType, 0), dims));
    return new BatchKvCache(layout, tensors, 0, new Array<number>(batchSize).fill(0));
  }

  get batchSize(): number {
    return this.pads.length;
  }

  get pastLength(): number {
    return this.length;
  }

  get pastTensors(): readonly ort.Tensor[] {
    return this.tensors;
  }

  /** Real (unpadded) tokens cached for `row`. */
  realLength(row: number): number {
    return this.length - this.pads[row]!;
  }

  /** Attention mask for a step of `stepLength` new tokens in every row: the padding slots are hidden. */
  attentionMask(stepLength: number): BigInt64Array {
    const width = this.length + stepLength;
    const mask = new BigInt64Array(this.batchSize * width).fill(1n);
    for (let row = 0; row < this.batchSize; row++) {
      mask.fill(0n, row * width, row * width + this.pads[row]!);
    }
    return mask;
  }

  /** Takes the decoder's `present.*` outputs after a step of `stepLength` tokens as the new cache. */
  advance(present: ort.Tensor[], stepLength: number): void {
    this.tensors = present;
    this.length += stepLength;
  }

  /** A cache holding only `rows` (in that order), with padding trimmed to the longest of them. */
  select(rows: readonly number[]): BatchKvCache {
    return BatchKvCache.gather(this.layout, rows.map((row) => ({ cache: this as BatchKvCache, row })));
  }

  /** This cache's rows followed by `otherRows` of `other` (all of them unless given). */
  concat(other: BatchKvCache, otherRows: readonly number[] = other.pads.map((_, row) => row)): BatchKvCache {
    return BatchKvCache.gather(this.layout, [
      ...this.pads.map((_, row) => ({ cache: this as BatchKvCache, row })),
      ...otherRows.map((row) => ({ cache: other, row })),
    ]);
  }

  private static gather(layout: KvLayout, rows: { cache: BatchKvCache; row: number }[]): BatchKvCache {
    const length = Math.max(0, ...rows.map(({ cache, row }) => cache.realLength(row)));
    const { numKvHeads: heads, headDim: dim } = layout;
    const tensors = Array.from({ length: layout.tensorCount }, (_, t) => {
      const data = allocate(layout.kvType, rows.length * heads * length * dim);
      rows.forEach(({ cache, row }, target) => {
        const source = cache.tensors[t]!.data as KvData;
        const real = cache.realLength(row);
        for (let head = 0; head < heads; head++) {
          const from = ((row * heads + head) * cache.length + cache.length - real) * dim;
          const to = ((target * heads + head) * length + length - real) * dim;
          data.set(source.subarray(from, from + real * dim), to);
        }
      });
      return new ort.Tensor(layout.kvType, data, [rows.length, heads, length, dim]);
    });
    const pads = rows.map(({ cache, row }) => length - cache.realLength(row));
    return new BatchKvCache(layout, tensors, length, pads);
  }
}
