/**
 * The ortserve runner: streaming clients against the server as a child process (startServer and
 * stopServer are in common.ts), 1, 4 and 16 at a time, with GET /health probed while they run.
 */
import { NEW_TOKENS, PROMPT_TOKENS, percentile, sseData, summarize, type Summary } from './common.js';
import type { ModelInfo, Prompt } from './model-sets.js';

const CLIENT_COUNTS = [1, 4, 16] as const;

interface StreamResult {
  sent: number;
  done: number;
  /** Arrival times of the SSE chunks that carry text. */
  arrivals: number[];
  text: string;
  usageTokens: number | undefined;
  finishReason: string | undefined;
  error: string | undefined;
}

interface CompletionChunk {
  choices?: { text?: string; finish_reason?: string | null }[];
  usage?: { completion_tokens?: number } | null;
  error?: { message?: string };
}

/** One streaming client (POST /v1/completions, stream: true, greedy, NEW_TOKENS tokens). */
async function streamCompletion(url: string, model: string, prompt: string, maxTokens: number): Promise<StreamResult> {
  const result: StreamResult = { sent: performance.now(), done: 0, arrivals: [], text: '', usageTokens: undefined, finishReason: undefined, error: undefined };
  try {
    const response = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, prompt, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } }),
      signal: AbortSignal.timeout(300_000),
    });
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
    for await (const { data, receivedAt: now } of sseData(response.body)) {
      if (data === '[DONE]') continue;
      const chunk = JSON.parse(data) as CompletionChunk;
      if (chunk.error) result.error = chunk.error.message ?? 'error event';
      if (chunk.usage) result.usageTokens = chunk.usage.completion_tokens;
      const choice = chunk.choices?.[0];
      if (choice?.text) {
        result.arrivals.push(now);
        result.text += choice.text;
      }
      if (choice?.finish_reason) result.finishReason = choice.finish_reason;
    }
  } catch (err) {
    result.error = (err as Error).message;
  }
  result.done = performance.now();
  return result;
}

export interface ServerResult {
  clients: number;
  wallMs: number;
  /** Completion tokens (usage of each stream) / wall time from the first request sent to the last stream finished. */
  tokensPerSecond: number;
  completionTokens: number;
  /** Text-bearing SSE chunks over all streams (normally one per token). */
  textChunks: number;
  ttftP50Ms: number;
  ttftP95Ms: number;
  itlP50Ms: number;
  itlP95Ms: number;
  itlMaxMs: number;
  /** Streams that ended with finish_reason length and NEW_TOKENS tokens. */
  fullStreams: number;
  shortStreams: { client: number; tokens: number | undefined; finishReason: string | undefined; error: string | undefined }[];
  /** Streams whose text equals the decoded greedy tokens of the raw loop. */
  matchesRaw: number;
  /** Over all streams, the raw loop's greedy tokens, from the first, whose text the stream's begins with. */
  leadingTokensAsRaw: number;
  /** `GET /health` latency, probed one after another while the streams run. */
  healthP50Ms: number;
  healthMaxMs: number;
}

/** Probes `GET /health` one after another, 20 ms apart, until `done` settles: the HTTP thread's responsiveness under load. */
async function probeHealth(url: string, done: Promise<unknown>): Promise<number[]> {
  let finished = false;
  void done.finally(() => (finished = true));
  const latencies: number[] = [];
  while (!finished) {
    const sent = performance.now();
    await fetch(`${url}/health`).then((response) => response.text());
    latencies.push(performance.now() - sent);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return latencies;
}

/** How many of the raw loop's tokens, from the first, `text` begins with; `prefixes[k]` is the text of its first k + 1. */
function leadingTokens(text: string, prefixes: readonly string[]): number {
  let count = 0;
  while (count < prefixes.length && text.startsWith(prefixes[count]!)) count++;
  return count;
}

async function runClients(url: string, model: ModelInfo, prompts: Prompt[], clients: number, rawPrefixes: string[][]): Promise<ServerResult> {
  const start = performance.now();
  const running = Promise.all(prompts.slice(0, clients).map((p) => streamCompletion(url, model.id, p.text, NEW_TOKENS)));
  const [streams, health] = await Promise.all([running, probeHealth(url, running)]);
  const end = Math.max(...streams.map((s) => s.done));
  const completionTokens = streams.reduce((sum, s) => sum + (s.usageTokens ?? s.arrivals.length), 0);
  const ttfts = streams.filter((s) => s.arrivals.length > 0).map((s) => s.arrivals[0]! - s.sent);
  const gaps = streams.flatMap((s) => s.arrivals.slice(1).map((t, i) => t - s.arrivals[i]!));
  const shortStreams = streams
    .map((s, client) => ({ client, tokens: s.usageTokens, finishReason: s.finishReason, error: s.error }))
    .filter((s) => s.tokens !== NEW_TOKENS || s.finishReason !== 'length' || s.error !== undefined);
  return {
    clients,
    wallMs: end - start,
    tokensPerSecond: completionTokens / ((end - start) / 1000),
    completionTokens,
    textChunks: streams.reduce((sum, s) => sum + s.arrivals.length, 0),
    ttftP50Ms: percentile(ttfts, 50),
    ttftP95Ms: percentile(ttfts, 95),
    itlP50Ms: percentile(gaps, 50),
    itlP95Ms: percentile(gaps, 95),
    itlMaxMs: Math.max(...gaps),
    fullStreams: clients - shortStreams.length,
    shortStreams,
    matchesRaw: streams.filter((s, i) => s.text === rawPrefixes[i]!.at(-1)).length,
    leadingTokensAsRaw: streams.reduce((sum, s, i) => sum + leadingTokens(s.text, rawPrefixes[i]!), 0),
    healthP50Ms: percentile(health, 50),
    healthMaxMs: Math.max(...health),
  };
}

/** Non-streaming, max_tokens 1: the server must count every prompt as exactly PROMPT_TOKENS tokens. */
async function checkPromptTokens(url: string, model: ModelInfo, prompts: Prompt[]): Promise<number[]> {
  const counts: number[] = [];
  for (const prompt of prompts) {
    const response = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: model.id, prompt: prompt.text, max_tokens: 1, temperature: 0 }),
    });
    const body = (await response.json()) as { usage?: { prompt_tokens?: number } };
    counts.push(body.usage?.prompt_tokens ?? NaN);
  }
  return counts;
}

