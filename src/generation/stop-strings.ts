import { earliestIndex, heldPrefixLength } from '../util/text-match.js';

export interface StopScan {
  /** Text that can be sent to the client now. */
  text: string;
  /** True once a stop string was found: `text` ends right before it and nothing follows. */
  stopped: boolean;
  /** The stop string found (the first of the list that begins where the text stops). */
  matched?: string;
}

/**
 * Finds stop strings in generated text that arrives in pieces. Text that could still turn out to
 * be the start of a stop string is held back; everything else passes through at once.
 */
export class StopStringMatcher {
  private pending = '';
  private done = false;

  constructor(private readonly stops: readonly string[]) {}

  push(delta: string): StopScan {
    if (this.done) return { text: '', stopped: true };
    if (this.stops.length === 0) return { text: delta, stopped: false };
    const buffer = this.pending + delta;
    const cut = earliestIndex(buffer, this.stops);
    if (cut !== -1) {
      this.done = true;
      this.pending = '';
      const matched = this.stops.find((stop) => buffer.startsWith(stop, cut));
      return { text: buffer.slice(0, cut), stopped: true, ...(matched !== undefined && { matched }) };
    }
    const hold = heldPrefixLength(buffer, this.stops);
    this.pending = buffer.slice(buffer.length - hold);
    return { text: buffer.slice(0, buffer.length - hold), stopped: false };
  }

  /** What is still held back when generation ends for another reason: it was no stop string. */
  flush(): string {
    const rest = this.pending;
    this.pending = '';
    return this.done ? '' : rest;
  }
}
