import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeVariant } from '../../tools/model-variants.js';
import { hubAccess } from '../../src/model/hub/access.js';
import { locateModel } from '../../src/model/hub/locate.js';
import { pullModel, type PullRequest } from '../../src/model/hub/pull.js';
import type { PullEvents } from '../../src/model/hub/progress.js';
import { BIN, ROOT } from '../helpers/cli.js';
import { FakeHub } from '../helpers/fake-hub.js';
import { goldens } from '../helpers/goldens.js';
import { MODEL_DIRS, postJson, request, startTestServer } from '../helpers/server.js';

/**
 * Models by their Hugging Face id: fetched into the Hugging Face cache by the hub's own JavaScript
 * client from a hub on 127.0.0.1 (test/helpers/fake-hub.ts) that answers as huggingface.co does,
 * reached through HF_ENDPOINT.
 */

const ID = 'test-org/tiny-llama-ONNX';
const GATED = 'test-org/gated-llama';
const TOKEN = 'hf_testtoken0123456789';
const METADATA = ['config.json', 'generation_config.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json'];

const work = mkdtempSync(join(tmpdir(), 'ortserve-hub-'));
const hub = new FakeHub();
let repoFiles: Map<string, { bytes: Buffer; lfs?: string; gitId: string }>;
let commit: string;
afterAll(async () => {
  await hub.stop();
  rmSync(work, { recursive: true, force: true });
});

beforeAll(async () => {
  // A transformers.js repository: onnx/model.onnx with chunked external data, a q4 graph beside it, a README.
  const repo = join(work, 'repo');
  makeVariant('transformers-js', MODEL_DIRS['tiny-llama']!, repo);
  copyFileSync(join(MODEL_DIRS['tiny-llama']!, 'model.onnx'), join(repo, 'onnx', 'model_q4.onnx'));
  writeFileSync(join(repo, 'README.md'), '# tiny-llama, as ONNX\n');
  ({ commit, files: repoFiles } = hub.add(ID, { dir: repo }));
  hub.add(GATED, { dir: repo, gatedToken: TOKEN });
  await hub.start();
});

let caches = 0;
const newCache = () => join(work, `cache-${++caches}`);
const snapshotOf = (cache: string, id = ID) => join(cache, `models--${id.replace('/', '--')}`, 'snapshots', commit);
const blobOf = (cache: string, hash: string, id = ID) => join(cache, `models--${id.replace('/', '--')}`, 'blobs', hash);

/** Events of a pull, as a list of [event, path or detail]. */
function recorder(): { events: PullEvents; seen: [string, string][] } {
  const seen: [string, string][] = [];
  const events: PullEvents = {
    resolved: (info) => seen.push(['resolved', info.commit]),
    planned: (info) => seen.push(['planned', info.graph]),
    cached: (path) => seen.push(['cached', path]),
    started: (path, _size, offset) => seen.push(['started', `${path}@${offset}`]),
    progress: () => {},
    finished: (path) => seen.push(['finished', path]),
    retrying: (path, reason) => seen.push(['retrying', `${path}: ${reason}`]),
    done: (info) => seen.push(['done', String(info.fetchedBytes)]),
  };
  return { events, seen };
}

const pull = (cache: string, options: Partial<PullRequest> = {}) => {
  const { events, seen } = recorder();
  const result = pullModel({ id: ID, revision: 'main', cacheDir: cache, access: { endpoint: hub.url }, events, retryDelaysMs: [0, 0, 0, 0], ...options });
  return { result, seen };
};

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const graphFiles = () => [...repoFiles.keys()].filter((path) => path === 'onnx/model.onnx' || path.startsWith('onnx/model.onnx_data')).sort();
const transferred = () => new Set(hub.requests.flatMap((r) => (r.kind === 'resolve' && r.file ? [r.file] : [])));

function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, HF_TOKEN: '', HF_HUB_OFFLINE: '', ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
  child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