/** ortserve's runs of one model, round by round; what went amiss goes to `notes`. */
export class OrtserveRounds {
  private readonly runs = new Map<number, ServerResult[]>(CLIENT_COUNTS.map((clients) => [clients, []]));

  /** The text of each prompt's first k + 1 greedy tokens from the raw loop, for every k: a stream's text should be the last. */
  private readonly rawPrefixes: string[][];

  /** `rawIds`: the raw loop's greedy ids of each prompt, whose text every stream should be. */
  constructor(
    private readonly url: string,
    private readonly model: ModelInfo,
    private readonly prompts: Prompt[],
    rawIds: number[][],
    private readonly notes: string[],
  ) {
    this.rawPrefixes = rawIds.map((ids) => ids.map((_, k) => model.tokenizer.decode(ids.slice(0, k + 1), { skip_special_tokens: true })));
  }

  /** Checks that the server counts every prompt as PROMPT_TOKENS tokens, and warms it up; returns the counts. */
  async prepare(): Promise<number[]> {
    const promptTokensSeenByServer = await checkPromptTokens(this.url, this.model, this.prompts);
    const bad = promptTokensSeenByServer.filter((n) => n !== PROMPT_TOKENS).length;
    if (bad > 0) this.notes.push(`${bad} prompt(s) were not ${PROMPT_TOKENS} tokens for the server: ${promptTokensSeenByServer.join(',')}`);
    const warmUp = await streamCompletion(this.url, this.model.id, this.prompts[0]!.text, 16);
    if (warmUp.error) throw new Error(`ortserve's warm-up completion failed: ${warmUp.error}`);
    return promptTokensSeenByServer;
  }

  async round(round: number): Promise<void> {
    for (const clients of CLIENT_COUNTS) {
      const result = await runClients(this.url, this.model, this.prompts, clients, this.rawPrefixes);
      this.runs.get(clients)!.push(result);
      for (const s of result.shortStreams) {
        this.notes.push(`round ${round}, ortserve ${clients} clients: stream ${s.client} got ${s.tokens ?? '?'} tokens, finish_reason ${s.finishReason ?? '?'}${s.error ? `, error: ${s.error}` : ''}`);
      }
      if (result.matchesRaw !== clients) {
        const tokens = this.rawPrefixes.slice(0, clients).reduce((sum, prefixes) => sum + prefixes.length, 0);
        this.notes.push(
          `round ${round}, ortserve ${clients} clients: ${result.matchesRaw}/${clients} streams' text equals the raw loop's greedy text; ${result.leadingTokensAsRaw}/${tokens} of its tokens, each stream's from the first, begin the streams`,
        );
      }
      if (result.textChunks !== result.completionTokens) {
        this.notes.push(`round ${round}, ortserve ${clients} clients: ${result.textChunks} text chunks for ${result.completionTokens} tokens (a chunk may carry several tokens, e.g. a multi-byte character)`);
      }
    }
  }

  /** The median round (by tokens/s) of each client count. */
  summaries(): Summary<ServerResult>[] {
    return CLIENT_COUNTS.map((clients) => summarize(this.runs.get(clients)!, (r) => r.tokensPerSecond));
  }
}
