import type { SequenceRequest } from '../../src/engine/protocol.js';
import { AfterReasoning, GrammarProcessor, LogitBiasProcessor, logitsProcessors, PenaltyProcessor, Utf8Processor, type LogitsProcessor } from '../../src/engine/thread/logits-processors.js';
import { Sequence } from '../../src/engine/thread/sequence.js';

const VOCAB = 8;
const request = (fields: Partial<SequenceRequest> = {}): SequenceRequest => ({
  id: 1,
  group: 1,
  cachePartition: '',
  promptIds: [1, 2, 3],
  maxTokens: 4,
  temperature: 0,
  topP: 1,
  seedStream: 0,
  stopTokenIds: [7],
  presencePenalty: 0,
  frequencyPenalty: 0,
  logitBias: [],
  ...fields,
});
const flat = () => new Float32Array(VOCAB);

describe('logits processors', () => {
  it('penalties subtract count × frequency + presence from each token generated so far', () => {
    const penalties = new PenaltyProcessor(0.5, 0.25);
    for (const token of [2, 2, 5]) penalties.accept(token);
    const logits = flat();
    penalties.apply(logits);
    expect([...logits]).toEqual([0, 0, -(2 * 0.25 + 0.5), 0, 0, -(0.25 + 0.5), 0, 0]);
  });

  it('the bias is added to the tokens it names, and ids outside the vocabulary are ignored', () => {
    const logits = flat();
    new LogitBiasProcessor([[3, 5], [1, -100], [99, 7]]).apply(logits);
    expect([...logits]).toEqual([0, -100, 0, 5, 0, 0, 0, 0]);
  });

  it('a request gets the processors it asks for, penalties before the bias, and none otherwise', () => {
    expect(logitsProcessors(request())).toEqual([]);
    const chain = logitsProcessors(request({ frequencyPenalty: 1, logitBias: [[2, 1]] }));
    expect(chain.map((processor) => processor.constructor)).toEqual([PenaltyProcessor, LogitBiasProcessor]);
  });
});

describe('Sequence', () => {
  /** Bans every token but `allowed`, and records what it is told. */
  class OnlyToken implements LogitsProcessor {
    readonly accepted: number[] = [];
    ends = 0;
    constructor(private readonly allowed: number) {}
    apply(logits: Float32Array): void {
      logits.forEach((_, id) => (logits[id] = id === this.allowed ? 0 : -Infinity));
    }
    accept(tokenId: number): void {
      this.accepted.push(tokenId);
    }
    end(): void {
      this.ends++;
    }
  }

  it('passes the logits through its processors before sampling, tells them each token, and ends them once', () => {
    const only = new OnlyToken(4);
    const sequence = new Sequence(request(), 512, [only]);
    const updates = Array.from({ length: 4 }, () => sequence.accept(flat(), new Float64Array(VOCAB)));
    expect(updates.map((update) => update.tokenId)).toEqual([4, 4, 4, 4]);
    expect(updates.map((update) => update.finishReason)).toEqual([undefined, undefined, undefined, 'length']);
    expect(only.accepted).toEqual([4, 4, 4, 4]);
    expect(only.ends).toBe(1);
    sequence.cancel();
    expect(only.ends).toBe(1);
  });

  it('stops at a stop token, and a cancelled sequence ends its processors', () => {
    const stopping = new Sequence(request(), 512, [new OnlyToken(7)]);
    expect(stopping.accept(flat(), new Float64Array(VOCAB))).toMatchObject({ tokenId: 7, finishReason: 'stop' });
    const only = new OnlyToken(1);
    const cancelled = new Sequence(request(), 512, [only]);
    cancelled.cancel();
    expect(cancelled.cancelled).toBe(true);
    expect(only.ends).toBe(1);
  });

  it('reports log-probabilities of the logits as the model gave them, before any processor', () => {
    const logits = Float32Array.from([0, 1, 2, 3, 0, 0, 0, 0]);
    const sequence = new Sequence(request({ logprobs: 0 }), 512, [new OnlyToken(0)]);
    const update = sequence.accept(logits.slice(), new Float64Array(VOCAB));
    const lse = Math.log([...logits].reduce((sum, value) => sum + Math.exp(value), 0));
    expect(update.tokenId).toBe(0);
    expect(update.logprob!.logprob).toBeCloseTo(0 - lse, 5);
  });

  it('ends at the context length, whatever max_tokens says', () => {
    const sequence = new Sequence(request({ maxTokens: 100 }), 5, [new OnlyToken(2)]);
    expect(sequence.accept(flat(), new Float64Array(VOCAB)).finishReason).toBeUndefined();
    expect(sequence.accept(flat(), new Float64Array(VOCAB)).finishReason).toBe('length');
  });
});