describe('ortserve pull ORG/NAME', () => {
  it('fetches the configuration, tokenizer and the default graph with its data into the Hugging Face cache layout, and nothing else', async () => {
    const cache = newCache();
    hub.requests.length = 0;
    const { code, stdout, stderr } = await run(['pull', ID], { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache });
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    const repo = join(cache, 'models--test-org--tiny-llama-ONNX');
    expect(readFileSync(join(repo, 'refs', 'main'), 'utf8')).toBe(commit);
    const wanted = [...METADATA, ...graphFiles()].sort();
    expect([...transferred()].sort()).toEqual(wanted);
    for (const path of wanted) {
      const link = join(snapshotOf(cache), path);
      // Each snapshot file is a relative link to its blob, named by its sha256 (LFS) or git id, as huggingface_hub writes them.
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      const file = repoFiles.get(path)!;
      expect(readlinkSync(link)).toBe(join(...path.split('/').slice(1).map(() => '..'), '..', '..', 'blobs', file.lfs ?? file.gitId));
      expect(readFileSync(link).equals(file.bytes)).toBe(true);
    }
    expect(readdirSync(join(repo, 'blobs')).some((name) => name.endsWith('.incomplete'))).toBe(false);
    // Progress as log lines when no terminal is attached.
    const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as { msg: string; file?: string });
    expect(lines.filter((line) => line.msg === 'downloaded and checked').map((line) => line.file).sort()).toEqual(wanted);
    expect(lines.at(-1)!.msg).toBe('model in the cache');
  });

  it('--dtype q4 fetches that graph only', async () => {
    const cache = newCache();
    hub.requests.length = 0;
    const { result } = pull(cache, { dtype: 'q4' });
    await result;
    expect([...transferred()].sort()).toEqual([...METADATA, 'onnx/model_q4.onnx'].sort());
  });

  it('an unknown dtype names those the repository has, before fetching a graph', async () => {
    const error = await pull(newCache(), { dtype: 'bnb4' }).result.catch((err: Error) => err);
    expect(String(error)).toMatch(/no bnb4 graph in test-org\/tiny-llama-ONNX.*the folder has --dtype fp32, q4/);
  });

  it('a second pull fetches nothing: the revision is asked for, the files are in the cache', async () => {
    const cache = newCache();
    await pull(cache).result;
    hub.requests.length = 0;
    const { result, seen } = pull(cache);
    expect((await result).fetchedBytes).toBe(0);
    expect(transferred().size).toBe(0);
    expect(seen.filter(([event]) => event === 'cached')).toHaveLength(METADATA.length + graphFiles().length);
  });

  it('a transfer cut midway resumes from the bytes it kept, with a Range request', async () => {
    const cache = newCache();
    const path = 'onnx/model.onnx_data';
    hub.faults.set(path, { cutAfter: 50_000, times: 1 });
    hub.requests.length = 0;
    const { result, seen } = pull(cache);
    await result;
    const [first, second, ...more] = hub.transfers(path).map((r) => r.range);
    expect(first).toBeUndefined();
    expect(more).toEqual([]);
    // A stream that fails drops the chunks its reader had not taken yet: the pull resumes from what it wrote.
    const resumedAt = Number(second?.match(new RegExp(`^bytes=(\\d+)-${repoFiles.get(path)!.bytes.length - 1}$`))?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(50_000);
    expect(seen).toContainEqual(['started', `${path}@${resumedAt}`]);
    expect(sha256(join(snapshotOf(cache), path))).toBe(repoFiles.get(path)!.lfs);
  });

  it('a pull that gives up keeps what it fetched, and the next pull resumes from there', async () => {
    const cache = newCache();
    const path = 'onnx/model.onnx_data_1';
    hub.faults.set(path, { cutAfter: 30_000, times: 4 });
    const error = await pull(cache).result.catch((err: Error) => err);
    const kept = Number(String(error).match(new RegExp(`cannot download ${path} of ${ID}: .*tried 4 times; the (\\d+) bytes fetched are kept, and the next pull resumes from them`))?.[1]);
    // Four transfers cut after 30,000 bytes each, less what a failing stream dropped before it was read.
    expect(kept).toBeGreaterThan(30_000);
    expect(kept).toBeLessThanOrEqual(120_000);
    expect(statSync(`${blobOf(cache, repoFiles.get(path)!.lfs!)}.incomplete`).size).toBe(kept);
    hub.requests.length = 0;
    await pull(cache).result;
    expect(hub.transfers(path).map((r) => r.range)).toEqual([`bytes=${kept}-${repoFiles.get(path)!.bytes.length - 1}`]);
    expect(sha256(join(snapshotOf(cache), path))).toBe(repoFiles.get(path)!.lfs);
  });

  it('a file whose sha256 is not the one the hub lists is discarded and fetched again', async () => {
    const cache = newCache();
    const path = 'onnx/model.onnx';
    hub.faults.set(path, { corrupt: true, times: 1 });
    hub.requests.length = 0;
    const { result, seen } = pull(cache);
    await result;
    expect(hub.transfers(path)).toHaveLength(2);
    expect(seen.find(([event]) => event === 'retrying')![1]).toMatch(/onnx\/model.onnx: its sha256 is [0-9a-f]{64}, not the [0-9a-f]{64} the hub lists: the file is discarded and fetched again/);
    expect(sha256(join(snapshotOf(cache), path))).toBe(repoFiles.get(path)!.lfs);
  });

  it('a file that stays corrupt is refused, naming it, and nothing corrupt is left in the cache', async () => {
    const cache = newCache();
    hub.faults.set('tokenizer_config.json', { corrupt: true, times: 4 });
    const error = await pull(cache).result.catch((err: Error) => err);
    expect(String(error)).toMatch(/cannot download tokenizer_config.json of test-org\/tiny-llama-ONNX: its git blob id is [0-9a-f]{40}, not the [0-9a-f]{40} the hub lists/);
    expect(existsSync(join(snapshotOf(cache), 'tokenizer_config.json'))).toBe(false);
    expect(existsSync(join(cache, 'models--test-org--tiny-llama-ONNX', 'refs', 'main'))).toBe(false);
  });

  it('a gated repository without a token is a 401 told as what to do; with HF_TOKEN it is fetched, the token sent to the hub only', async () => {
    const cache = newCache();
    const refused = await run(['pull', GATED], { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^ortserve pull: the hub \(http:\/\/127.0.0.1:\d+\) answered 401 for config.json .*test-org\/gated-llama is gated or private: accept its terms on its hub page, then set HF_TOKEN/);
    hub.requests.length = 0;
    const allowed = await run(['pull', GATED], { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_TOKEN: TOKEN });
    expect(allowed.code).toBe(0);
    expect(hub.requests.length).toBeGreaterThan(0);
    expect(hub.requests.every((r) => r.authorized)).toBe(true);
  });

  it('a hub that cannot be reached is one sentence naming it and what to do', async () => {
    const closed = await closedPort();
    const error = await pull(newCache(), { access: { endpoint: `http://127.0.0.1:${closed}` } }).result.catch((err: Error) => err);
    expect(String(error)).toMatch(new RegExp(`cannot reach http://127.0.0.1:${closed} for the files of ${ID} at main \\(ECONNREFUSED.*\\): check the network, HF_ENDPOINT or the proxy`));
  });

  it('HF_ENDPOINT that is not a URL is said at once', () => {
    expect(() => hubAccess({ HF_ENDPOINT: 'not a url' })).toThrow('HF_ENDPOINT is not an http(s) URL: not a url');
  });
});

describe('--model ORG/NAME', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const key of ['HF_ENDPOINT', 'HF_HUB_CACHE', 'HF_TOKEN', 'HF_HUB_OFFLINE']) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
  });

  it('pulls the model, serves it under its hub id with Hugging Face\'s tokens, and a restart fetches no file', async () => {
    const cache = newCache();
    Object.assign(process.env, { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache });
    delete process.env.HF_TOKEN;
    for (let start = 0; start < 2; start++) {
      hub.requests.length = 0;
      const server = await startTestServer({ model: ID });
      try {
        if (start === 1) expect(transferred().size).toBe(0);
        const models = await request(server, 'GET', '/v1/models');
        expect((models.body as { data: { id: string }[] }).data.map((model) => model.id)).toEqual([ID]);
        const golden = goldens['tiny-llama'].prompts[0]!;
        const { status, body } = await postJson(server, '/v1/completions', { model: ID, prompt: golden.prompt, max_tokens: 24, temperature: 0 });
        expect(status).toBe(200);
        expect((body as { choices: { text: string }[] }).choices[0]!.text).toBe(golden.completion_text);
      } finally {
        await server.close();
      }
    }
  });

  it('offline, a cached model is served without a single request to the hub', async () => {
    const cache = newCache();
    await pull(cache).result;
    hub.requests.length = 0;
    Object.assign(process.env, { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache });
    const server = await startTestServer({ model: ID, offline: true });
    await server.close();
    expect(hub.requests).toHaveLength(0);
  });

  it('offline, a model not in the cache is refused with what to do, without a request', async () => {
    const cache = newCache();
    hub.requests.length = 0;
    const { code, stderr } = await run(['--model', ID, '--port', '0'], { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1' });
    expect(code).toBe(1);
    expect(stderr).toContain(`ortserve: cannot load the model: ${ID} (revision main) is not in the Hugging Face cache (${cache}), and offline mode (--offline or HF_HUB_OFFLINE) forbids fetching it: run \`ortserve pull ${ID}\``);
    expect(hub.requests).toHaveLength(0);
  });

  it('a hub that cannot be reached leaves the cached snapshot served, with a warning', async () => {
    const cache = newCache();
    await pull(cache).result;
    const warnings: string[] = [];
    const located = await locateModel(
      { model: ID, revision: 'main', offline: false },
      { info: () => {}, warn: (_fields, message) => warnings.push(message) },
      { env: { HF_ENDPOINT: `http://127.0.0.1:${await closedPort()}`, HF_HUB_CACHE: cache } },
    );
    expect(located.dir).toBe(snapshotOf(cache));
    expect(warnings[0]).toMatch(/^cannot reach .*; serving the cache's snapshot/);
  });
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
