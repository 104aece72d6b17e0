import * as ort from 'onnxruntime-node';
import type { KvDataType } from './graph/session.js';

export interface KvLayout {
  /** Number of past/present tensors: two per layer. */
  tensorCount: number;
  numKvHeads: number;
  headDim: number;
  kvType: KvDataType;
  /** The graph takes its past in slots, with room to spare, and returns only the new positions (see slot-attention.ts and slot-kv-cache.ts). */
  slots?: boolean;
}

export type KvData = Float32Array | Uint16Array;

/**
 * What a decoder step adds to the cache: its whole `present.*` tensors, past included, or only
 * the keys and values of the step's own positions ([batch, heads, step, dim] each).
 */
export type KvUpdate = { present: ort.Tensor[] } | { appended: ort.Tensor[] };

/**
 * The keys and values of the sequences a decoder step runs, one row each, as the tensors the
 * decoder takes. BatchKvCache holds them padded to one length; SlotKvCache in slots of buffers it
 * writes in place.
 */
export interface KvCache {
  readonly batchSize: number;
  /** Positions of the past input along its sequence axis: the attention mask is this plus the step's own wide. */
  readonly pastLength: number;
  readonly pastTensors: readonly ort.Tensor[];
  /** Tokens cached for `row`. */
  realLength(row: number): number;
  /** Attention mask for a step of `stepLength` new tokens in every row. */
  attentionMask(stepLength: number): BigInt64Array;
  /**
   * Takes in what the decoder returned for a step of `stepLength` tokens in every row, of which
   * the first `rowLengths[row]` are real and the rest padding (a cache in slots only; omitted: all
   * are real).
   */
  advance(update: KvUpdate, stepLength: number, rowLengths?: readonly number[]): void;
  /** A new cache holding only `rows` (in that order); this one is left as it is. */
  select(rows: readonly number[]): KvCache;
  /** This cache narrowed to `rows` (ascending); this object must not be used after, only the one returned. */
  retain(rows: readonly number[]): KvCache;
  /** This cache's rows followed by `rows` of `other`; this object must not be used after, only the one returned. */
  join(other: KvCache, rows: readonly number[]): KvCache;
  /**
   * The keys and values of `row` at positions `from` to `from + count` of its real tokens, every
   * tensor and head, laid out [tensor][head][position][dim] (as a prefix-cache block).
   */
  copyPositions(row: number, from: number, count: number): KvData;
  /** Gives the cache's buffers back to its pool; the cache must not be used after. */
  release(): void;
}

/** Positions a buffer is made for when it must hold `length`, so that it serves many steps. */
const headroom = (length: number) => length + Math.max(64, length >> 2);

function allocate(type: KvDataType, length: number): KvData {
  return type === 'float32' ? new Float32Array(length) : new Uint16Array(length);
}

/** `length` rounded up to a quarter power of two: few sizes of buffer, so that they fit one another's uses. */
const sizeClass = (length: number) => (length <= 64 ? length : Math.ceil(2 ** (Math.ceil(Math.log2(length) * 4) / 4)));

/**
 * Cache buffers kept for reuse. Fresh memory is slow to fill: the kernel maps it a page at a time
 * on first touch (measured here: ~10 µs per 4 KiB page, 0.4 s for the 190 MB of a batch-16 cache of
 * GPT-2 small), so buffers that a cache gives up when rows join or leave serve the next cache.
 */
export class KvBufferPool {
  private readonly free: KvData[] = [];
  private freeLength = 0;

  /** `maxFreeLength`: most elements kept free; beyond it the smallest buffers are let go. */
  constructor(
    readonly type: KvDataType,
    private readonly maxFreeLength = Number.POSITIVE_INFINITY,
  ) {}

  /** Elements held by free buffers. */
  get pooledLength(): number {
    return this.freeLength;
  }

  /** The smallest free buffer of at least `needed` elements, or a new one of `wanted`. */
  take(needed: number, wanted = needed): KvData {
    if (wanted === 0) return allocate(this.type, 0);
    let best = -1;
    this.free.forEach((buffer, i) => {
      if (buffer.length >= needed && (best === -1 || buffer.length < this.free[best]!.length)) best = i;
    });
    if (best === -1) return allocate(this.type, sizeClass(Math.max(needed, wanted)));
    const [buffer] = this.free.splice(best, 1);
    this.freeLength -= buffer!.length;
    return buffer!;
  }

