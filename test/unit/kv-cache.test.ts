import * as ort from 'onnxruntime-node';
import { float16ToNumber } from '../../src/engine/thread/float16.js';
import { BatchKvCache, KvBufferPool, type KvCache, type KvLayout } from '../../src/engine/thread/kv-cache.js';
import { SlotKvCache } from '../../src/engine/thread/slot-kv-cache.js';

const HEADS = 2;
const DIM = 3;
const layout: KvLayout = { tensorCount: 2, numKvHeads: HEADS, headDim: DIM, kvType: 'float32' };

/**
 * A recognisable, never-zero value for element [row, head, pos, d] of cache tensor `t` of the
 * cache tagged `tag`: padding slots (zeros) cannot be mistaken for it.
 */
const code = (tag: number, t: number, row: number, head: number, pos: number, d: number) =>
  tag * 100_000 + t * 10_000 + row * 1000 + head * 100 + pos * 10 + d + 1;

/** `present.*` tensors of a step over `batch` rows, `length` long in all, values from `code`. */
function present(tag: number, batch: number, length: number, kvLayout: KvLayout = layout): ort.Tensor[] {
  return Array.from({ length: kvLayout.tensorCount }, (_, t) => {
    const size = batch * HEADS * length * DIM;
    const data = kvLayout.kvType === 'float32' ? new Float32Array(size) : new Uint16Array(size);
    for (let row = 0; row < batch; row++)
      for (let head = 0; head < HEADS; head++)
        for (let pos = 0; pos < length; pos++)
          for (let d = 0; d < DIM; d++) {
            const value = code(tag, t, row, head, pos, d);
            data[((row * HEADS + head) * length + pos) * DIM + d] = kvLayout.kvType === 'float32' ? value : value % 0x7c00;
          }
    return new ort.Tensor(kvLayout.kvType, data, [batch, HEADS, length, DIM]);
  });
}

/** A cache of `batch` rows that went through one step of `length` tokens. */
function filled(tag: number, batch: number, length: number, pool?: KvBufferPool): BatchKvCache {
  const cache = BatchKvCache.empty(layout, batch, pool);
  cache.advance({ present: present(tag, batch, length) }, length);
  return cache;
}

/** Element [row, head, pos, d] of cache tensor `t`. */
function at(cache: Pick<KvCache, "pastTensors">, t: number, row: number, head: number, pos: number, d: number): number {
  const tensor = cache.pastTensors[t]!;
  const [, heads, length, dim] = tensor.dims as number[];
  return (tensor.data as Float32Array)[((row * heads! + head) * length! + pos) * dim! + d]!;
}

/** For every tensor, head and dim: row `row` of `cache` at `pos` holds the source's value (or zero for null). */
function expectRow(cache: BatchKvCache, row: number, expected: (t: number, head: number, pos: number, d: number) => number | null) {
  for (let t = 0; t < layout.tensorCount; t++)
    for (let head = 0; head < HEADS; head++)
      for (let pos = 0; pos < cache.pastLength; pos++)
        for (let d = 0; d < DIM; d++) {
          const want = expected(t, head, pos, d);
          expect({ t, row, head, pos, d, value: at(cache, t, row, head, pos, d) }).toEqual({ t, row, head, pos, d, value: want ?? 0 });
        }
}

/** The mask as one array of 0/1 per row. */
function maskRows(mask: BigInt64Array, batch: number): number[][] {
  const width = mask.length / batch;
  return Array.from({ length: batch }, (_, row) => Array.from(mask.subarray(row * width, (row + 1) * width), Number));
}