describe('GrammarProcessor', () => {
  /** A matcher whose masks allow the given token ids, one set per step. */
  const matcher = (steps: number[][]) => {
    const accepted: number[] = [];
    return {
      accepted,
      nextTokenMask: async () => {
        const mask = new Int32Array(3);
        for (const token of steps[accepted.length] ?? []) mask[token >>> 5]! |= 1 << (token & 31);
        return mask;
      },
      accept: (token: number) => accepted.push(token) > 0,
      dispose: () => {},
    };
  };

  it('leaves the allowed tokens as they are and sets every other one to −∞, across whole and partial words', async () => {
    const allowed = [0, 31, 32, 33, 64, 70];
    const processor = new GrammarProcessor(matcher([allowed]), [2]);
    await processor.prepare();
    const logits = Float32Array.from({ length: 71 }, (_, i) => i / 10);
    processor.apply(logits);
    logits.forEach((value, token) => expect([token, value]).toEqual([token, allowed.includes(token) ? Math.fround(token / 10) : Number.NEGATIVE_INFINITY]));
  });

  it('a whole word allowed (all 32 bits) is left alone', async () => {
    const all = Array.from({ length: 32 }, (_, i) => 32 + i);
    const processor = new GrammarProcessor(matcher([all]), [2]);
    await processor.prepare();
    const logits = new Float32Array(70).fill(1);
    processor.apply(logits);
    expect([...logits].map((value, token) => (value === 1 ? token : -1)).filter((token) => token >= 0)).toEqual(all);
  });

  it('passes the sampled token to the matcher, and ends at a stop token when the grammar allows nothing', async () => {
    const fake = matcher([[5], []]);
    const processor = new GrammarProcessor(fake, [2]);
    await processor.prepare();
    processor.accept(5);
    expect(fake.accepted).toEqual([5]);
    await processor.prepare();
    const logits = new Float32Array(8).fill(3);
    processor.apply(logits);
    expect([...logits]).toEqual([-Infinity, -Infinity, 0, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity]);
  });
});

describe('Utf8Processor', () => {
  it('bans byte tokens that would break UTF-8, given what came before', () => {
    // Tokens: 0 "a", 1 <0xC3>, 2 <0xA9>, 3 <0xC0>, 4 <0x41 as a continuation, never>.
    const bytes = [undefined, Uint8Array.of(0xc3), Uint8Array.of(0xa9), Uint8Array.of(0xc0), undefined];
    const processor = new Utf8Processor(bytes, [1, 2, 3]);
    const first = new Float32Array(5).fill(1);
    processor.apply(first);
    expect([...first]).toEqual([1, 1, -Infinity, -Infinity, 1]);
    processor.accept(1);
    const second = new Float32Array(5).fill(1);
    processor.apply(second);
    expect([...second]).toEqual([-Infinity, -Infinity, 1, -Infinity, -Infinity]);
  });
});

describe('AfterReasoning', () => {
  /** An inner processor that allows only token 3 and records what it is told. */
  const inner = () => {
    const accepted: number[] = [];
    const processor: LogitsProcessor = {
      apply: (logits) => logits.forEach((_, token) => token !== 3 && (logits[token] = Number.NEGATIVE_INFINITY)),
      accept: (token) => void accepted.push(token),
    };
    return { accepted, processor };
  };
  /** Tokens 4 and 5 spell `</th` and `ink>`; token 6 is `<think>`, token 7 is `</think>`. */
  const pieces: Record<number, string> = { 0: 'a', 1: 'b', 3: '{', 4: '</th', 5: 'ink>' };
  const bytesOf = (token: number) => (pieces[token] === undefined ? undefined : new TextEncoder().encode(pieces[token]));

  it('inside the thinking leaves the logits free and the grammar untold, until the end marker is written, across tokens', () => {
    const { accepted, processor } = inner();
    const gate = new AfterReasoning([processor], { startsInside: true, end: '</think>' }, bytesOf);
    const logits = flat();
    gate.apply(logits);
    expect([...logits]).toEqual([...flat()]);
    for (const token of [0, 4, 1, 4, 5]) gate.accept(token);
    expect(accepted).toEqual([]);
    gate.apply(logits);
    expect([...logits].map((value) => value === 0)).toEqual([false, false, false, true, false, false, false, false]);
    gate.accept(3);
    expect(accepted).toEqual([3]);
  });

  it('the end marker as a token of its own ends the thinking too', () => {
    const { accepted, processor } = inner();
    const gate = new AfterReasoning([processor], { startsInside: true, end: '</think>', endTokenId: 7 }, bytesOf);
    gate.accept(7);
    gate.accept(3);
    expect(accepted).toEqual([3]);
  });

  it('where the prompt does not open the thinking, the first token may open it, or begin the answer under the grammar', () => {
    const opened = inner();
    const gate = new AfterReasoning([opened.processor], { startsInside: false, end: '</think>', startTokenId: 6 }, bytesOf);
    const logits = flat();
    gate.apply(logits);
    expect([...logits].map((value) => value === 0)).toEqual([false, false, false, true, false, false, true, false]);
    gate.accept(6);
    gate.accept(0);
    expect(opened.accepted).toEqual([]);

    const answered = inner();
    const direct = new AfterReasoning([answered.processor], { startsInside: false, end: '</think>', startTokenId: 6 }, bytesOf);
    direct.accept(3);
    direct.accept(3);
    expect(answered.accepted).toEqual([3, 3]);
  });
});
