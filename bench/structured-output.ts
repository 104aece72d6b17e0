/**
 * What decoding under a grammar costs, in one run on one server:
 * - throughput: 16 concurrent chat clients with a json_schema response_format against 16 without,
 *   decode tokens per second (completion tokens / wall time), medians of 5 rounds, and their ratio;
 * - stall: the longest gap between two streamed tokens of 8 running streams while a request with a
 *   new (uncached) schema arrives, against the longest gap in the same streams without it, medians
 *   of 5 rounds; and how long that request took (its schema is compiled in the check, then again
 *   in the engine).
 *
 *   npx tsx bench/structured-output.ts [model dir]   (default: the embedded model)
 */
import { defaultConfig } from '../src/config.js';
import { startServer } from '../src/server.js';

const models = process.argv[2] ? [process.argv[2]] : [];
const server = await startServer({ ...defaultConfig(), models, host: '127.0.0.1', port: 0, logLevel: 'silent' });
const id = server.model.id;
const MAX_TOKENS = 96;
const STORY = {
  type: 'object',
  properties: { title: { type: 'string' }, story: { type: 'string' }, happy: { type: 'boolean' } },
  required: ['title', 'story', 'happy'],
  additionalProperties: false,
};
const prompts = ['Tell me a story about a cat.', 'Once upon a time', 'The little dog', 'Lily and Ben went to the park.'];

const chat = (body: Record<string, unknown>) =>
  fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: id, max_tokens: MAX_TOKENS, temperature: 1, ...body }),
  });

async function throughput(constrained: boolean, round: number): Promise<number> {
  const started = performance.now();
  const replies = await Promise.all(
    Array.from({ length: 16 }, async (_, client) => {
      const format = constrained ? { response_format: { type: 'json_schema', json_schema: { name: 'story', schema: STORY } } } : {};
      const response = await chat({ messages: [{ role: 'user', content: prompts[client % prompts.length] }], seed: round * 16 + client, ...format });
      return (await response.json()) as { usage: { completion_tokens: number } };
    }),
  );
  const tokens = replies.reduce((sum, reply) => sum + reply.usage.completion_tokens, 0);
  return tokens / ((performance.now() - started) / 1000);
}

/** The longest gap between two chunks of 8 streams, with `during` sent once they run. */
async function longestGap(during?: () => Promise<unknown>): Promise<number> {
  let longest = 0;
  const streams = Array.from({ length: 8 }, async (_, client) => {
    const response = await chat({ messages: [{ role: 'user', content: prompts[client % prompts.length] }], stream: true, max_tokens: 200, seed: client, logit_bias: { [String(server.model.config.eosTokenIds[0])]: -100 } });
    let last = 0;
    let chunks = 0;
    for await (const _ of response.body!) {
      const now = performance.now();
      // Gaps from the tenth chunk on: all streams are decoding by then.
      if (++chunks > 10) longest = Math.max(longest, now - last);
      last = now;
    }
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  await during?.();
  await Promise.all(streams);
  return longest;
}

let schemaNumber = 0;
/** A schema never seen before (so it is compiled, twice), with length-bounded strings: the costliest kind. */
const newLargeSchema = () => ({
  type: 'object',
  properties: Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`field_${schemaNumber}_${i}`, { type: 'string', minLength: 1, maxLength: 24 + i }])),
  required: [`field_${schemaNumber++}_0`],
});

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

await throughput(false, 0);
await throughput(true, 0);
const plain: number[] = [];
const constrained: number[] = [];
for (let round = 1; round <= 5; round++) {
  plain.push(await throughput(false, round));
  constrained.push(await throughput(true, round));
}

const quiet: number[] = [];
const compiling: number[] = [];
const requestMs: number[] = [];
for (let round = 0; round < 5; round++) {
  quiet.push(await longestGap());
  compiling.push(
    await longestGap(async () => {
      const started = performance.now();
      const response = await chat({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, response_format: { type: 'json_schema', json_schema: { name: 'large', schema: newLargeSchema() } } });
      await response.text();
      requestMs.push(performance.now() - started);
    }),
  );
}

console.log(
  JSON.stringify(
    {
      model: id,
      decodeTokensPerSecond16Clients: { plain: Math.round(median(plain)), jsonSchema: Math.round(median(constrained)), ratio: +(median(constrained) / median(plain)).toFixed(3) },
      longestGapMs8Streams: { quiet: Math.round(median(quiet)), whileANewSchemaCompiles: Math.round(median(compiling)), newSchemaRequestMs: Math.round(median(requestMs)) },
    },
    null,
    2,
  ),
);
await server.close();
