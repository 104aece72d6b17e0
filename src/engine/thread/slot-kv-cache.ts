import * as ort from 'onnxruntime-node';
import { BatchKvCache, KvBufferPool, type KvCache, type KvData, type KvLayout, type KvUpdate } from './kv-cache.js';

/** Slots for a cache that must hold `length` positions: the next power of two, at least 32, so that buffers grow by doubling. */
export const slotCapacity = (length: number) => Math.max(32, 2 ** Math.ceil(Math.log2(length + 1)));

/**
 * The KV cache of a graph that takes its past in slots (see slot-attention.ts): buffers the engine
 * owns, `stride` slots per row and head, rows laid out one after another. Each row holds its own
 * number of positions from slot 0; the attention mask hides the free slots after them. A step
 * writes each row's new keys and values into its next free slots and copies nothing else; the
 * slots double when a row would overflow them. A row that joins is copied into the next free row
 * (the rows' room doubles too), and rows that leave are closed up by moving the rows after them:
 * no row is padded, and no other row is copied when one joins.
 */
export class SlotKvCache implements KvCache {
  private tensors: ort.Tensor[] = [];

  private constructor(
    readonly layout: KvLayout,
    private readonly pool: KvBufferPool,
    /** One per tensor: room for `rowRoom` rows of `stride` slots per head. */
    private buffers: KvData[],
    private lengths: number[],
    private stride: number,
    private rowRoom: number,
  ) {
    this.view();
  }

  /** `batchSize` rows holding nothing yet (the past is never empty: a graph may reshape with a 0 in the shape, which means "keep this dimension"). */
  static empty(layout: KvLayout, batchSize: number, pool: KvBufferPool): SlotKvCache {
    const stride = slotCapacity(0);
    return new SlotKvCache(layout, pool, SlotKvCache.allocate(layout, pool, batchSize, stride), new Array<number>(batchSize).fill(0), stride, batchSize);
  }

  /** Rows holding the positions of `rows[i]`'s blocks in turn (laid out as copyPositions gives them, `blockLength` positions each). */
  static fromBlocks(layout: KvLayout, pool: KvBufferPool, rows: readonly (readonly KvData[])[], blockLength: number): SlotKvCache {
    const length = (rows[0]?.length ?? 0) * blockLength;
    const cache = new SlotKvCache(layout, pool, SlotKvCache.allocate(layout, pool, rows.length, slotCapacity(length)), new Array<number>(rows.length).fill(length), slotCapacity(length), rows.length);
    const { numKvHeads: heads, headDim: dim } = layout;
    cache.buffers.forEach((data, t) => {
      rows.forEach((blocks, row) => {
        blocks.forEach((block, b) => {
          for (let head = 0; head < heads; head++) {
            const from = (t * heads + head) * blockLength * dim;
            data.set(block.subarray(from, from + blockLength * dim), (cache.block(row, head) + b * blockLength) * dim);
          }
        });
      });
    });
    return cache;
  }

  private static allocate(layout: KvLayout, pool: KvBufferPool, rows: number, stride: number): KvData[] {
    const size = Math.max(1, rows) * layout.numKvHeads * stride * layout.headDim;
    return Array.from({ length: layout.tensorCount }, () => pool.take(size));
  }

  get batchSize(): number {
    return this.lengths.length;
  }

  get pastLength(): number {
    return this.stride;
  }

  get pastTensors(): readonly ort.Tensor[] {
    return this.tensors;
  }

  realLength(row: number): number {
    return this.lengths[row]!;
  }

  attentionMask(stepLength: number): BigInt64Array {
    const width = this.stride + stepLength;
    const mask = new BigInt64Array(this.batchSize * width).fill(1n);
    this.lengths.forEach((length, row) => mask.fill(0n, row * width + length, row * width + this.stride));
    return mask;
  }

  advance(update: KvUpdate, stepLength: number, rowLengths?: readonly number[]): void {
    if (!('appended' in update)) throw new Error('a graph that takes its past in slots returns only the new keys and values');
    const added = (row: number) => rowLengths?.[row] ?? stepLength;
    const longest = Math.max(0, ...this.lengths.map((length, row) => length + added(row)));
    if (longest > this.stride) this.regrow(slotCapacity(longest), this.rowRoom);
    const { numKvHeads: heads, headDim: dim } = this.layout;
    update.appended.forEach((tensor, t) => {
      const data = this.buffers[t]!;
      const source = tensor.data as KvData;
      this.lengths.forEach((length, row) => {
        const count = added(row);
        for (let head = 0; head < heads; head++) {
          const from = (row * heads + head) * stepLength * dim;
          data.set(source.subarray(from, from + count * dim), (this.block(row, head) + length) * dim);
        }
      });
    });
    this.lengths = this.lengths.map((length, row) => length + added(row));
  }

