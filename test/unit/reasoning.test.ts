import { detectReasoningFormat, opensReasoning, REASONING_FORMATS } from '../../src/reasoning/formats.js';
import { ReasoningSplitter, splitReasoning, type ReasoningPiece } from '../../src/reasoning/splitter.js';
import { splitReply } from '../../src/generation/reply-stream.js';
import type { GeneratedToken } from '../../src/generation/text-generation.js';

/** A reasoning model's thinking told apart from its answer, whole and as it streams. */

const THINK = REASONING_FORMATS.think;

/** The reply fed to a splitter in pieces of `size` characters, the pieces it gives merged by kind. */
function streamed(text: string, startsInside: boolean, size: number): { reasoning: string; content: string } {
  const splitter = new ReasoningSplitter(THINK, startsInside);
  const pieces: ReasoningPiece[] = [];
  for (let i = 0; i < text.length; i += size) pieces.push(...splitter.push(text.slice(i, i + size)));
  pieces.push(...splitter.end());
  return {
    reasoning: pieces.map((piece) => ('reasoning' in piece ? piece.reasoning : '')).join(''),
    content: pieces.map((piece) => ('content' in piece ? piece.content : '')).join(''),
  };
}

describe('splitReasoning', () => {
  it.each([
    ['a reply that opens its thinking', '<think>\nTwo and two.\n</think>\n\nFour.', false, { reasoning: '\nTwo and two.\n', content: '\n\nFour.' }],
    ['white space before the marker', '\n <think>Hm.</think>Four.', false, { reasoning: 'Hm.', content: 'Four.' }],
    ['a prompt that opened the thinking', 'Two and two.</think>Four.', true, { reasoning: 'Two and two.', content: 'Four.' }],
    ['thinking cut short (max_tokens)', 'Two and', true, { reasoning: 'Two and', content: '' }],
    ['empty thinking', '<think></think>Four.', false, { reasoning: '', content: 'Four.' }],
    ['no thinking at all', 'Four. <think> is a tag.', false, { content: 'Four. <think> is a tag.' }],
    ['a second end marker is answer', 'A</think>B</think>C', true, { reasoning: 'A', content: 'B</think>C' }],
    ['a start of a marker that is not one', 'A</thin', true, { reasoning: 'A</thin', content: '' }],
    ['a reply that is only the start of the start marker', '<thi', false, { content: '<thi' }],
  ] as const)('%s', (_name, text, startsInside, expected) => {
    expect(splitReasoning(text, THINK, startsInside)).toEqual(expected);
  });

  it.each([1, 2, 3, 5, 8])('gives the same parts streamed %i characters at a time', (size) => {
    for (const [text, startsInside] of [
      ['<think>\nTwo and two.\n</think>\n\nFour.', false],
      ['Two </th and two.</think>Four.</think>', true],
      ['  <thinker>no</think>', false],
    ] as const) {
      const whole = splitReasoning(text, THINK, startsInside);
      expect(streamed(text, startsInside, size)).toEqual({ reasoning: whole.reasoning ?? '', content: whole.content });
    }
  });
});

describe('detecting the format', () => {
  it('a template that writes both markers thinks aloud; one without them does not', () => {
    expect(detectReasoningFormat("{{ '<think>\\n' }}{{ content.split('</think>')[-1] }}")).toBe(THINK);
    expect(detectReasoningFormat('{{ messages[0].content }}')).toBeUndefined();
  });

  it('a prompt whose generation prompt opened the thinking leaves the reply inside it', () => {
    expect(opensReasoning('<|Assistant|><think>\n', THINK)).toBe(true);
    expect(opensReasoning('<|im_start|>assistant\n<think>\n\n</think>\n\n', THINK)).toBe(false);
    expect(opensReasoning('<|im_start|>assistant\n', THINK)).toBe(false);
    // A user's own marker, followed by the template's turn markers, is not the generation prompt's.
    expect(opensReasoning('Why <think>?<|im_end|>\n<|im_start|>assistant\n', THINK)).toBe(false);
  });
});

describe('splitReply', () => {
  /** A reply of these token texts, as the text generator gives it: each token with its offset. */
  const reply = (texts: string[]) => {
    let offset = 0;
    const tokens: GeneratedToken[] = texts.map((text, id) => {
      const token = { id, text, bytes: [], offset };
      offset += text.length;
      return token;
    });
    return { text: texts.join(''), tokens };
  };
  const ids = (tokens: readonly GeneratedToken[]) => tokens.map((token) => token.id);

  it("gives each token to the part its text is in (a marker's tokens to what follows it)", () => {
    const { text, tokens } = reply(['Hm', '.', '</', 'think', '>', 'Four', '.']);
    const { reasoning, answer } = splitReply({ format: THINK, startsInside: true }, text, tokens);
    expect({ reasoning: reasoning?.text, reasoningIds: ids(reasoning!.tokens), answer: answer.text, answerIds: ids(answer.tokens) }).toEqual({
      reasoning: 'Hm.',
      reasoningIds: [0, 1],
      answer: 'Four.',
      answerIds: [2, 3, 4, 5, 6],
    });
  });

  it('a reply not read for thinking is all answer', () => {
    const { text, tokens } = reply(['<think>', 'Hm', '</think>', 'Four']);
    expect(splitReply(undefined, text, tokens)).toEqual({ answer: { text, tokens } });
  });
});
