import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { ListFileEntry } from '@huggingface/hub';
import { chooseGraph, isExternalDataOf, readJsonFile, type Dtype, type NamedGraph } from '../files.js';
import { isFile } from '../../util/fs.js';
import { genaiModelConfig } from '../genai-config.js';
import { CachedRepo } from './cache.js';
import { HubError, describeFailure, isHubRefusal } from './errors.js';
import { hubFetch, type HubAccess } from './access.js';
import type { PullEvents } from './progress.js';

/** The files of a folder that ortserve reads besides the graph: configuration, tokenizer and chat templates. */
const METADATA_FILES = [
  'config.json',
  'generation_config.json',
  'genai_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'chat_template.json',
];

const isMetadata = (path: string) => METADATA_FILES.includes(path) || (path.startsWith('additional_chat_templates/') && path.endsWith('.jinja'));

/** A graph's external data files: beside it in the repository, named as isExternalDataOf says. */
const isDataBeside = (graph: string) => (path: string) => posix.dirname(path) === posix.dirname(graph) && isExternalDataOf(posix.basename(graph), posix.basename(path));

/** Tries per file before a pull gives up, and the pause before each; each try resumes from the bytes already on disk. */
const RETRY_DELAYS_MS = [0, 500, 2000, 5000];

export interface PullRequest {
  id: string;
  revision: string;
  dtype?: Dtype;
  modelFile?: string;
  cacheDir: string;
  access: HubAccess;
  events: PullEvents;
  /** Pause before each try of a file (the first is 0); as many tries as entries. */
  retryDelaysMs?: readonly number[];
}

export interface PullResult {
  dir: string;
  commit: string;
  /** Bytes fetched over the network by this pull (0 when the cache had everything). */
  fetchedBytes: number;
  files: string[];
}

type HubClient = typeof import('@huggingface/hub');

interface PullContext {
  hub: HubClient;
  request: PullRequest;
  repo: CachedRepo;
  commit: string;
  fetch: typeof fetch;
  fetchedBytes: number;
}

/**
 * Brings what one graph of a hub repository needs into the Hugging Face cache, as huggingface_hub
 * would lay it out: the revision resolved to a commit, then the configuration, tokenizer and chat
 * template files, then the graph chosen as a local folder's would be (`--dtype`, `--model-file`,
 * genai_config.json, the documented order) with its external data. Files already in the snapshot
 * are not fetched again; a cut transfer resumes from the bytes on disk; every file is checked
 * against the hash the hub lists (sha256 for LFS files, the git blob id for others).
 */
export async function pullModel(request: PullRequest): Promise<PullResult> {
  const hub = await import('@huggingface/hub');
  const { id, revision, access } = request;
  const fetcher = hubFetch(access);
  const repo = new CachedRepo(request.cacheDir, id);
  let commit: string;
  let entries: ListFileEntry[];
  try {
    const info = await hub.modelInfo({ name: id, revision, additionalFields: ['sha'], hubUrl: access.endpoint, fetch: fetcher });
    if (typeof info.sha !== 'string') throw new HubError(`${access.endpoint} gave no commit for ${id} at ${revision}`);
    commit = info.sha;
    entries = [];
    for await (const entry of hub.listFiles({ repo: { type: 'model', name: id }, revision: commit, recursive: true, hubUrl: access.endpoint, fetch: fetcher })) {
      if (entry.type === 'file') entries.push(entry);
    }
  } catch (err) {
    if (err instanceof HubError) throw err;
    throw describeFailure(err, { id, revision, what: `the files of ${id} at ${revision}`, file: false, access });
  }
  const context: PullContext = { hub, request, repo, commit, fetch: fetcher, fetchedBytes: 0 };
  const byPath = new Map(entries.map((entry) => [entry.path, entry]));

  const metadata = entries.filter((entry) => isMetadata(entry.path));
  if (!metadata.some((entry) => entry.path === 'config.json' || entry.path === 'genai_config.json')) {
    throw new HubError(`${id} at ${revision} has no config.json or genai_config.json: it is not a model folder ortserve can serve (its files: ${listed(entries)})`);
  }
  const graphs = entries.map((entry) => entry.path).filter((path) => path.endsWith('.onnx'));
  if (graphs.length === 0) throw new HubError(`${id} at ${revision} has no ONNX graph (its files: ${listed(entries)}); look for an ONNX export of it, such as onnx-community's`);
  request.events.resolved({ id, revision, commit });
  for (const entry of metadata) await fetchFile(context, entry);

  const snapshot = repo.snapshot(commit);
  const genaiConfig = join(snapshot, 'genai_config.json');
  const genai = existsSync(genaiConfig) ? genaiModelConfig(readJsonFile(genaiConfig, 'genai_config.json')) : undefined;
  const named: NamedGraph | undefined =
    request.modelFile !== undefined ? { file: request.modelFile, by: '--model-file' } : genai?.filename ? { file: genai.filename, by: 'genai_config.json' } : undefined;
  const graph = chooseGraph(graphs, `${id} at ${revision}`, named, request.dtype);
  const graphEntries = [byPath.get(graph.path)!, ...entries.filter((entry) => isDataBeside(graph.path)(entry.path))];
  request.events.planned({ graph: graph.path, files: graphEntries.map((entry) => ({ path: entry.path, size: fileSize(entry) })) });
  for (const entry of graphEntries) await fetchFile(context, entry);

  repo.writeRef(revision, commit);
  const files = [...metadata, ...graphEntries].map((entry) => entry.path);
  request.events.done({ id, commit, dir: snapshot, fetchedBytes: context.fetchedBytes, files: files.length });
  return { dir: snapshot, commit, fetchedBytes: context.fetchedBytes, files };
}

