import { PrefixCache } from '../../src/engine/thread/prefix-cache.js';

const CHUNK = 2;
const block = (marker: number) => () => new Float32Array(2 * CHUNK).fill(marker);

/** Caches the chunks of `ids` one after another, as a prefill does; the blocks kept. */
function prefill(cache: PrefixCache, ids: number[], partition = '') {
  const chain = [];
  for (let start = 0; start + CHUNK <= ids.length; start += CHUNK) {
    const kept = cache.insert(partition, chain.at(-1), ids.slice(start, start + CHUNK), block(start));
    if (!kept) break;
    chain.push(kept);
  }
  return chain;
}

describe('PrefixCache', () => {
  it('finds the cached chunks that begin a prompt, leaving its last token to prefill', () => {
    const cache = new PrefixCache(CHUNK, 16);
    prefill(cache, [1, 2, 3, 4, 5, 6]);
    expect(cache.tokens).toBe(6);
    expect(cache.lookup('', [1, 2, 3, 4, 5, 6]).length).toBe(2);
    expect(cache.lookup('', [1, 2, 3, 4, 5, 6, 7]).length).toBe(3);
    expect(cache.lookup('', [1, 2, 3, 9, 5, 6, 7]).length).toBe(1);
    expect(cache.lookup('', [2, 1, 3, 4]).length).toBe(0);
  });

  it('tells chunks apart by everything before them, not only their own tokens', () => {
    const cache = new PrefixCache(CHUNK, 16);
    prefill(cache, [1, 2, 3, 4]);
    prefill(cache, [9, 9, 3, 4]);
    const [, second] = cache.lookup('', [9, 9, 3, 4, 0]);
    expect(Array.from(second!.data)).toEqual(Array.from(block(2)()));
    expect(second!.parent!.key).toBe(cache.lookup('', [9, 9, 0])[0]!.key);
    expect(cache.tokens).toBe(8);
  });

  it('keeps at most maxTokens, letting the least recently used chunks without children go first', () => {
    const cache = new PrefixCache(CHUNK, 8);
    prefill(cache, [1, 1, 2, 2]);
    prefill(cache, [3, 3, 4, 4]);
    // [1, 1, 2, 2] used again: [3, 3, 4, 4] is now the least recent; its last chunk goes, then its first.
    expect(cache.lookup('', [1, 1, 2, 2, 0]).length).toBe(2);
    prefill(cache, [5, 5]);
    expect(cache.tokens).toBe(8);
    expect(cache.lookup('', [3, 3, 4, 4, 0]).length).toBe(1);
    expect(cache.lookup('', [1, 1, 2, 2, 0]).length).toBe(2);
    // Looked up since: [5, 5] is the least recent now.
    prefill(cache, [6, 6]);
    expect(cache.lookup('', [5, 5, 0]).length).toBe(0);
    expect(cache.lookup('', [3, 3, 0]).length).toBe(1);
    expect(cache.lookup('', [1, 1, 2, 2, 0]).length).toBe(2);
    expect(cache.lookup('', [6, 6, 0]).length).toBe(1);
  });

  it('adds no chunk after one that is gone, nor a partial chunk, nor any with no room', () => {
    const cache = new PrefixCache(CHUNK, 4);
    const [first] = prefill(cache, [1, 1]);
    prefill(cache, [2, 2]);
    prefill(cache, [3, 3]);
    expect(cache.lookup('', [1, 1, 0]).length).toBe(0);
    expect(cache.insert('', first, [4, 4], block(0))).toBeUndefined();
    expect(cache.insert('', undefined, [4], block(0))).toBeUndefined();
    expect(new PrefixCache(CHUNK, 1).insert('', undefined, [1, 1], block(0))).toBeUndefined();
    expect(new PrefixCache(CHUNK, 0).enabled).toBe(false);
  });

  it('keeps partitions apart: a prompt finds only the chunks its own partition cached', () => {
    const cache = new PrefixCache(CHUNK, 16);
    prefill(cache, [1, 2, 3, 4], 'key:0');
    expect(cache.lookup('key:0', [1, 2, 3, 4, 5]).length).toBe(2);
    expect(cache.lookup('key:1', [1, 2, 3, 4, 5]).length).toBe(0);
    expect(cache.lookup('', [1, 2, 3, 4, 5]).length).toBe(0);
    // A partition name cannot pass for the key of a block in another.
    expect(cache.lookup('"key:0"', [1, 2, 3, 4, 5]).length).toBe(0);
    prefill(cache, [1, 2, 3, 4], 'key:1');
    expect(cache.lookup('key:1', [1, 2, 3, 4, 5]).length).toBe(2);
    expect(cache.tokens).toBe(8);
  });
});