  give(buffer: KvData | undefined): void {
    if (!buffer || buffer.length === 0) return;
    this.free.push(buffer);
    this.freeLength += buffer.length;
    while (this.freeLength > this.maxFreeLength) {
      const smallest = this.free.reduce((min, other, i) => (other.length < this.free[min]!.length ? i : min), 0);
      this.freeLength -= this.free.splice(smallest, 1)[0]!.length;
    }
  }
}

/**
 * The key/value cache of every running sequence, as the tensors the decoder takes: one row per
 * sequence, all rows `pastLength` long. Shorter rows are padded on the left; `pads[row]` counts
 * the padding slots, which the attention mask hides.
 */
export class BatchKvCache implements KvCache {
  /** Buffers of this cache's own that the current tensors' data are views of (by tensor; none where the decoder's output is used). */
  private owned: (KvData | undefined)[] = [];
  /** Buffers of the step before, which the next append writes into. */
  private spare: (KvData | undefined)[] = [];

  private constructor(
    readonly layout: KvLayout,
    private readonly pool: KvBufferPool,
    private tensors: ort.Tensor[],
    private length: number,
    readonly pads: readonly number[],
  ) {}

  static empty(layout: KvLayout, batchSize: number, pool = new KvBufferPool(layout.kvType)): BatchKvCache {
    const dims = [batchSize, layout.numKvHeads, 0, layout.headDim];
    const tensors = Array.from({ length: layout.tensorCount }, () => new ort.Tensor(layout.kvType, allocate(layout.kvType, 0), dims));
    return new BatchKvCache(layout, pool, tensors, 0, new Array<number>(batchSize).fill(0));
  }

