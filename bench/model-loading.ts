/**
 * Load, unload and reload times and memory of models served from one folder (`--models-dir`):
 *
 *   npx tsx bench/model-loading.ts [--rounds 3] [MODEL_DIR ...]
 *
 * Default models: the tiny-llama and tiny-gpt2 test fixtures and bench-llama-135m. The server runs
 * in this process, so the resident set size (RSS) counts its engines and workers: each model's
 * memory is the RSS gained by loading it, and what unloading gives back. Per round and model:
 * POST /models/load (timed), a 16-token completion, POST /models/unload (timed), then a reload.
 * Medians of the rounds.
 */
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultConfig } from '../src/config.js';
import { startServer } from '../src/server.js';
import { ensureWeights, ROOT } from './common.js';

const { values, positionals } = parseArgs({ options: { rounds: { type: 'string', default: '3' } }, allowPositionals: true });
const rounds = Number(values.rounds);
const dirs = positionals.length > 0 ? positionals.map((dir) => resolve(dir)) : [join(ROOT, 'test/fixtures/models/tiny-llama'), join(ROOT, 'test/fixtures/models/tiny-gpt2'), join(ROOT, 'bench/models/bench-llama-135m')];
for (const dir of dirs) await ensureWeights(dir);

const folder = mkdtempSync(join(tmpdir(), 'ortserve-loading-'));
for (const dir of dirs) symlinkSync(dir, join(folder, basename(dir)));
const server = await startServer({ ...defaultConfig(), models: [], modelsDir: folder, keepAliveMs: -1, maxKvTokens: 4096, host: '127.0.0.1', port: 0, logLevel: 'silent' });

const mib = () => process.memoryUsage().rss / 2 ** 20;
const post = async (path: string, body: unknown) => {
  const response = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json() as Promise<unknown>;
};
const timed = async (run: () => Promise<unknown>) => {
  const start = performance.now();
  await run();
  return (performance.now() - start) / 1000;
};
const settle = () => new Promise((done) => setTimeout(done, 500));
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

interface Round {
  loadSeconds: number;
  loadedMiB: number;
  afterCompletionMiB: number;
  unloadSeconds: number;
  releasedMiB: number;
  reloadSeconds: number;
}
const results = new Map<string, Round[]>();
try {
  for (let round = 0; round < rounds; round++) {
    for (const dir of dirs) {
      const model = basename(dir);
      await settle();
      const before = mib();
      const loadSeconds = await timed(() => post('/models/load', { model }));
      const loaded = mib();
      await post('/v1/completions', { model, prompt: 'Once upon a time', max_tokens: 16, temperature: 0 });
      const afterCompletion = mib();
      const unloadSeconds = await timed(() => post('/models/unload', { model }));
      await settle();
      const released = mib();
      const reloadSeconds = await timed(() => post('/models/load', { model }));
      await post('/models/unload', { model });
      const entry = { loadSeconds, loadedMiB: loaded - before, afterCompletionMiB: afterCompletion - before, unloadSeconds, releasedMiB: afterCompletion - released, reloadSeconds };
      results.set(model, [...(results.get(model) ?? []), entry]);
      process.stderr.write(`[model-loading] round ${round + 1} ${model}: ${JSON.stringify(entry)}\n`);
    }
  }
} finally {
  await server.close();
  rmSync(folder, { recursive: true, force: true });
}

const flags = cpus()[0]?.model ?? 'unknown CPU';
console.log(`\n${flags}, ${cpus().length} cores; medians of ${rounds} rounds\n`);
console.log('| model | load s | RSS after load MiB | after a completion MiB | unload s | RSS given back MiB | reload s |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const [model, entries] of results) {
  const m = (key: keyof Round) => median(entries.map((entry) => entry[key]));
  console.log(`| ${model} | ${m('loadSeconds').toFixed(2)} | ${m('loadedMiB').toFixed(0)} | ${m('afterCompletionMiB').toFixed(0)} | ${m('unloadSeconds').toFixed(2)} | ${m('releasedMiB').toFixed(0)} | ${m('reloadSeconds').toFixed(2)} |`);
}
