/**
 * Matching a set of strings in text that arrives in pieces, as stop strings and tool-call triggers
 * are: where the first of them starts, and how much of the end may still become one of them.
 */

/** Where the earliest occurrence of any of `needles` starts in `text`; -1 when none occurs. */
export function earliestIndex(text: string, needles: readonly string[]): number {
  let earliest = -1;
  for (const needle of needles) {
    const at = text.indexOf(needle);
    if (at !== -1 && (earliest === -1 || at < earliest)) earliest = at;
  }
  return earliest;
}

/** The length of the longest end of `text` that begins one of `needles` without being all of it: text to hold back until more arrives. */
export function heldPrefixLength(text: string, needles: readonly string[]): number {
  let longest = 0;
  for (const needle of needles) {
    for (let length = Math.min(needle.length - 1, text.length); length > longest; length--) {
      if (text.endsWith(needle.slice(0, length))) {
        longest = length;
        break;
      }
    }
  }
  return longest;
}
