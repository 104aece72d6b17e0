import type { KvData } from './kv-cache.js';

/**
 * The keys and values of one chunk of a prompt: the `chunk` positions that follow its parent's
 * (the chunk before it), for every tensor and head: [tensor][head][position][dim].
 */
export interface PrefixBlock {
  readonly id: number;
  readonly key: string;
  readonly parent: PrefixBlock | undefined;
  readonly data: KvData;
  /** Cached blocks whose parent this is. */
  children: number;
}

/**
 * Automatic prefix caching: the KV of prompt prefixes, kept in whole prefill chunks, for later
 * prompts that start the same way (a chat's earlier turns, a shared system prompt). Prompts are
 * prefilled in chunks at fixed offsets, so a chunk's keys and values depend only on the tokens up
 * to its end: a prompt that reuses them gets the numbers it would have computed.
 *
 * A block is found by its parent and its own tokens, so a chain of blocks is a prefix; a chain
 * starts in a partition (an API key's, say), and only prompts of that partition find it. At most
 * `maxTokens` positions are kept; the least recently used block without children goes first.
 */
export class PrefixCache {
  /** In order of use, least recent first. */
  private readonly blocks = new Map<string, PrefixBlock>();
  private nextId = 0;
  private readonly capacity: number;

  constructor(
    readonly chunk: number,
    maxTokens: number,
  ) {
    this.capacity = Math.floor(maxTokens / chunk);
  }

  get enabled(): boolean {
    return this.capacity > 0;
  }

  /** Positions held. */
  get tokens(): number {
    return this.blocks.size * this.chunk;
  }

  /**
   * The cached blocks that begin `promptIds`, as many whole chunks as are cached, but always
   * leaving at least one token to prefill (its logits give the first token). They become the most
   * recently used.
   */
  lookup(partition: string, promptIds: readonly number[]): PrefixBlock[] {
    const chain: PrefixBlock[] = [];
    const usable = Math.floor((promptIds.length - 1) / this.chunk);
    let parent: PrefixBlock | undefined;
    while (chain.length < usable) {
      const start = chain.length * this.chunk;
      const block = this.blocks.get(blockKey(partition, parent, promptIds.slice(start, start + this.chunk)));
      if (!block) break;
      this.touch(block);
      chain.push(block);
      parent = block;
    }
    return chain;
  }

  /**
   * Keeps the KV of the chunk `tokens` that follows `parent` (undefined: the prompt's first chunk, in `partition`),
   * `data` laid out as PrefixBlock's; the block, or undefined when it is not kept (no room, or the
   * parent is gone).
   */
  insert(partition: string, parent: PrefixBlock | undefined, tokens: readonly number[], data: () => KvData): PrefixBlock | undefined {
    if (tokens.length !== this.chunk || !this.enabled) return undefined;
    if (parent && this.blocks.get(parent.key) !== parent) return undefined;
    const key = blockKey(partition, parent, tokens);
    const cached = this.blocks.get(key);
    if (cached) {
      this.touch(cached);
      return cached;
    }
    while (this.blocks.size >= this.capacity) {
      if (!this.evictOne(parent)) return undefined;
    }
    const block: PrefixBlock = { id: this.nextId++, key, parent, data: data(), children: 0 };
    if (parent) parent.children++;
    this.blocks.set(key, block);
    return block;
  }

  private touch(block: PrefixBlock): void {
    this.blocks.delete(block.key);
    this.blocks.set(block.key, block);
  }

  /** Drops the least recently used block without children (but `keep`); false when there is none. */
  private evictOne(keep: PrefixBlock | undefined): boolean {
    for (const block of this.blocks.values()) {
      if (block.children > 0 || block === keep) continue;
      this.blocks.delete(block.key);
      if (block.parent) block.parent.children--;
      return true;
    }
    return false;
  }
}

/** A first chunk is keyed by its partition (JSON-quoted, so that no partition name can pass for another key), a later one by its parent. */
const blockKey = (partition: string, parent: PrefixBlock | undefined, tokens: readonly number[]) =>
  `${parent ? parent.id : JSON.stringify(partition)}:${tokens.join(',')}`;