const listed = (entries: ListFileEntry[]) => entries.map((entry) => entry.path).slice(0, 20).join(', ') || 'none';
const fileSize = (entry: ListFileEntry) => entry.lfs?.size ?? entry.size;

/** The name huggingface_hub gives a file's blob: its sha256 for an LFS file, its git blob id otherwise. */
function etagOf(entry: ListFileEntry, id: string): string {
  const etag = entry.lfs?.oid ?? entry.oid;
  if (!etag || !/^[0-9a-f]{40,64}$/.test(etag)) throw new HubError(`the hub listed ${entry.path} of ${id} without a hash to check it against`);
  return etag;
}

/** Hashes a downloaded file as the hub identifies it: sha256 of the bytes for LFS, sha1 of the git blob otherwise. */
async function contentHash(path: string, entry: ListFileEntry): Promise<string> {
  const hash = createHash(entry.lfs ? 'sha256' : 'sha1');
  if (!entry.lfs) hash.update(`blob ${statSync(path).size}\0`);
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

async function fetchFile(context: PullContext, entry: ListFileEntry): Promise<void> {
  const { request, repo, commit } = context;
  const { id, events } = request;
  const size = fileSize(entry);
  if (repo.hasFile(commit, entry.path, size)) {
    events.cached(entry.path, size);
    return;
  }
  const etag = etagOf(entry, id);
  const blob = repo.blob(etag);
  if (isFile(blob) && statSync(blob).size === size) {
    repo.link(commit, entry.path, etag);
    events.cached(entry.path, size);
    return;
  }
  mkdirSync(dirname(blob), { recursive: true });
  const partial = `${blob}.incomplete`;
  let failure = '';
  const delays = request.retryDelaysMs ?? RETRY_DELAYS_MS;
  for (let attempt = 1; attempt <= delays.length; attempt++) {
    if (delays[attempt - 1]! > 0) await new Promise((resolve) => setTimeout(resolve, delays[attempt - 1]));
    let offset = isFile(partial) ? statSync(partial).size : 0;
    if (offset > size) {
      unlinkSync(partial);
      offset = 0;
    }
    try {
      if (offset < size) {
        const remote = await context.hub.downloadFile({ repo: { type: 'model', name: id }, path: entry.path, revision: commit, hubUrl: request.access.endpoint, fetch: context.fetch });
        if (!remote) throw new HubError(`the hub lists ${entry.path} in ${id} at ${commit}, but has no such file`);
        events.started(entry.path, size, offset);
        const counter = new Transform({
          transform(chunk: Buffer, _encoding, callback) {
            context.fetchedBytes += chunk.length;
            offset += chunk.length;
            events.progress(entry.path, offset, size);
            callback(null, chunk);
          },
        });
        await pipeline(Readable.fromWeb(remote.slice(offset).stream() as WebReadableStream), counter, createWriteStream(partial, { flags: 'a' }));
      }
      const expected = entry.lfs ? entry.lfs.oid : etag;
      const actual = await contentHash(partial, entry);
      if (actual !== expected) {
        unlinkSync(partial);
        failure = `its ${entry.lfs ? 'sha256' : 'git blob id'} is ${actual}, not the ${expected} the hub lists`;
        events.retrying(entry.path, `${failure}: the file is discarded and fetched again`, attempt);
        continue;
      }
      renameSync(partial, blob);
      repo.link(commit, entry.path, etag);
      events.finished(entry.path, size);
      return;
    } catch (err) {
      if (err instanceof HubError) throw err;
      if (isHubRefusal(err)) throw describeFailure(err, { id, revision: request.revision, what: entry.path, file: true, access: request.access });
      failure = describeFailure(err, { id, revision: request.revision, what: entry.path, file: true, access: request.access }).reason;
      const kept = isFile(partial) ? statSync(partial).size : 0;
      events.retrying(entry.path, `${failure}${kept > 0 ? `; ${kept} of ${size} bytes kept, resuming from there` : ''}`, attempt);
    }
  }
  const kept = isFile(partial) ? statSync(partial).size : 0;
  throw new HubError(
    `cannot download ${entry.path} of ${id}: ${failure} (tried ${delays.length} times${kept > 0 ? `; the ${kept} bytes fetched are kept, and the next pull resumes from them` : ''}); check the network or HF_ENDPOINT, then run the pull again`,
  );
}
