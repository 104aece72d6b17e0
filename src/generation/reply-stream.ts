import type { FinishReason } from '../engine/protocol.js';
import type { ParsedToolCall } from '../tool-calls/formats.js';
import { ToolCallParser, type ParsedPiece } from '../tool-calls/tool-call-parser.js';
import { dropsUnfinished, type OutputPlan } from './output-plan.js';
import type { GeneratedToken, TextChunk } from './text-generation.js';
import type { ReasoningPlan } from '../reasoning/formats.js';
import { ReasoningSplitter, type ReasoningPiece } from '../reasoning/splitter.js';

/** What a choice's reply holds as it streams, in the order it comes. */
export type ReplyEvent =
  /** Text of the reply's thinking, with the tokens it came from. */
  | { type: 'reasoning'; text: string; tokens: readonly GeneratedToken[] }
  /** Text of the reply, with the tokens it came from. */
  | { type: 'text'; text: string; tokens: readonly GeneratedToken[] }
  /** Call number `index` starts: its name is known, its arguments follow. */
  | { type: 'call-start'; index: number; name: string }
  | { type: 'call-arguments'; index: number; delta: string }
  /** Call number `index` is complete (a call read whole; one streamed as it comes ends with the next event or the reply). */
  | { type: 'call-end'; index: number };

/**
 * One choice's reply as it streams: its thinking, for a model that thinks aloud, then its text, or,
 * when the request has tools, its text and the calls read out of it (a call its grammar writes is
 * let through as it comes: its name, then its arguments piece by piece). Each endpoint writes these
 * events in its own wire shape.
 */
export class ReplyStream {
  /** The calls so far, with their arguments as they have come. */
  readonly calls: ParsedToolCall[] = [];
  private readonly parser: ToolCallParser | undefined;
  private readonly reasoning: ReasoningSplitter | undefined;
  /** Tokens of text held back (by the parser or the splitter), handed out with that text. */
  private heldTokens: GeneratedToken[] = [];

  constructor(
    private readonly output: OutputPlan,
    reasoning?: ReasoningPlan,
  ) {
    const { tools } = output;
    this.parser = tools && new ToolCallParser(tools.format, new Set(tools.parameters.keys()), tools.enforced);
    this.reasoning = reasoning && new ReasoningSplitter(reasoning.format, reasoning.startsInside);
  }

  /** Whether the reply has thought (even nothing, between two markers): it has a thinking part. */
  get thought(): boolean {
    return this.reasoning?.thought ?? false;
  }

  push(chunk: TextChunk): ReplyEvent[] {
    this.heldTokens.push(...chunk.tokens);
    return this.answer(this.reasoning ? this.reasoning.push(chunk.text) : [{ content: chunk.text }]);
  }

  /** The rest of the reply once it has ended for `reason`. */
  end(reason: FinishReason): ReplyEvent[] {
    const rest = this.answer(this.reasoning?.end() ?? []);
    return this.parser ? [...rest, ...this.events(this.parser.end(dropsUnfinished(this.output, reason)))] : rest;
  }

  /** Thinking as it is; the answer through the tool-call parser, where there is one. */
  private answer(pieces: readonly ReasoningPiece[]): ReplyEvent[] {
    return pieces.flatMap((piece): ReplyEvent[] => {
      if ('reasoning' in piece) return [{ type: 'reasoning', text: piece.reasoning, tokens: this.takeTokens() }];
      if (this.parser) return this.events(this.parser.push(piece.content));
      return [{ type: 'text', text: piece.content, tokens: this.takeTokens() }];
    });
  }

  private takeTokens(): GeneratedToken[] {
    const tokens = this.heldTokens;
    this.heldTokens = [];
    return tokens;
  }

  private events(pieces: readonly ParsedPiece[]): ReplyEvent[] {
    return pieces.flatMap((piece): ReplyEvent[] => {
      if ('content' in piece) return [{ type: 'text', text: piece.content, tokens: this.takeTokens() }];
      if ('callStart' in piece) return [this.start(piece.callStart)];
      if ('callArguments' in piece) {
        const index = this.calls.length - 1;
        this.calls[index]!.arguments += piece.callArguments;
        return [{ type: 'call-arguments', index, delta: piece.callArguments }];
      }
      const start = this.start(piece.call.name);
      this.calls[start.index]!.arguments = piece.call.arguments;
      return [start, { type: 'call-arguments', index: start.index, delta: piece.call.arguments }, { type: 'call-end', index: start.index }];
    });
  }

  private start(name: string): Extract<ReplyEvent, { type: 'call-start' }> {
    return { type: 'call-start', index: this.calls.push({ name, arguments: '' }) - 1, name };
  }
}

/** A part of a whole reply: its text and the tokens whose text is in it. */
export interface ReplyPart {
  text: string;
  tokens: GeneratedToken[];
}

/**
 * A whole reply's thinking (absent when it did not think, or is not read for thinking) and its
 * answer, each with its tokens: the reply is fed token by token, as it streamed, so that each token
 * goes with the part its text is in.
 */
export function splitReply(reasoning: ReasoningPlan | undefined, text: string, tokens: readonly GeneratedToken[]): { reasoning?: ReplyPart; answer: ReplyPart } {
  if (!reasoning) return { answer: { text, tokens: [...tokens] } };
  const stream = new ReplyStream({}, reasoning);
  const parts = { reasoning: { text: '', tokens: [] as GeneratedToken[] }, text: { text: '', tokens: [] as GeneratedToken[] } };
  const take = (events: readonly ReplyEvent[]) => {
    for (const event of events) {
      if (event.type !== 'reasoning' && event.type !== 'text') continue;
      parts[event.type].text += event.text;
      parts[event.type].tokens.push(...event.tokens);
    }
  };
  // Text before the first token's (none, as replies are made) is fed with it.
  tokens.forEach((token, index) => take(stream.push({ text: text.slice(index === 0 ? 0 : token.offset, tokens[index + 1]?.offset ?? text.length), tokens: [token] })));
  if (tokens.length === 0) take(stream.push({ text, tokens: [] }));
  take(stream.end('stop'));
  return { ...(stream.thought && { reasoning: parts.reasoning }), answer: parts.text };
}
