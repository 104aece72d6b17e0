/**
 * A least-recently-used cache bounded by a total cost (bytes, say) rather than a count, so that one
 * large entry takes the room of many small ones. An entry costing more than the whole budget is not
 * kept. `onEvict` hears of every entry pushed out (not of those deleted by the owner).
 */
export class LruCache<K, V> {
  private readonly entries = new Map<K, { value: V; cost: number }>();
  private total = 0;

  constructor(
    readonly maxCost: number,
    private readonly onEvict: (key: K, value: V) => void = () => {},
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The summed cost of the entries held. */
  get cost(): number {
    return this.total;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  /** The value under `key`, which becomes the most recently used. */
  get(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.value;
  }

  /** Keeps `value` under `key` (the most recently used), pushing out the least recently used until it fits; false when it alone is over the budget. */
  set(key: K, value: V, cost = 1): boolean {
    this.delete(key);
    if (cost > this.maxCost) return false;
    while (this.total + cost > this.maxCost) {
      const [oldest, entry] = this.entries.entries().next().value!;
      this.entries.delete(oldest);
      this.total -= entry.cost;
      this.onEvict(oldest, entry.value);
    }
    this.entries.set(key, { value, cost });
    this.total += cost;
    return true;
  }

  delete(key: K): boolean {
    const entry = this.entries.get(key);
    if (!entry) return false;
    this.entries.delete(key);
    this.total -= entry.cost;
    return true;
  }

  clear(): void {
    this.entries.clear();
    this.total = 0;
  }
}
