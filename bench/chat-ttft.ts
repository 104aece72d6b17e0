/**
 * Time to first token of each turn of a 16-turn chat, with the prefix cache (the default) and
 * without it (`--prefix-cache-tokens 0`), one server after the other, greedy, 8 tokens per reply.
 * Each turn sends the whole conversation so far; with the cache, its earlier turns' chunks are
 * reused. Prints, for turn 16, the medians over the rounds and their ratio, and checks that both
 * servers gave every turn the same reply.
 *
 *   npx tsx bench/chat-ttft.ts                                   # default model, 3 rounds
 *   npx tsx bench/chat-ttft.ts --model bench/models/bench-gpt2-124m --rounds 3
 */
import { parseArgs } from 'node:util';
import { defaultConfig } from '../src/config.js';
import { startServer, type RunningServer } from '../src/server.js';
import { sseData } from './common.js';

const { values } = parseArgs({ options: { model: { type: 'string' }, rounds: { type: 'string', default: '3' }, turns: { type: 'string', default: '16' } } });
const rounds = Number(values.rounds);
const turns = Number(values.turns);

const QUESTIONS = ['What did the dog do next?', 'Where did they go?', 'Who did they meet there?', 'Was anyone sad?', 'What happened at the end?', 'Why?'];
const SYSTEM = 'You tell short, happy stories for children. A little dog named Max lives in a small town with his friend Lily, who loves to play in the park.';

interface Turn {
  ttftMs: number;
  promptTokens: number;
  cachedTokens: number;
  reply: string;
}

async function chatTurn(server: RunningServer, messages: { role: string; content: string }[]): Promise<Turn> {
  const started = performance.now();
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: server.model.id, messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true } }),
  });
  if (!response.ok) throw new Error(`turn of ${messages.length} messages: ${response.status} ${await response.text()}`);
  let ttftMs = 0;
  let reply = '';
  let usage = { prompt_tokens: 0, prompt_tokens_details: { cached_tokens: 0 } };
  for await (const { data, receivedAt } of sseData(response.body!)) {
    if (data === '[DONE]') continue;
    const chunk = JSON.parse(data);
    const content = chunk.choices?.[0]?.delta?.content;
    if (content && !ttftMs) ttftMs = receivedAt - started;
    reply += content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  return { ttftMs, promptTokens: usage.prompt_tokens, cachedTokens: usage.prompt_tokens_details.cached_tokens, reply };
}

/** One chat of `turns` turns under the system prompt `system`: each turn's numbers. */
async function chat(server: RunningServer, system: string): Promise<Turn[]> {
  const messages = [{ role: 'system', content: system }];
  const result: Turn[] = [];
  for (let turn = 0; turn < turns; turn++) {
    messages.push({ role: 'user', content: QUESTIONS[turn % QUESTIONS.length]! });
    const answer = await chatTurn(server, messages);
    messages.push({ role: 'assistant', content: answer.reply });
    result.push(answer);
  }
  return result;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** The chats of every round on a server with `prefixCacheTokens`; each round's system prompt differs, so no round reuses another's chunks. */
async function measure(prefixCacheTokens: number): Promise<Turn[][]> {
  const config = { ...defaultConfig(), host: '127.0.0.1', port: 0, logLevel: 'silent' as const, prefixCacheTokens, ...(values.model && { model: values.model }) };
  const server = await startServer(config);
  try {
    await chat(server, `${SYSTEM} (A warm-up.)`);
    const all: Turn[][] = [];
    for (let round = 1; round <= rounds; round++) all.push(await chat(server, `${SYSTEM} (Story ${round}.)`));
    return all;
  } finally {
    await server.close();
  }
}

const cached = await measure(defaultConfig().prefixCacheTokens);
const uncached = await measure(0);
const last = (chats: Turn[][]) => chats.map((turnsOfChat) => turnsOfChat[turns - 1]!);
const sameReplies = cached.every((turnsOfChat, round) => turnsOfChat.every((turn, i) => turn.reply === uncached[round]![i]!.reply));
const withCache = median(last(cached).map((turn) => turn.ttftMs));
const without = median(last(uncached).map((turn) => turn.ttftMs));
console.log(
  JSON.stringify({
    model: values.model ?? 'default',
    turn: turns,
    promptTokens: last(cached)[0]!.promptTokens,
    cachedTokens: last(cached).map((turn) => turn.cachedTokens),
    ttftWithCacheMs: last(cached).map((turn) => Math.round(turn.ttftMs)),
    ttftWithoutCacheMs: last(uncached).map((turn) => Math.round(turn.ttftMs)),
    medianWithCacheMs: Math.round(withCache),
    medianWithoutCacheMs: Math.round(without),
    speedup: Number((without / withCache).toFixed(2)),
    sameReplies,
  }),
);