  /** Gives this cache's buffers back to its pool; the cache must not be used after. */
  release(): void {
    for (const buffer of [...this.owned, ...this.spare]) this.pool.give(buffer);
    this.owned = [];
    this.spare = [];
    this.tensors = [];
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

  /** Takes in what the decoder returned for a step of `stepLength` tokens in every row. */
  advance(update: KvUpdate, stepLength: number, rowLengths?: readonly number[]): void {
    if (rowLengths?.some((length) => length !== stepLength)) throw new Error('a padded cache takes steps of one length in every row');
    if ('present' in update) {
      this.release();
      this.tensors = update.present;
    } else {
      this.tensors = update.appended.map((added, t) => this.append(t, added.data as KvData, stepLength));
    }
    this.length += stepLength;
  }

  /**
   * Tensor `t` with `added` appended to every row and head: copied into the buffer of the step
   * before (the decoder has read it by now), so that steps do not allocate.
   */
  private append(t: number, added: KvData, stepLength: number): ort.Tensor {
    const { numKvHeads: heads, headDim: dim, kvType } = this.layout;
    const past = this.length;
    const total = past + stepLength;
    const blocks = this.batchSize * heads;
    let buffer = this.spare[t];
    if (!buffer || buffer.length < blocks * total * dim) {
      this.pool.give(buffer);
      buffer = this.pool.take(blocks * total * dim, blocks * headroom(total) * dim);
    }
    const data = buffer.subarray(0, blocks * total * dim);
    const previous = this.tensors[t]!.data as KvData;
    for (let block = 0; block < blocks; block++) {
      data.set(previous.subarray(block * past * dim, (block + 1) * past * dim), block * total * dim);
      data.set(added.subarray(block * stepLength * dim, (block + 1) * stepLength * dim), (block * total + past) * dim);
    }
    this.spare[t] = this.owned[t];
    this.owned[t] = buffer;
    return new ort.Tensor(kvType, data, [this.batchSize, heads, total, dim]);
  }

  copyPositions(row: number, from: number, count: number): KvData {
    const { numKvHeads: heads, headDim: dim, tensorCount, kvType } = this.layout;
    const out = allocate(kvType, tensorCount * heads * count * dim);
    const start = this.pads[row]! + from;
    for (let t = 0; t < tensorCount; t++) {
      const source = this.tensors[t]!.data as KvData;
      for (let head = 0; head < heads; head++) {
        const at = ((row * heads + head) * this.length + start) * dim;
        out.set(source.subarray(at, at + count * dim), (t * heads + head) * count * dim);
      }
    }
    return out;
  }

  /**
   * A cache whose rows hold the positions of `rows[i]`'s blocks in turn (each laid out as
   * copyPositions gives them, `blockLength` positions each); every row has as many blocks.
   */
  static fromBlocks(layout: KvLayout, pool: KvBufferPool, rows: readonly (readonly KvData[])[], blockLength: number): BatchKvCache {
    const { numKvHeads: heads, headDim: dim, tensorCount, kvType } = layout;
    const length = (rows[0]?.length ?? 0) * blockLength;
    const owned: KvData[] = [];
    const tensors = Array.from({ length: tensorCount }, (_, t) => {
      const size = rows.length * heads * length * dim;
      const buffer = pool.take(size, rows.length * heads * headroom(length) * dim);
      owned.push(buffer);
      const data = buffer.subarray(0, size);
      rows.forEach((blocks, row) => {
        blocks.forEach((block, b) => {
          for (let head = 0; head < heads; head++) {
            const from = (t * heads + head) * blockLength * dim;
            data.set(block.subarray(from, from + blockLength * dim), ((row * heads + head) * length + b * blockLength) * dim);
          }
        });
      });
      return new ort.Tensor(kvType, data, [rows.length, heads, length, dim]);
    });
    const cache = new BatchKvCache(layout, pool, tensors, length, new Array<number>(rows.length).fill(0));
    cache.owned = owned;
    return cache;
  }

  retain(rows: readonly number[]): BatchKvCache {
    const kept = this.select(rows);
    this.release();
    return kept;
  }

  join(other: KvCache, rows: readonly number[]): BatchKvCache {
    const joined = this.concat(other as BatchKvCache, rows);
    this.release();
    return joined;
  }

  /** A cache holding only `rows` (in that order), with padding trimmed to the longest of them. */
  select(rows: readonly number[]): BatchKvCache {
    return BatchKvCache.gather(this.layout, this.pool, rows.map((row) => ({ cache: this as BatchKvCache, row })));
  }

  /** This cache's rows followed by `otherRows` of `other` (all of them unless given). */
  concat(other: BatchKvCache, otherRows: readonly number[] = other.pads.map((_, row) => row)): BatchKvCache {
    return BatchKvCache.gather(this.layout, this.pool, [
      ...this.pads.map((_, row) => ({ cache: this as BatchKvCache, row })),
      ...otherRows.map((row) => ({ cache: other, row })),
    ]);
  }

  private static gather(layout: KvLayout, pool: KvBufferPool, rows: { cache: BatchKvCache; row: number }[]): BatchKvCache {
    const length = Math.max(0, ...rows.map(({ cache, row }) => cache.realLength(row)));
    const { numKvHeads: heads, headDim: dim } = layout;
    const owned: KvData[] = [];
    const tensors = Array.from({ length: layout.tensorCount }, (_, t) => {
      const size = rows.length * heads * length * dim;
      const buffer = pool.take(size, rows.length * heads * headroom(length) * dim);
      owned.push(buffer);
      const data = buffer.subarray(0, size);
      rows.forEach(({ cache, row }, target) => {
        const source = cache.tensors[t]!.data as KvData;
        const real = cache.realLength(row);
        for (let head = 0; head < heads; head++) {
          const from = ((row * heads + head) * cache.length + cache.length - real) * dim;
          const to = ((target * heads + head) * length + length - real) * dim;
          // A reused buffer holds old values where the padding goes.
          data.fill(0, (target * heads + head) * length * dim, to);
          data.set(source.subarray(from, from + real * dim), to);
        }
      });
      return new ort.Tensor(layout.kvType, data, [rows.length, heads, length, dim]);
    });
    const pads = rows.map(({ cache, row }) => length - cache.realLength(row));
    const gathered = new BatchKvCache(layout, pool, tensors, length, pads);
    gathered.owned = owned;
    return gathered;
  }
}
