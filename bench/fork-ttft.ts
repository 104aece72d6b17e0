/**
 * Time to first token of one streamed completion with n: 16 against n: 1, same prompt of 288
 * tokens, on the default model: a prompt is prefilled once for all its choices, so the ratio
 * should stay close to 1. Prints medians of 7 rounds after a warm-up.
 *
 *   npx tsx bench/fork-ttft.ts
 */
import { defaultConfig } from '../src/config.js';
import { startServer } from '../src/server.js';

const server = await startServer({ ...defaultConfig(), host: '127.0.0.1', port: 0, logLevel: 'silent' });
const prompt = 'Once upon a time there was a little dog named Max. Max liked to run in the park with his friends. '.repeat(12);
const post = (body: Record<string, unknown>) =>
  fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: server.model.id, prompt, ...body }) });

async function timeToFirstText(n: number): Promise<number> {
  const started = performance.now();
  const response = await post({ n, max_tokens: 4, stream: true, seed: 1 });
  const decoder = new TextDecoder();
  let text = '';
  let first = 0;
  for await (const bytes of response.body!) {
    text += decoder.decode(bytes, { stream: true });
    if (!first && /"text":"[^"]/.test(text)) first = performance.now() - started;
  }
  return first;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const { usage } = (await (await post({ max_tokens: 1 })).json()) as { usage: { prompt_tokens: number } };
await timeToFirstText(1);
await timeToFirstText(16);
const one: number[] = [];
const sixteen: number[] = [];
for (let round = 0; round < 7; round++) {
  one.push(await timeToFirstText(1));
  sixteen.push(await timeToFirstText(16));
}
console.log(
  JSON.stringify({
    promptTokens: usage.prompt_tokens,
    n1Ms: one.map(Math.round),
    n16Ms: sixteen.map(Math.round),
    medianN1Ms: Math.round(median(one)),
    medianN16Ms: Math.round(median(sixteen)),
    ratio: Number((median(sixteen) / median(one)).toFixed(2)),
  }),
);
await server.close();