  select(rows: readonly number[]): SlotKvCache {
    const length = Math.max(0, ...rows.map((row) => this.lengths[row]!));
    const stride = Math.max(slotCapacity(length), this.stride);
    const copy = new SlotKvCache(this.layout, this.pool, SlotKvCache.allocate(this.layout, this.pool, rows.length, stride), rows.map((row) => this.lengths[row]!), stride, rows.length);
    rows.forEach((row, target) => copy.copyRow(this, row, target));
    return copy;
  }

  retain(rows: readonly number[]): SlotKvCache {
    rows.forEach((row, target) => {
      if (row !== target) this.moveRow(row, target);
    });
    this.lengths = rows.map((row) => this.lengths[row]!);
    this.view();
    return this;
  }

  join(other: KvCache, rows: readonly number[]): SlotKvCache {
    const source = other as SlotKvCache;
    const longest = Math.max(0, ...this.lengths, ...rows.map((row) => source.lengths[row]!));
    const needed = this.batchSize + rows.length;
    const stride = longest >= this.stride ? slotCapacity(longest) : this.stride;
    if (stride !== this.stride || needed > this.rowRoom) this.regrow(stride, Math.max(needed, 2 * this.rowRoom));
    const first = this.batchSize;
    this.lengths = [...this.lengths, ...rows.map((row) => source.lengths[row]!)];
    rows.forEach((row, i) => this.copyRow(source, row, first + i));
    this.view();
    return this;
  }

  copyPositions(row: number, from: number, count: number): KvData {
    const { numKvHeads: heads, headDim: dim, tensorCount } = this.layout;
    const out = this.pool.type === 'float32' ? new Float32Array(tensorCount * heads * count * dim) : new Uint16Array(tensorCount * heads * count * dim);
    this.buffers.forEach((data, t) => {
      for (let head = 0; head < heads; head++) {
        const at = (this.block(row, head) + from) * dim;
        out.set(data.subarray(at, at + count * dim), (t * heads + head) * count * dim);
      }
    });
    return out;
  }

  release(): void {
    for (const buffer of this.buffers) this.pool.give(buffer);
    this.buffers = [];
    this.tensors = [];
  }

  /** Where `row`'s slots for `head` begin, in positions. */
  private block(row: number, head: number): number {
    return (row * this.layout.numKvHeads + head) * this.stride;
  }

  /** The tensors over the rows in use. */
  private view(): void {
    const { numKvHeads: heads, headDim: dim, kvType } = this.layout;
    const size = this.batchSize * heads * this.stride * dim;
    this.tensors = this.buffers.map((buffer) => new ort.Tensor(kvType, buffer.subarray(0, size), [this.batchSize, heads, this.stride, dim]));
  }

  /** New buffers of `stride` slots and room for `rowRoom` rows, holding what the old ones did. */
  private regrow(stride: number, rowRoom: number): void {
    const { numKvHeads: heads, headDim: dim } = this.layout;
    const buffers = SlotKvCache.allocate(this.layout, this.pool, rowRoom, stride);
    this.buffers.forEach((old, t) => {
      const data = buffers[t]!;
      this.lengths.forEach((length, row) => {
        for (let head = 0; head < heads; head++) {
          const from = this.block(row, head) * dim;
          data.set(old.subarray(from, from + length * dim), (row * heads + head) * stride * dim);
        }
      });
      this.pool.give(old);
    });
    this.buffers = buffers;
    this.stride = stride;
    this.rowRoom = rowRoom;
    this.view();
  }

  /** Row `row` of `source` written into row `target` of this cache (whose stride holds it). */
  private copyRow(source: SlotKvCache, row: number, target: number): void {
    const { numKvHeads: heads, headDim: dim } = this.layout;
    const length = source.lengths[row]!;
    source.buffers.forEach((from, t) => {
      for (let head = 0; head < heads; head++) {
        const at = source.block(row, head) * dim;
        this.buffers[t]!.set(from.subarray(at, at + length * dim), this.block(target, head) * dim);
      }
    });
  }

  /** Row `row` moved to row `target` (before it), in place. */
  private moveRow(row: number, target: number): void {
    const { headDim: dim } = this.layout;
    for (const data of this.buffers) data.copyWithin(this.block(target, 0) * dim, this.block(row, 0) * dim, this.block(row + 1, 0) * dim);
  }
}

/** Makes the caches a graph's past takes: in slots, or padded to one length. */
export function kvCaches(layout: KvLayout, pool: KvBufferPool) {
  return {
    empty: (batchSize: number): KvCache => (layout.slots ? SlotKvCache.empty(layout, batchSize, pool) : BatchKvCache.empty(layout, batchSize, pool)),
    fromBlocks: (rows: readonly (readonly KvData[])[], blockLength: number): KvCache =>
      layout.slots ? SlotKvCache.fromBlocks(layout, pool, rows, blockLength) : BatchKvCache.fromBlocks(layout, pool, rows, blockLength),
  };
}
