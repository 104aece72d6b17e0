import { resolve } from 'node:path';
import { ModelLoadError } from '../errors.js';
import type { Dtype } from '../files.js';
import { hubAccess } from './access.js';
import { CachedRepo, hubCacheDir, isHubId } from './cache.js';
import { HubError } from './errors.js';
import { pullModel } from './pull.js';
import { pullEvents, type PullLog } from './progress.js';
import { isDirectory } from '../../util/fs.js';

/** What `--model` and its companions name. */
export interface ModelSource {
  model: string;
  revision: string;
  dtype?: Dtype;
  modelFile?: string;
  offline: boolean;
}

export interface LocatedModel {
  dir: string;
  /** The hub id the folder came from, the model's name in the API unless another is given. */
  hubId?: string;
  notes: string[];
}

/**
 * The folder a `--model` value names: a directory, or a Hugging Face id, pulled into the Hugging
 * Face cache (only what the chosen graph needs; what is there already is not fetched again). Offline
 * (`--offline`, `HF_HUB_OFFLINE`), the cache's snapshot is taken without touching the network; online,
 * a hub that cannot be reached falls back to the cache's snapshot, with a warning, as huggingface_hub does.
 */
export async function locateModel(source: ModelSource, log: PullLog, options: { env?: NodeJS.ProcessEnv; terminal?: NodeJS.WriteStream } = {}): Promise<LocatedModel> {
  const env = options.env ?? process.env;
  const dir = resolve(source.model);
  if (isDirectory(dir)) return { dir, notes: [] };
  if (!isHubId(source.model)) throw new ModelLoadError(`model directory not found: ${dir} (nor is ${source.model} a Hugging Face id, org/name)`);
  const id = source.model;
  const cache = hubCacheDir(env);
  const repo = new CachedRepo(cache, id);
  const cached = () => repo.cachedSnapshot(source.revision);
  if (source.offline) {
    const snapshot = cached();
    if (!snapshot) {
      throw new HubError(
        `${id} (revision ${source.revision}) is not in the Hugging Face cache (${cache}), and offline mode (--offline or HF_HUB_OFFLINE) forbids fetching it: run \`ortserve pull ${id}\` where the network is, or give the model's folder`,
      );
    }
    return { dir: snapshot, hubId: id, notes: [`model ${id}: the Hugging Face cache's snapshot ${snapshot} (offline)`] };
  }
  const access = hubAccess(env);
  try {
    const pulled = await pullModel({ id, revision: source.revision, dtype: source.dtype, modelFile: source.modelFile, cacheDir: cache, access, events: pullEvents(log, options.terminal) });
    return { dir: pulled.dir, hubId: id, notes: [`model ${id}: revision ${source.revision} is commit ${pulled.commit}, in ${pulled.dir}`] };
  } catch (err) {
    const snapshot = err instanceof HubError && err.unreachable ? cached() : undefined;
    if (!snapshot) throw err;
    log.warn({ model: id }, `${err instanceof Error ? err.message : String(err)}; serving the cache's snapshot ${snapshot}`);
    return { dir: snapshot, hubId: id, notes: [`model ${id}: the Hugging Face cache's snapshot ${snapshot} (the hub could not be reached)`] };
  }
}