describe('BatchKvCache', () => {
  describe('empty()', () => {
    it('holds no tokens and one zero-length tensor per past input, shaped [batch, heads, 0, dim]', () => {
      const cache = BatchKvCache.empty(layout, 3);
      expect(cache.batchSize).toBe(3);
      expect(cache.pastLength).toBe(0);
      expect(cache.pads).toEqual([0, 0, 0]);
      expect(cache.pastTensors).toHaveLength(2);
      for (const tensor of cache.pastTensors) {
        expect(tensor.dims).toEqual([3, HEADS, 0, DIM]);
        expect(tensor.type).toBe('float32');
      }
    });

    it('uses float16 tensors for a float16 layout', () => {
      const cache = BatchKvCache.empty({ ...layout, kvType: 'float16' }, 1);
      expect(cache.pastTensors[0]!.type).toBe('float16');
    });

    it('masks in every token of the first step', () => {
      expect(maskRows(BatchKvCache.empty(layout, 2).attentionMask(3), 2)).toEqual([
        [1, 1, 1],
        [1, 1, 1],
      ]);
    });
  });

  describe('advance()', () => {
    it('takes the present tensors as the cache and adds the step length to every row', () => {
      const cache = BatchKvCache.empty(layout, 2);
      const first = present(0, 2, 4);
      cache.advance({ present: first }, 4);
      expect(cache.pastLength).toBe(4);
      first.forEach((tensor, t) => expect(cache.pastTensors[t]).toBe(tensor));
      const second = present(1, 2, 5);
      cache.advance({ present: second }, 1);
      expect(cache.pastLength).toBe(5);
      expect(cache.pastTensors[1]).toBe(second[1]);
      expect([cache.realLength(0), cache.realLength(1)]).toEqual([5, 5]);
    });

    it("appends a step's new keys and values to every row and head, as the graph's Concat would", () => {
      const cache = filled(0, 2, 4);
      cache.advance({ appended: present(1, 2, 1) }, 1);
      cache.advance({ appended: present(2, 2, 3) }, 3);
      expect(cache.pastLength).toBe(8);
      for (const row of [0, 1]) {
        expectRow(cache, row, (t, head, pos, d) =>
          pos < 4 ? code(0, t, row, head, pos, d) : pos < 5 ? code(1, t, row, head, 0, d) : code(2, t, row, head, pos - 5, d),
        );
      }
    });

    it('keeps the padding of shorter rows in front when it appends', () => {
      const cache = filled(1, 1, 2).concat(filled(2, 1, 4));
      cache.advance({ appended: present(3, 2, 1) }, 1);
      expect(cache.pads).toEqual([2, 0]);
      expectRow(cache, 0, (t, head, pos, d) => (pos < 2 ? null : pos < 4 ? code(1, t, 0, head, pos - 2, d) : code(3, t, 0, head, 0, d)));
      expectRow(cache, 1, (t, head, pos, d) => (pos < 4 ? code(2, t, 0, head, pos, d) : code(3, t, 1, head, 0, d)));
      expect(maskRows(cache.attentionMask(1), 2)).toEqual([
        [0, 0, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
      ]);
    });

    it('alternates between two buffers from step to step, and grows them when a step outgrows them', () => {
      const cache = filled(0, 1, 1);
      const buffers: ArrayBufferLike[] = [];
      for (let step = 1; step <= 150; step++) {
        cache.advance({ appended: present(step, 1, 1) }, 1);
        buffers.push((cache.pastTensors[0]!.data as Float32Array).buffer);
      }
      expect(buffers[2]).toBe(buffers[0]);
      expect(buffers[3]).toBe(buffers[1]);
      expect(buffers[2]).not.toBe(buffers[1]);
      expect(new Set(buffers).size).toBeLessThan(10);
      expectRow(cache, 0, (t, head, pos, d) => code(pos, t, 0, head, 0, d));
    });
  });

  describe('concat()', () => {
    it('left-pads the rows of the shorter cache to the longer one', () => {
      const short = filled(1, 1, 2);
      const long = filled(2, 2, 4);
      const joined = short.concat(long);
      expect(joined.batchSize).toBe(3);
      expect(joined.pastLength).toBe(4);
      expect(joined.pads).toEqual([2, 0, 0]);
      for (const tensor of joined.pastTensors) expect(tensor.dims).toEqual([3, HEADS, 4, DIM]);
      expectRow(joined, 0, (t, head, pos, d) => (pos < 2 ? null : code(1, t, 0, head, pos - 2, d)));
      expectRow(joined, 1, (t, head, pos, d) => code(2, t, 0, head, pos, d));
      expectRow(joined, 2, (t, head, pos, d) => code(2, t, 1, head, pos, d));
    });

    it("keeps this cache's rows first whichever is longer", () => {
      const joined = filled(2, 1, 4).concat(filled(1, 1, 2));
      expect(joined.pads).toEqual([0, 2]);
      expectRow(joined, 0, (t, head, pos, d) => code(2, t, 0, head, pos, d));
      expectRow(joined, 1, (t, head, pos, d) => (pos < 2 ? null : code(1, t, 0, head, pos - 2, d)));
    });

    it('preserves the real length of every row, including rows that were already padded', () => {
      const padded = filled(1, 1, 1).concat(filled(2, 1, 3)); // pads [2, 0]
      const joined = padded.concat(filled(3, 1, 5));
      expect(joined.pastLength).toBe(5);
      expect(joined.pads).toEqual([4, 2, 0]);
      expect([0, 1, 2].map((row) => joined.realLength(row))).toEqual([1, 3, 5]);
      expectRow(joined, 0, (t, head, pos, d) => (pos < 4 ? null : code(1, t, 0, head, 0, d)));
      expectRow(joined, 1, (t, head, pos, d) => (pos < 2 ? null : code(2, t, 0, head, pos - 2, d)));
    });

    it("takes only the given rows of the other cache, in the order given", () => {
      const joined = filled(1, 1, 2).concat(filled(2, 3, 3), [2, 0]);
      expect(joined.batchSize).toBe(3);
      expect(joined.pads).toEqual([1, 0, 0]);
      expectRow(joined, 0, (t, head, pos, d) => (pos < 1 ? null : code(1, t, 0, head, pos - 1, d)));
      expectRow(joined, 1, (t, head, pos, d) => code(2, t, 2, head, pos, d));
      expectRow(joined, 2, (t, head, pos, d) => code(2, t, 0, head, pos, d));
    });

    it('leaves the caches it joins unchanged', () => {
      const short = filled(1, 1, 2);
      const long = filled(2, 1, 4);
      short.concat(long);
      expect(short.pastLength).toBe(2);
      expect(short.pads).toEqual([0]);
      expectRow(short, 0, (t, head, pos, d) => code(1, t, 0, head, pos, d));
    });
  });

  describe('attentionMask()', () => {
    it('hides exactly the padding slots of each row and shows the new step', () => {
      const cache = filled(1, 1, 2).concat(filled(2, 1, 5)).concat(filled(3, 1, 4)); // pads [3, 0, 1]
      expect(cache.pads).toEqual([3, 0, 1]);
      expect(maskRows(cache.attentionMask(1), 3)).toEqual([
        [0, 0, 0, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
        [0, 1, 1, 1, 1, 1],
      ]);
    });

    it('is as wide as the cache plus the step', () => {
      const cache = filled(1, 1, 2).concat(filled(2, 1, 3)); // pads [1, 0]
      expect(maskRows(cache.attentionMask(4), 2)).toEqual([
        [0, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1],
      ]);
    });

    it('keeps hiding the padding after later steps', () => {
      const cache = filled(1, 1, 1).concat(filled(2, 1, 3)); // pads [2, 0]
      cache.advance({ present: present(9, 2, 4) }, 1);
      expect(cache.pastLength).toBe(4);
      expect([cache.realLength(0), cache.realLength(1)]).toEqual([2, 4]);
      expect(maskRows(cache.attentionMask(1), 2)).toEqual([
        [0, 0, 1, 1, 1],
        [1, 1, 1, 1, 1],
      ]);
    });
  });

  describe('select()', () => {
    const joined = () => filled(1, 1, 2).concat(filled(2, 2, 4)); // pads [2, 0, 0]

    it('keeps only the chosen rows, in the order given', () => {
      const selected = joined().select([2, 1]);
      expect(selected.batchSize).toBe(2);
      expect(selected.pastLength).toBe(4);
      expect(selected.pads).toEqual([0, 0]);
      expectRow(selected, 0, (t, head, pos, d) => code(2, t, 1, head, pos, d));
      expectRow(selected, 1, (t, head, pos, d) => code(2, t, 0, head, pos, d));
    });

    it('trims the padding no kept row needs', () => {
      const selected = joined().select([0]);
      expect(selected.pastLength).toBe(2);
      expect(selected.pads).toEqual([0]);
      for (const tensor of selected.pastTensors) expect(tensor.dims).toEqual([1, HEADS, 2, DIM]);
      expectRow(selected, 0, (t, head, pos, d) => code(1, t, 0, head, pos, d));
      expect(maskRows(selected.attentionMask(1), 1)).toEqual([[1, 1, 1]]);
    });

    it('trims padding common to all kept rows and right-aligns each row', () => {
      const cache = filled(1, 1, 2).concat(filled(2, 1, 3)).concat(filled(3, 1, 6)); // pads [4, 3, 0]
      const selected = cache.select([1, 0]);
      expect(selected.pastLength).toBe(3);
      expect(selected.pads).toEqual([0, 1]);
      expect([selected.realLength(0), selected.realLength(1)]).toEqual([3, 2]);
      expectRow(selected, 0, (t, head, pos, d) => code(2, t, 0, head, pos, d));
      expectRow(selected, 1, (t, head, pos, d) => (pos < 1 ? null : code(1, t, 0, head, pos - 1, d)));
      expect(maskRows(selected.attentionMask(1), 2)).toEqual([
        [1, 1, 1, 1],
        [0, 1, 1, 1],
      ]);
    });

    it('copies the tokens a row gained in later steps along with the earlier ones', () => {
      const cache = filled(1, 1, 1).concat(filled(2, 1, 3)); // pads [2, 0]
      cache.advance({ present: present(7, 2, 4) }, 1); // row 0: 2 real tokens at positions 2..3
      const selected = cache.select([0]);
      expect(selected.pastLength).toBe(2);
      expectRow(selected, 0, (t, head, pos, d) => code(7, t, 0, head, pos + 2, d));
    });

    it('can keep the same row twice', () => {
      const selected = filled(1, 2, 2).select([1, 1]);
      expectRow(selected, 0, (t, head, pos, d) => code(1, t, 1, head, pos, d));
      expectRow(selected, 1, (t, head, pos, d) => code(1, t, 1, head, pos, d));
    });

    it('gives an empty cache when no row is kept', () => {
      const selected = joined().select([]);
      expect(selected.batchSize).toBe(0);
      expect(selected.pastLength).toBe(0);
      for (const tensor of selected.pastTensors) expect(tensor.dims).toEqual([0, HEADS, 0, DIM]);
    });
  });

  describe('with a float16 layout', () => {
    const half: KvLayout = { ...layout, kvType: 'float16' };

    it('moves the 16-bit words unchanged and pads with +0', () => {
      const short = BatchKvCache.empty(half, 1);
      short.advance({ present: present(0, 1, 1, half) }, 1);
      const long = BatchKvCache.empty(half, 1);
      long.advance({ present: present(0, 1, 3, half) }, 3);
      const joined = short.concat(long);
      expect(joined.pads).toEqual([2, 0]);
      for (let t = 0; t < 2; t++) {
        const tensor = joined.pastTensors[t]!;
        expect(tensor.type).toBe('float16');
        expect(tensor.dims).toEqual([2, HEADS, 3, DIM]);
        const data = tensor.data as Uint16Array;
        expect(data).toBeInstanceOf(Uint16Array);
        for (let head = 0; head < HEADS; head++)
          for (let d = 0; d < DIM; d++) {
            const row0 = (pos: number) => data[((0 * HEADS + head) * 3 + pos) * DIM + d];
            expect([row0(0), row0(1), row0(2)]).toEqual([0, 0, code(0, t, 0, head, 0, d) % 0x7c00]);
          }
      }
    });
  });
});

describe('KvBufferPool', () => {
  it('hands out the smallest free buffer that is large enough, and makes one of the wanted size when none is', () => {
    const pool = new KvBufferPool('float32');
    const [small, large] = [new Float32Array(10), new Float32Array(100)];
    pool.give(large);
    pool.give(small);
    expect(pool.take(8)).toBe(small);
    expect(pool.take(8)).toBe(large);
    const fresh = pool.take(8, 50);
    expect(fresh.length).toBe(50);
    expect(pool.pooledLength).toBe(0);
  });

  it('keeps at most its limit, letting the smallest buffers go first', () => {
    const pool = new KvBufferPool('float32', 150);
    const buffers = [new Float32Array(60), new Float32Array(40), new Float32Array(80)];
    for (const buffer of buffers) pool.give(buffer);
    expect(pool.pooledLength).toBe(140);
    pool.give(new Float32Array(30));
    expect(pool.pooledLength).toBe(140);
    expect(pool.take(70)).toBe(buffers[2]);
    expect(pool.take(50)).toBe(buffers[0]);
  });

  it("serves a cache the buffers another gave back, with the padding zeroed whatever they held", () => {
    const pool = new KvBufferPool('float32');
    const old = filled(5, 3, 6, pool).select([0, 1, 2]);
    old.advance({ appended: present(6, 3, 1) }, 1);
    old.release();
    const before = pool.pooledLength;
    expect(before).toBeGreaterThan(0);
    const cache = filled(1, 1, 2, pool).concat(filled(2, 1, 4, pool));
    expect(pool.pooledLength).toBeLessThan(before);
    expectRow(cache, 0, (t, head, pos, d) => (pos < 2 ? null : code(1, t, 0, head, pos - 2, d)));
    expectRow(cache, 1, (t, head, pos, d) => code(2, t, 0, head, pos, d));
  });
});

describe('float16ToNumber', () => {
  it.each([
    ['0x3c00', 1, 0x3c00],
    ['0xc000', -2, 0xc000],
    ['0x7bff', 65504, 0x7bff],
    ['0x0001', 2 ** -24, 0x0001],
    ['0x03ff', 1023 * 2 ** -24, 0x03ff],
    ['0x0400', 2 ** -14, 0x0400],
    ['0x3555', 0.333251953125, 0x3555],
    ['0x3800', 0.5, 0x3800],
    ['0x0000', 0, 0x0000],
    ['0x7c00', Infinity, 0x7c00],
    ['0xfc00', -Infinity, 0xfc00],
  ] as [string, number, number][])('reads %s as %p', (_hex, value, bits) => {
    expect(float16ToNumber(bits)).toBe(value);
  });

  it('reads 0x8000 as negative zero', () => {
    expect(Object.is(float16ToNumber(0x8000), -0)).toBe(true);
  });

  it.each([['0x7e00', 0x7e00], ['0x7c01', 0x7c01], ['0xfe00', 0xfe00]])('reads the NaN pattern %s as NaN', (_hex, bits) => {
    expect(float16ToNumber(bits)).toBeNaN();
  });

  it('agrees with a float32 round trip for every finite half-precision number', () => {
    // Half precision embeds exactly in float32: rebuild the float32 bits and compare.
    const view = new DataView(new ArrayBuffer(4));
    for (let bits = 0; bits < 0x10000; bits++) {
      const exponent = (bits >> 10) & 0x1f;
      if (exponent === 0x1f || exponent === 0) continue;
      const sign = (bits & 0x8000) << 16;
      view.setUint32(0, sign | ((exponent - 15 + 127) << 23) | ((bits & 0x3ff) << 13));
      if (float16ToNumber(bits) !== view.getFloat32(0)) throw new Error(`0x${bits.toString(16)}: ${float16ToNumber(bits)} != ${view.getFloat32(0)}`);
    }
  });
});

describe('SlotKvCache', () => {
  const slotLayout: KvLayout = { ...layout, slots: true };
  /** The step's new keys and values of every row, values from `code` at positions `from`…. */
  const appended = (tag: number, batch: number, from: number, length: number) =>
    present(tag, batch, from + length).map((tensor) => {
      const data = tensor.data as Float32Array;
      const out = new Float32Array(batch * HEADS * length * DIM);
      for (let block = 0; block < batch * HEADS; block++) out.set(data.subarray((block * (from + length) + from) * DIM, (block * (from + length) + from + length) * DIM), block * length * DIM);
      return new ort.Tensor('float32', out, [batch, HEADS, length, DIM]);
    });
  const empty = (batch: number) => SlotKvCache.empty(slotLayout, batch, new KvBufferPool('float32'));

  it('starts with 32 free slots, writes each step into the next ones and copies nothing while they last', () => {
    const cache = empty(2);
    expect(cache.pastLength).toBe(32);
    cache.advance({ appended: appended(1, 2, 0, 3) }, 3);
    const buffer = (cache.pastTensors[0]!.data as Float32Array).buffer;
    cache.advance({ appended: appended(1, 2, 3, 1) }, 1);
    expect((cache.pastTensors[0]!.data as Float32Array).buffer).toBe(buffer);
    expect(cache.pastLength).toBe(32);
    for (const pos of [0, 3]) expect(at(cache, 1, 1, 1, pos, 2)).toBe(code(1, 1, 1, 1, pos, 2));
    // Held positions shown, free slots hidden, then the step's own.
    expect(maskRows(cache.attentionMask(1), 2)[0]).toEqual([...new Array(4).fill(1), ...new Array(28).fill(0), 1]);
  });

  it('doubles its slots when a step would not fit, keeping what they held', () => {
    const cache = empty(1);
    cache.advance({ appended: appended(2, 1, 0, 30) }, 30);
    cache.advance({ appended: appended(2, 1, 30, 4) }, 4);
    expect(cache.pastLength).toBe(64);
    expect(cache.realLength(0)).toBe(34);
    for (const pos of [0, 29, 30, 33]) expect(at(cache, 1, 0, 1, pos, 2)).toBe(code(2, 1, 0, 1, pos, 2));
  });

  it('takes a joining row as it is, from slot 0, each row with its own length; rows that leave are closed up', () => {
    const long = empty(1);
    long.advance({ appended: appended(3, 1, 0, 5) }, 5);
    const short = empty(2);
    short.advance({ appended: appended(4, 2, 0, 2) }, 2);
    const joined = long.join(short, [1]);
    expect(joined).toBe(long);
    expect([joined.batchSize, joined.realLength(0), joined.realLength(1), joined.pastLength]).toEqual([2, 5, 2, 32]);
    expect(maskRows(joined.attentionMask(1), 2)[1]!.slice(0, 6)).toEqual([1, 1, 0, 0, 0, 0]);
    expect(at(joined, 0, 1, 1, 1, 0)).toBe(code(4, 0, 1, 1, 1, 0));
    // The next step lands after each row's own positions.
    joined.advance({ appended: appended(5, 2, 0, 1) }, 1);
    expect([joined.realLength(0), joined.realLength(1)]).toEqual([6, 3]);
    expect(at(joined, 0, 1, 0, 2, 1)).toBe(code(5, 0, 1, 0, 0, 1));
    expect(at(joined, 0, 0, 0, 5, 1)).toBe(code(5, 0, 0, 0, 0, 1));
    const kept = joined.retain([1]);
    expect([kept.batchSize, kept.realLength(0)]).toEqual([1, 3]);
    expect(at(kept, 0, 0, 1, 1, 0)).toBe(code(4, 0, 1, 1, 1, 0));
  });

  it("keeps only each row's real tokens of a padded step, the next step landing right after them", () => {
    const cache = empty(2);
    // A step of 4 positions in which row 0 has 4 real tokens and row 1 only 2, then its padding.
    cache.advance({ appended: appended(6, 2, 0, 4) }, 4, [4, 2]);
    expect([cache.realLength(0), cache.realLength(1)]).toEqual([4, 2]);
    expect(maskRows(cache.attentionMask(1), 2)[1]!.slice(0, 5)).toEqual([1, 1, 0, 0, 0]);
    cache.advance({ appended: appended(7, 2, 0, 1) }, 1);
    expect([cache.realLength(0), cache.realLength(1)]).toEqual([5, 3]);
    for (const pos of [0, 1]) expect(at(cache, 1, 1, 1, pos, 2)).toBe(code(6, 1, 1, 1, pos, 2));
    expect(at(cache, 1, 1, 1, 2, 2)).toBe(code(7, 1, 1, 1, 0, 2));
    expect(at(cache, 1, 0, 1, 4, 2)).toBe(code(7, 1, 0, 1, 0, 2));
  });

  it('grows its slots for the longest real row of a padded step, not for the padding', () => {
    const cache = empty(2);
    cache.advance({ appended: appended(8, 2, 0, 31) }, 31, [31, 20]);
    expect(cache.pastLength).toBe(32);
    // 16 positions a row, of which 1 and 12 are real: 32 in each row, which the 32 slots hold.
    cache.advance({ appended: appended(9, 2, 0, 16) }, 16, [1, 12]);
    expect([cache.pastLength, cache.realLength(0), cache.realLength(1)]).toEqual([32, 32, 32]);
    expect(at(cache, 0, 1, 0, 31, 0)).toBe(code(9, 0, 1, 0, 11, 0));
    cache.advance({ appended: appended(10, 2, 0, 1) }, 1);
    expect([cache.pastLength, cache.realLength(0), cache.realLength(1)]).toEqual([64, 33, 33]);
    expect(at(cache, 0, 0, 0, 30, 0)).toBe(code(8, 0, 0, 0, 30, 0));
    expect(at(cache, 0, 0, 0, 31, 0)).toBe(code(9, 0, 0, 0, 0, 0));
  });
});

describe('BatchKvCache with a padded step', () => {
  it('refuses rows of different lengths: a padded cache takes steps of one length in every row', () => {
    const cache = BatchKvCache.empty(layout, 2);
    expect(() => cache.advance({ present: present(9, 2, 3) }, 3, [3, 2])).toThrow('steps of one length');
  });
});
