import { LruCache } from '../../src/util/lru.js';
import { tooDeepPath } from '../../src/util/json-depth.js';

describe('LruCache', () => {
  it('holds entries within a total cost, pushing out the least recently used first', () => {
    const evicted: string[] = [];
    const cache = new LruCache<string, number>(10, (key) => evicted.push(key));
    cache.set('a', 1, 4);
    cache.set('b', 2, 4);
    expect(cache.get('a')).toBe(1);
    cache.set('c', 3, 4);
    expect(evicted).toEqual(['b']);
    expect([cache.has('a'), cache.has('b'), cache.has('c')]).toEqual([true, false, true]);
    expect(cache.cost).toBe(8);
    // One large entry takes the room of several small ones.
    cache.set('d', 4, 9);
    expect(evicted).toEqual(['b', 'a', 'c']);
    expect([cache.size, cache.cost]).toEqual([1, 9]);
  });

  it('keeps nothing that alone costs more than the budget, and replaces an entry under the same key', () => {
    const cache = new LruCache<string, number>(10);
    expect(cache.set('big', 1, 11)).toBe(false);
    expect(cache.has('big')).toBe(false);
    cache.set('a', 1, 6);
    cache.set('a', 2, 3);
    expect([cache.get('a'), cache.cost]).toEqual([2, 3]);
    expect(cache.delete('a')).toBe(true);
    expect(cache.cost).toBe(0);
  });
});

describe('tooDeepPath', () => {
  it('finds the first container nested past the limit, with its path', () => {
    expect(tooDeepPath({ a: [1, { b: 2 }] }, 3)).toBeUndefined();
    expect(tooDeepPath({ a: [1, { b: [] }] }, 3)).toEqual(['a', 1, 'b']);
    expect(tooDeepPath([[[]]], 2)).toEqual([0, 0]);
    expect(tooDeepPath('text', 1)).toBeUndefined();
  });

  it('walks a value nested 1,000,000 deep without overflowing the stack', () => {
    const deep = JSON.parse('['.repeat(1_000_000) + ']'.repeat(1_000_000)) as unknown;
    const path = tooDeepPath(deep, 64);
    expect(path).toHaveLength(64);
    expect(path!.every((key) => key === 0)).toBe(true);
  });
});
