import type { ParsedToolCall, ToolCallFormat } from './formats.js';

/** What the parser lets through: text for `content`, or a whole call. */
export type ParsedPiece = { content: string } | { call: ParsedToolCall };

/**
 * Splits a reply, as it streams, into text and tool calls. Text that may be the start of a call
 * (a prefix of a trigger) is held back until it is known; from a trigger on, text is gathered until
 * the call's end tag (or the end of the reply) and let through as a call when it is one, else as
 * text. Only calls to the given function names count. Whitespace around calls is held back too,
 * and dropped when the reply has calls.
 */
export class ToolCallParser {
  private buffer = '';
  private inCall = false;
  private pendingSpace = '';
  private calls = 0;

  constructor(
    private readonly format: ToolCallFormat,
    private readonly names: ReadonlySet<string>,
  ) {}

  push(text: string): ParsedPiece[] {
    this.buffer += text;
    const pieces: ParsedPiece[] = [];
    for (;;) {
      if (!this.inCall) {
        const start = this.earliestTrigger();
        if (start === undefined) {
          const held = this.heldPrefix();
          this.content(this.buffer.slice(0, this.buffer.length - held), pieces);
          this.buffer = this.buffer.slice(this.buffer.length - held);
          return pieces;
        }
        this.content(this.buffer.slice(0, start), pieces);
        this.buffer = this.buffer.slice(start);
        this.inCall = true;
      }
      const { endTag } = this.format;
      const end = endTag === undefined ? -1 : this.buffer.indexOf(endTag);
      if (end === -1) return pieces;
      const callText = this.buffer.slice(0, end + endTag!.length);
      this.buffer = this.buffer.slice(callText.length);
      this.inCall = false;
      this.take(callText, pieces);
    }
  }

  /**
   * The rest of the reply, at its end. `dropUnfinished`: a call cut off by the token limit is left
   * out instead of being sent as text (when the grammar allowed nothing but calls).
   */
  end(dropUnfinished = false): ParsedPiece[] {
    const pieces: ParsedPiece[] = [];
    if (!this.inCall) this.content(this.buffer, pieces);
    else if (!(dropUnfinished && this.calls > 0)) this.take(this.buffer, pieces);
    this.buffer = '';
    this.inCall = false;
    if (this.calls === 0 && this.pendingSpace) pieces.push({ content: this.pendingSpace });
    this.pendingSpace = '';
    return pieces;
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

  private earliestTrigger(): number | undefined {
    let earliest: number | undefined;
    for (const trigger of this.format.triggers) {
      const at = this.buffer.indexOf(trigger);
      if (at !== -1 && (earliest === undefined || at < earliest)) earliest = at;
    }
    return earliest;
  }

  /** Characters at the end of the buffer that begin a trigger. */
  private heldPrefix(): number {
    let held = 0;
    for (const trigger of this.format.triggers) {
      for (let length = Math.min(trigger.length - 1, this.buffer.length); length > held; length--) {
        if (this.buffer.endsWith(trigger.slice(0, length))) {
          held = length;
          break;
        }
      }
    }
    return held;
  }
}

/** A whole reply as its text (null when it has none) and its calls. */
export function parseToolCalls(format: ToolCallFormat, names: ReadonlySet<string>, text: string, dropUnfinished = false): { content: string | null; calls: ParsedToolCall[] } {
  const parser = new ToolCallParser(format, names);
  const pieces = [...parser.push(text), ...parser.end(dropUnfinished)];
  const calls = pieces.flatMap((piece) => ('call' in piece ? [piece.call] : []));
  const content = pieces.map((piece) => ('content' in piece ? piece.content : '')).join('');
  return { content: content === '' && calls.length > 0 ? null : content, calls };
}
