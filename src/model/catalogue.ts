import { readdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { hasGraph } from './files.js';
import { CachedRepo, hubCacheDir, isHubId } from './hub/cache.js';
import { isDirectory } from '../util/fs.js';

/** A model the server can serve: its names, and where its folder comes from. */
export interface CatalogueEntry {
  id: string;
  aliases: string[];
  /** Given with `--model`: loaded at start and kept. */
  pinned: boolean;
  /** A directory, or a hub id. */
  source: string;
  /** A hub id found in the cache: served from there, never fetched. */
  cachedOnly: boolean;
}

export interface CatalogueOptions {
  models: readonly string[];
  servedModelNames: readonly string[];
  /** `ALIAS=MODEL` pairs: other names of models. */
  modelAliases: readonly string[];
  modelsDir?: string;
  hubCacheModels: boolean;
  revision: string;
  /** Served when nothing else is named. */
  defaultModel: string;
}

/** How long a scan of the folders is reused: lookups happen on every request. */
const RESCAN_MS = 1000;

/** The id a `--model` value is served under: its hub id, or its folder's name. */
const idOf = (source: string) => (!isDirectory(resolve(source)) && isHubId(source) ? source : basename(resolve(source)));

/** The subfolders of `dir` that hold a graph, by name. */
function folderModels(dir: string): CatalogueEntry[] {
  if (!isDirectory(dir)) return [];
  return readdirSync(dir)
    .sort()
    .filter((name) => !name.startsWith('.') && isDirectory(join(dir, name)) && hasGraph(join(dir, name)))
    .map((name) => ({ id: name, aliases: [], pinned: false, source: join(dir, name), cachedOnly: false }));
}

/** The repositories of the Hugging Face cache whose snapshot of `revision` holds a graph, by hub id. */
function cachedHubModels(cache: string, revision: string): CatalogueEntry[] {
  if (!isDirectory(cache)) return [];
  return readdirSync(cache)
    .filter((name) => name.startsWith('models--'))
    .sort()
    .flatMap((name) => {
      const id = name.slice('models--'.length).replace('--', '/');
      if (!isHubId(id)) return [];
      const snapshot = new CachedRepo(cache, id).cachedSnapshot(revision);
      return snapshot && hasGraph(snapshot) ? [{ id, aliases: [], pinned: false, source: id, cachedOnly: true }] : [];
    });
}

/**
 * The models a server's settings name: each `--model` (the first with `--served-model-name`'s names),
 * the graph-holding subfolders of `--models-dir`, and with `--hub-cache-models` the Hugging Face
 * cache's ONNX models; the default model when none of these is given. An id named twice is the
 * first one's. The folders are scanned anew (at most once a second), so models added later are found.
 */
export function modelCatalogue(options: CatalogueOptions, env: NodeJS.ProcessEnv = process.env): () => CatalogueEntry[] {
  const onDemand = options.modelsDir !== undefined || options.hubCacheModels;
  const sources = options.models.length > 0 || onDemand ? options.models : [options.defaultModel];
  const pinned: CatalogueEntry[] = sources.map((source, index) => ({
    id: index === 0 && options.servedModelNames.length > 0 ? options.servedModelNames[0]! : idOf(source),
    aliases: index === 0 ? options.servedModelNames.slice(1) : [],
    pinned: true,
    source,
    cachedOnly: false,
  }));
  const aliased = (entries: CatalogueEntry[]) =>
    entries.map((entry) => {
      const more = options.modelAliases.flatMap((pair) => {
        const [alias, id] = pair.split('=') as [string, string];
        return id === entry.id && !entry.aliases.includes(alias) ? [alias] : [];
      });
      return more.length > 0 ? { ...entry, aliases: [...entry.aliases, ...more] } : entry;
    });
  const pinnedEntries = aliased(pinned);
  let scanned: { at: number; entries: CatalogueEntry[] } | undefined;
  return () => {
    if (!onDemand) return pinnedEntries;
    const now = performance.now();
    if (!scanned || now - scanned.at > RESCAN_MS) {
      const found = [...(options.modelsDir !== undefined ? folderModels(options.modelsDir) : []), ...(options.hubCacheModels ? cachedHubModels(hubCacheDir(env), options.revision) : [])];
      const all = aliased([...pinned, ...found]);
      scanned = { at: now, entries: all.filter((entry, index) => all.findIndex((other) => other.id === entry.id || other.aliases.includes(entry.id)) === index) };
    }
    return scanned.entries;
  };
}
