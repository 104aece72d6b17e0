import { earliestIndex, heldPrefixLength } from '../util/text-match.js';
import type { ParsedToolCall, ToolCallFormat } from './formats.js';

/**
 * What the parser lets through: text for `content`, a whole call, or (when calls are streamed as
 * they come) the start of a call with its name and then pieces of its arguments.
 */
export type ParsedPiece = { content: string } | { call: ParsedToolCall } | { callStart: string } | { callArguments: string };

/** The end of a JSON object's text: where its braces close, strings and escapes skipped. */
class ObjectEnd {
  private depth = 0;
  private inString = false;
  private escaped = false;

  /** The index just past the object's last brace in `text`, which continues what came before; -1 when it goes on. */
  scan(text: string): number {
    for (let i = 0; i < text.length; i++) {
      const char = text[i];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (char === '\\') this.escaped = true;
        else if (char === '"') this.inString = false;
      } else if (char === '"') this.inString = true;
      else if (char === '{' || char === '[') this.depth++;
      else if (char === '}' || char === ']') {
        if (--this.depth === 0) return i + 1;
      }
    }
    return -1;
  }
}

type CallState =
  | { kind: 'text' }
  /** Gathering a call whole, to read it when it is complete. */
  | { kind: 'whole' }
  /** Streaming a call: waiting for its name, then its arguments, then the text after them. */
  | { kind: 'header' }
  | { kind: 'arguments'; end: ObjectEnd }
  | { kind: 'tail' };

/** Longest call header waited for before a call is gathered whole instead. */
const HEADER_LIMIT = 256;

/**
 * Splits a reply, as it streams, into text and tool calls. Text that may be the start of a call
 * (a prefix of a trigger) is held back until it is known; from a trigger on, text is gathered until
 * the call's end tag (or the end of the reply) and let through as a call when it is one, else as
 * text. Only calls to the given function names count. Whitespace around calls is held back too,
 * and dropped when the reply has calls.
 *
 * With `streamCalls` (for calls a grammar writes, which are well formed up to the token limit,
 * in a format that says how they begin), a call is let through as it comes: its start once its
 * name is known, then its arguments piece by piece.
 */
export class ToolCallParser {
  private buffer = '';
  private state: CallState = { kind: 'text' };
  private pendingSpace = '';
  private calls = 0;

  constructor(
    private readonly format: ToolCallFormat,
    private readonly names: ReadonlySet<string>,
    private readonly streamCalls = false,
  ) {}

  push(text: string): ParsedPiece[] {
    this.buffer += text;
    const pieces: ParsedPiece[] = [];
    while (this.step(pieces));
    return pieces;
  }

  /**
   * The rest of the reply, at its end. `dropUnfinished` (when the grammar allowed nothing but calls
   * and the token limit cut the reply): what is held back is never sent as text, since it can only
   * be the markup of a call cut off; a call streamed as it comes keeps the arguments it got.
   */
  end(dropUnfinished = false): ParsedPiece[] {
    const pieces: ParsedPiece[] = [];
    const { kind } = this.state;
    if (kind === 'text') {
      if (!dropUnfinished) this.content(this.buffer, pieces);
    } else if (kind === 'whole' || kind === 'header') {
      if (!dropUnfinished) this.take(this.buffer, pieces);
    } else if (kind === 'arguments' && this.buffer) pieces.push({ callArguments: this.buffer });
    this.buffer = '';
    this.state = { kind: 'text' };
    if (this.calls === 0 && this.pendingSpace && !dropUnfinished) pieces.push({ content: this.pendingSpace });
    this.pendingSpace = '';
    return pieces;
  }

  /** One move through the buffer; false when it needs more text. */
  private step(pieces: ParsedPiece[]): boolean {
    const { state } = this;
    switch (state.kind) {
      case 'text': {
        const start = earliestIndex(this.buffer, this.format.triggers);
        if (start === -1) {
          const held = heldPrefixLength(this.buffer, this.format.triggers);
          this.content(this.buffer.slice(0, this.buffer.length - held), pieces);
          this.buffer = this.buffer.slice(this.buffer.length - held);
          return false;
        }
        this.content(this.buffer.slice(0, start), pieces);
        this.buffer = this.buffer.slice(start);
        this.state = { kind: this.streamCalls && this.format.streamed ? 'header' : 'whole' };
        return true;
      }
      case 'whole': {
        const { endTag } = this.format;
        const end = endTag === undefined ? -1 : this.buffer.indexOf(endTag);
        if (end === -1) return false;
        const callText = this.buffer.slice(0, end + endTag!.length);
        this.buffer = this.buffer.slice(callText.length);
        this.state = { kind: 'text' };
        this.take(callText, pieces);
        return true;
      }
      case 'header': {
        const header = this.format.streamed!.header.exec(this.buffer);
        if (!header) {
          const { endTag } = this.format;
          if (this.buffer.length > HEADER_LIMIT || (endTag !== undefined && this.buffer.includes(endTag))) this.state = { kind: 'whole' };
          return this.state.kind === 'whole';
        }
        const name = header[1]!;
        if (!this.names.has(name)) {
          this.state = { kind: 'whole' };
          return true;
        }
        this.pendingSpace = '';
        this.calls++;
        pieces.push({ callStart: name });
        this.buffer = this.buffer.slice(header[0].length);
        this.state = { kind: 'arguments', end: new ObjectEnd() };
        return true;
      }
      case 'arguments': {
        const end = state.end.scan(this.buffer);
        const piece = end === -1 ? this.buffer : this.buffer.slice(0, end);
        if (piece) pieces.push({ callArguments: piece });
        this.buffer = end === -1 ? '' : this.buffer.slice(end);
        if (end === -1) return false;
        this.state = { kind: 'tail' };
        return true;
      }
      case 'tail': {
        const { tail } = this.format.streamed!;
        if (this.buffer.length < tail.length && tail.startsWith(this.buffer)) return false;
        if (this.buffer.startsWith(tail)) this.buffer = this.buffer.slice(tail.length);
        this.state = { kind: 'text' };
        return true;
      }
    }
  }

  private take(text: string, pieces: ParsedPiece[]): void {
    const calls = this.format.parse(text);
    if (calls && calls.every((call) => this.names.has(call.name))) {
      this.pendingSpace = '';
      this.calls += calls.length;
      for (const call of calls) pieces.push({ call });
    } else {
      this.content(text, pieces);
    }
  }

  private content(text: string, pieces: ParsedPiece[]): void {
    if (text === '') return;
    if (text.trim() === '') {
      this.pendingSpace += text;
      return;
    }
    pieces.push({ content: this.pendingSpace + text });
    this.pendingSpace = '';
  }
}

/**
 * A whole reply as its text (null when it has none) and its calls, each read whole. With
 * `dropUnfinished`, a call cut off by the token limit is left out, and so is its markup.
 */
export function parseToolCalls(format: ToolCallFormat, names: ReadonlySet<string>, text: string, dropUnfinished = false): { content: string | null; calls: ParsedToolCall[] } {
  const parser = new ToolCallParser(format, names);
  const pieces = [...parser.push(text), ...parser.end(dropUnfinished)];
  const calls = pieces.flatMap((piece) => ('call' in piece ? [piece.call] : []));
  const content = pieces.map((piece) => ('content' in piece ? piece.content : '')).join('');
  return { content: content === '' && (calls.length > 0 || dropUnfinished) ? null : content, calls };
}
