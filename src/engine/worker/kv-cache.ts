import * as ort from 'onnxruntime-node';
import type { KvDataType } from '../../model/session.js';

export interface KvLayout {
  /** Number of past/present tensors: two per layer. */
  tensorCount: number;
  numKvHeads: number;
  headDim: number;
  kvType: KvDataType;
  /** The graph takes its past in slots, with room to spare, and returns only the new positions (see slot-attention.ts). */
  slots?: boolean;
}

export type KvData = Float32Array | Uint16Array;

/**
 * What a decoder step adds to the cache: its whole `present.*` tensors, past included, or only
 * the keys and values of the step's own positions ([batch, heads, step, dim] each).
 */
export type KvUpdate = { present: ort.Tensor[] } | { appended: ort.Tensor[] };

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
 * sequence, all rows `length` positions long. Shorter rows are padded on the left; `pads[row]`
 * counts the padding slots, which the attention mask hides.
 *
 * For a graph that takes its past in slots (`layout.slots`, see slot-attention.ts) the tensors
 * have room for more positions than they hold (`stride` per row and head, grown by doubling): a
 * step writes its new keys and values into the next free slots and copies nothing else, and the
 * mask hides the free slots too. Otherwise the tensors hold exactly `length` positions.
 */
export class BatchKvCache {
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
    /** Positions the tensors have room for per row and head. */
    private stride = length,
  ) {}

  static empty(layout: KvLayout, batchSize: number, pool = new KvBufferPool(layout.kvType)): BatchKvCache {
    // Slots are never an empty past: a graph may reshape with a 0 in the shape, which means "keep this dimension".
    if (layout.slots) return BatchKvCache.gather(layout, pool, [], batchSize);
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

  /** Positions of the past the decoder is given: those held, or with slots, the room for them. */
  get pastLength(): number {
    return this.stride;
  }

  get pastTensors(): readonly ort.Tensor[] {
    return this.tensors;
  }

  /** Real (unpadded) tokens cached for `row`. */
  realLength(row: number): number {
    return this.length - this.pads[row]!;
  }

  /** Attention mask for a step of `stepLength` new tokens in every row: the padding slots (and free ones) are hidden. */
  attentionMask(stepLength: number): BigInt64Array {
    const width = this.stride + stepLength;
    const mask = new BigInt64Array(this.batchSize * width).fill(1n);
    for (let row = 0; row < this.batchSize; row++) {
      mask.fill(0n, row * width, row * width + this.pads[row]!);
      mask.fill(0n, row * width + this.length, row * width + this.stride);
    }
    return mask;
  }

  /** Takes in what the decoder returned for a step of `stepLength` tokens in every row. */
  advance(update: KvUpdate, stepLength: number): void {
    if ('present' in update) {
      this.release();
      this.tensors = update.present;
      this.stride = this.length + stepLength;
    } else if (this.layout.slots) {
      this.writeSlots(update.appended, stepLength);
    } else {
      this.tensors = update.appended.map((added, t) => this.append(t, added.data as KvData, stepLength));
      this.stride = this.length + stepLength;
    }
    this.length += stepLength;
  }

  /** With slots: `added` ([batch, heads, step, dim] per tensor) written into the free slots after `length`, the buffers grown first if they are full. */
  private writeSlots(added: readonly ort.Tensor[], stepLength: number): void {
    const { numKvHeads: heads, headDim: dim } = this.layout;
    if (this.length + stepLength > this.stride) this.regrow(slotCapacity(this.length + stepLength));
    const blocks = this.batchSize * heads;
    added.forEach((tensor, t) => {
      const data = this.tensors[t]!.data as KvData;
      const source = tensor.data as KvData;
      for (let block = 0; block < blocks; block++) {
        data.set(source.subarray(block * stepLength * dim, (block + 1) * stepLength * dim), (block * this.stride + this.length) * dim);
      }
    });
  }

  /** With slots: new buffers of `stride` positions per row and head, holding what the old ones did. */
  private regrow(stride: number): void {
    const { numKvHeads: heads, headDim: dim, kvType } = this.layout;
    const blocks = this.batchSize * heads;
    this.tensors = this.tensors.map((tensor, t) => {
      const old = tensor.data as KvData;
      const buffer = this.pool.take(blocks * stride * dim);
      const data = buffer.subarray(0, blocks * stride * dim);
      for (let block = 0; block < blocks; block++) data.set(old.subarray(block * this.stride * dim, (block * this.stride + this.length) * dim), block * stride * dim);
      this.pool.give(this.owned[t]);
      this.owned[t] = buffer;
      return new ort.Tensor(kvType, data, [this.batchSize, heads, stride, dim]);
    });
    this.stride = stride;
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

  /**
   * The keys and values of `row` at positions `from` to `from + count` of its real tokens, every
   * tensor and head, laid out [tensor][head][position][dim] (as a prefix-cache block).
   */
  copyPositions(row: number, from: number, count: number): KvData {
    const { numKvHeads: heads, headDim: dim, tensorCount, kvType } = this.layout;
    const out = allocate(kvType, tensorCount * heads * count * dim);
    const start = this.pads[row]! + from;
    for (let t = 0; t < tensorCount; t++) {
      const source = this.tensors[t]!.data as KvData;
      for (let head = 0; head < heads; head++) {
        const at = ((row * heads + head) * this.stride + start) * dim;
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
    const stride = layout.slots ? slotCapacity(length) : length;
    const owned: KvData[] = [];
    const tensors = Array.from({ length: tensorCount }, (_, t) => {
      const size = rows.length * heads * stride * dim;
      const buffer = pool.take(size, layout.slots ? size : rows.length * heads * headroom(stride) * dim);
      owned.push(buffer);
      const data = buffer.subarray(0, size);
      rows.forEach((blocks, row) => {
        blocks.forEach((block, b) => {
          for (let head = 0; head < heads; head++) {
            const from = (t * heads + head) * blockLength * dim;
            data.set(block.subarray(from, from + blockLength * dim), ((row * heads + head) * stride + b * blockLength) * dim);
          }
        });
      });
      return new ort.Tensor(kvType, data, [rows.length, heads, stride, dim]);
    });
    const cache = new BatchKvCache(layout, pool, tensors, length, new Array<number>(rows.length).fill(0), stride);
    cache.owned = owned;
    return cache;
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

  /** `rows` of their caches, in that order, then `emptyRows` rows holding nothing. */
  private static gather(layout: KvLayout, pool: KvBufferPool, rows: { cache: BatchKvCache; row: number }[], emptyRows = 0): BatchKvCache {
    const length = Math.max(0, ...rows.map(({ cache, row }) => cache.realLength(row)));
    const batchSize = rows.length + emptyRows;
    const stride = layout.slots ? slotCapacity(length) : length;
    const { numKvHeads: heads, headDim: dim } = layout;
    const owned: KvData[] = [];
    const tensors = Array.from({ length: layout.tensorCount }, (_, t) => {
      const size = batchSize * heads * stride * dim;
      const buffer = pool.take(size, layout.slots ? size : batchSize * heads * headroom(stride) * dim);
      owned.push(buffer);
      const data = buffer.subarray(0, size);
      rows.forEach(({ cache, row }, target) => {
        const source = cache.tensors[t]!.data as KvData;
        const real = cache.realLength(row);
        for (let head = 0; head < heads; head++) {
          const from = ((row * heads + head) * cache.stride + cache.length - real) * dim;
          const to = ((target * heads + head) * stride + length - real) * dim;
          // A reused buffer holds old values where the padding goes.
          data.fill(0, (target * heads + head) * stride * dim, to);
          data.set(source.subarray(from, from + real * dim), to);
        }
      });
      return new ort.Tensor(layout.kvType, data, [batchSize, heads, stride, dim]);
    });
    const pads = [...rows.map(({ cache, row }) => length - cache.realLength(row)), ...new Array<number>(emptyRows).fill(0)];
    const gathered = new BatchKvCache(layout, pool, tensors, length, pads, stride);
    gathered.owned = owned;
    return gathered;
  }
}

/** Slots for a cache that must hold `length` positions: the next power of two, at least 32, so that buffers grow by doubling. */
export const slotCapacity = (length: number) => Math.max(32, 2 ** Math.ceil(Math.log2(length + 1)));
