import { modelInUse, modelLoadFailed, modelNotFound, modelsBusy, OpenAIError, requestTimedOut } from '../errors.js';
import type { ServingContext } from './context.js';

/** A model the server can serve, loaded or not. */
export interface ModelEntry {
  id: string;
  aliases: readonly string[];
  /** Given with `--model`: loaded at start, and never unloaded for room or for idleness. */
  pinned: boolean;
}

/** A model loaded in its own engine and workers. */
export interface LoadedModelServing {
  context: ServingContext;
  /** Memory it is counted by from now on, with what the engine found (the context it serves). */
  bytes: number;
  close(): Promise<void>;
}

/** A model read from its folder and sized, not yet started. */
export interface PreparedModel {
  /** Memory it is counted by against the budget (weights and KV cache at capacity). */
  bytes: number;
  start(): Promise<LoadedModelServing>;
}

/** Reads a model's folder and sizes it (`prepare`), so that room is made before it starts. */
export type ModelLoader = (entry: ModelEntry) => Promise<PreparedModel>;

export interface ServedModelsSettings {
  /** How long a model loaded on request stays loaded once idle; 0: unloaded at once, negative: never. */
  keepAliveMs: number;
  /** Most models loaded at once; 0: no limit. */
  maxLoaded: number;
  budgetBytes: number;
  /** How long a request waits for its model to load (the request timeout); 0: no limit. */
  loadWaitMs: number;
}

export type ModelState = 'unloaded' | 'loading' | 'loaded' | 'failed';

export interface ModelStatus {
  id: string;
  aliases: readonly string[];
  state: ModelState;
  pinned: boolean;
  /** Why it failed to load, when it did. */
  failure?: string;
}

/** A request's hold on a loaded model: the model is not unloaded until every hold is released. */
export interface ModelLease {
  context: ServingContext;
  release(): void;
}

interface Slot {
  entry: ModelEntry;
  state: ModelState;
  loading?: Promise<LoadedModelServing>;
  loaded?: LoadedModelServing;
  failure?: string;
  /** Bytes counted against the budget while loading or loaded. */
  bytes: number;
  users: number;
  lastUsed: number;
  idleTimer?: NodeJS.Timeout;
}

const MIB = 1024 * 1024;
const mib = (bytes: number) => `${Math.ceil(bytes / MIB)} MiB`;

/**
 * The models this server serves, found by the name a request gives (an id or an alias), each loaded
 * in its own engine and workers when first asked for and kept while requests hold it. Loading one
 * makes room first: the least recently used idle models loaded on request are unloaded until it fits
 * the count and memory limits; one that cannot fit is an error, never an out-of-memory crash.
 */
export class ServedModels {
  private readonly slots = new Map<string, Slot>();
  private closed = false;

  constructor(
    /** The catalogue, read anew on each lookup: folders and the hub cache may gain models. */
    private readonly catalogue: () => readonly ModelEntry[],
    private readonly loader: ModelLoader,
    private readonly settings: ServedModelsSettings,
  ) {}

  /** Every model that can be served, in catalogue order, with its state. */
  list(): ModelStatus[] {
    return this.catalogue().map((entry) => {
      const slot = this.slots.get(entry.id);
      return { id: entry.id, aliases: entry.aliases, state: slot?.state ?? 'unloaded', pinned: entry.pinned, ...(slot?.failure !== undefined && { failure: slot.failure }) };
    });
  }

  /** The model a name gives; a 404 in the API's shape when there is none. */
  find(name: string): ModelStatus {
    const entry = this.entryOf(name);
    return this.list().find((status) => status.id === entry.id)!;
  }

  /** The model of requests that may leave it out (tokenize): the first of the catalogue. */
  get firstId(): string | undefined {
    return this.catalogue()[0]?.id;
  }

  /** The loaded models' contexts, in the order they were first asked for. */
  get loaded(): ServingContext[] {
    return [...this.slots.values()].flatMap((slot) => (slot.loaded ? [slot.loaded.context] : []));
  }

  /** The named model, loaded if it is not (waited for at most `loadWaitMs`), held until the lease is released. */
  acquire(name: string): Promise<ModelLease> {
    return this.hold(name, true);
  }

  private async hold(name: string, bounded: boolean): Promise<ModelLease> {
    const slot = this.slotOf(this.entryOf(name));
    slot.users++;
    clearTimeout(slot.idleTimer);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.release(slot);
    };
    try {
      const loading = this.ensureLoaded(slot);
      const loaded = await (bounded ? this.withinWait(loading) : loading);
      return { context: loaded.context, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  /** `POST /models/load` and the models loaded at start: loads the model however long it takes (a failed one is tried again); keep-alive starts at once. */
  async load(name: string): Promise<ModelStatus> {
    const lease = await this.hold(name, false).catch((err: unknown) => {
      const slot = this.slots.get(this.entryOf(name).id);
      if (slot?.state !== 'failed') throw err;
      slot.state = 'unloaded';
      slot.failure = undefined;
      return this.hold(name, false);
    });
    lease.release();
    return this.find(name);
  }

  /** `POST /models/unload`: unloads an idle model; one serving requests is a 409. */
  async unload(name: string): Promise<ModelStatus> {
    const slot = this.slotOf(this.entryOf(name));
    if (slot.state === 'loading') await slot.loading!.catch(() => {});
    if (slot.users > 0) throw modelInUse(slot.entry.id, slot.users);
    if (slot.state === 'loaded') await this.unloadSlot(slot);
    if (slot.state === 'failed') {
      slot.state = 'unloaded';
      slot.failure = undefined;
    }
    return this.find(name);
  }

  /** Unloads every model (shutdown); loads under way finish first. */
  async closeAll(): Promise<void> {
    this.closed = true;
    const slots = [...this.slots.values()];
    for (const slot of slots) clearTimeout(slot.idleTimer);
    await Promise.all(slots.map((slot) => slot.loading?.catch(() => {})));
    await Promise.all(slots.filter((slot) => slot.state === 'loaded').map((slot) => this.unloadSlot(slot)));
  }

  /** A load waited for at most `loadWaitMs`; the load goes on for later requests. */
  private withinWait<T>(loading: Promise<T>): Promise<T> {
    const { loadWaitMs } = this.settings;
    if (loadWaitMs <= 0) return loading;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(requestTimedOut(loadWaitMs / 1000)), loadWaitMs);
    });
    return Promise.race([loading, timeout]).finally(() => clearTimeout(timer));
  }

  private entryOf(name: string): ModelEntry {
    const entry = this.catalogue().find(({ id, aliases }) => id === name || aliases.includes(name));
    if (!entry) throw modelNotFound(name);
    return entry;
  }

  private slotOf(entry: ModelEntry): Slot {
    let slot = this.slots.get(entry.id);
    if (!slot) this.slots.set(entry.id, (slot = { entry, state: 'unloaded', bytes: 0, users: 0, lastUsed: 0 }));
    return slot;
  }

  private ensureLoaded(slot: Slot): Promise<LoadedModelServing> {
    switch (slot.state) {
      case 'loaded':
        return Promise.resolve(slot.loaded!);
      case 'loading':
        return slot.loading!;
      case 'failed':
        return Promise.reject(modelLoadFailed(slot.entry.id, slot.failure!));
      case 'unloaded':
        break;
    }
    if (this.closed) return Promise.reject(modelsBusy(slot.entry.id, 'the server is shutting down'));
    slot.state = 'loading';
    const loading = (async () => {
      const prepared = await this.loader(slot.entry);
      slot.bytes = prepared.bytes;
      await this.makeRoom(slot);
      return prepared.start();
    })();
    slot.loading = loading;
    loading.then(
      (loaded) => {
        slot.state = 'loaded';
        slot.loaded = loaded;
        slot.bytes = loaded.bytes;
        slot.loading = undefined;
        if (slot.users === 0) this.scheduleIdleUnload(slot);
      },
      (err: unknown) => {
        slot.loading = undefined;
        slot.bytes = 0;
        // No room while others are in use is for this request only; anything else stays until the model is loaded anew.
        if (err instanceof OpenAIError && err.code === 'models_busy') {
          slot.state = 'unloaded';
          return;
        }
        slot.state = 'failed';
        slot.failure = err instanceof OpenAIError && err.code === 'model_load_failed' ? err.message : err instanceof Error ? err.message : String(err);
      },
    );
    return loading.catch((err: unknown) => {
      if (err instanceof OpenAIError) throw err;
      throw modelLoadFailed(slot.entry.id, slot.failure ?? String(err));
    });
  }

  /**
   * Unloads the least recently used idle models loaded on request until `slot` fits the limits. A
   * model given with --model is loaded whatever the limits (it counts against them once loaded).
   */
  private async makeRoom(slot: Slot): Promise<void> {
    const { budgetBytes, maxLoaded } = this.settings;
    if (slot.entry.pinned) return;
    if (slot.bytes > budgetBytes) {
      throw modelLoadFailed(slot.entry.id, `it takes about ${mib(slot.bytes)} (weights and KV cache at capacity), more than the memory budget of ${mib(budgetBytes)} (--memory-budget-mb; --max-kv-tokens bounds the KV cache)`);
    }
    for (;;) {
      const others = [...this.slots.values()].filter((other) => other !== slot && (other.state === 'loaded' || other.state === 'loading'));
      const used = others.reduce((sum, other) => sum + other.bytes, 0);
      const overCount = maxLoaded > 0 && others.length + 1 > maxLoaded;
      const overBudget = used + slot.bytes > budgetBytes;
      if (!overCount && !overBudget) return;
      const idle = others.filter((other) => other.state === 'loaded' && other.users === 0 && !other.entry.pinned).sort((a, b) => a.lastUsed - b.lastUsed);
      const victim = idle[0];
      if (!victim) {
        const reason = overCount
          ? `${others.length} models are loaded (--max-loaded-models ${maxLoaded}) and none can be unloaded (in use, or given with --model)`
          : `it takes about ${mib(slot.bytes)}, and ${mib(budgetBytes - used)} of the memory budget of ${mib(budgetBytes)} is free, with the models that hold the rest in use or given with --model`;
        throw modelsBusy(slot.entry.id, reason);
      }
      await this.unloadSlot(victim);
    }
  }

  private release(slot: Slot): void {
    slot.users--;
    slot.lastUsed = performance.now();
    if (slot.users === 0 && slot.state === 'loaded') this.scheduleIdleUnload(slot);
  }

  private scheduleIdleUnload(slot: Slot): void {
    const { keepAliveMs } = this.settings;
    if (slot.entry.pinned || keepAliveMs < 0 || this.closed) return;
    clearTimeout(slot.idleTimer);
    slot.idleTimer = setTimeout(() => {
      if (slot.users === 0 && slot.state === 'loaded') void this.unloadSlot(slot);
    }, keepAliveMs);
    slot.idleTimer.unref();
  }

  private async unloadSlot(slot: Slot): Promise<void> {
    clearTimeout(slot.idleTimer);
    const loaded = slot.loaded;
    slot.loaded = undefined;
    slot.state = 'unloaded';
    slot.bytes = 0;
    await loaded?.close();
  }
}
