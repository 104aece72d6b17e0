import { StopStringMatcher } from '../../src/generation/stop-strings.js';

describe('StopStringMatcher', () => {
  it('passes text that cannot start a stop string through unchanged and at once', () => {
    const matcher = new StopStringMatcher(['\n\n', 'The End']);
    expect(matcher.push('Once upon')).toEqual({ text: 'Once upon', stopped: false });
    expect(matcher.push(' a time, ')).toEqual({ text: ' a time, ', stopped: false });
    expect(matcher.flush()).toBe('');
  });

  it('passes everything through when there are no stop strings', () => {
    const matcher = new StopStringMatcher([]);
    expect(matcher.push('a\n\n')).toEqual({ text: 'a\n\n', stopped: false });
    expect(matcher.push('The End')).toEqual({ text: 'The End', stopped: false });
    expect(matcher.flush()).toBe('');
  });

  it('cuts a delta right before a stop string inside it and reports the stop', () => {
    const matcher = new StopStringMatcher(['STOP']);
    expect(matcher.push('say hi STOP and more')).toEqual({ text: 'say hi ', stopped: true, matched: 'STOP' });
  });

  it('reports a stop with no text when the delta begins with the stop string', () => {
    const matcher = new StopStringMatcher(['###']);
    expect(matcher.push('abc')).toEqual({ text: 'abc', stopped: false });
    expect(matcher.push('### tail')).toEqual({ text: '', stopped: true, matched: '###' });
  });

  it('catches "\\n\\n" split over two deltas without emitting either newline', () => {
    const matcher = new StopStringMatcher(['\n\n']);
    expect(matcher.push('Hello\n')).toEqual({ text: 'Hello', stopped: false });
    expect(matcher.push('\nWorld')).toEqual({ text: '', stopped: true, matched: '\n\n' });
    expect(matcher.flush()).toBe('');
  });

  it('catches "The End" split over three deltas, holding back only what could start it', () => {
    const matcher = new StopStringMatcher(['The End']);
    expect(matcher.push('And so. The')).toEqual({ text: 'And so. ', stopped: false });
    expect(matcher.push(' E')).toEqual({ text: '', stopped: false });
    expect(matcher.push('nd.')).toEqual({ text: '', stopped: true, matched: 'The End' });
  });

  it('holds back only the longest suffix that is a prefix of a stop string', () => {
    const matcher = new StopStringMatcher(['abc']);
    // "xab": "ab" could start "abc"; "x" cannot.
    expect(matcher.push('xab')).toEqual({ text: 'x', stopped: false });
  });

  it('releases held-back text on the next push once it turns out not to be a stop', () => {
    const matcher = new StopStringMatcher(['\n\n']);
    expect(matcher.push('Hello\n')).toEqual({ text: 'Hello', stopped: false });
    expect(matcher.push('World')).toEqual({ text: '\nWorld', stopped: false });
  });

  it('releases only the part of held-back text that can no longer start a stop', () => {
    const matcher = new StopStringMatcher(['aab']);
    expect(matcher.push('aa')).toEqual({ text: '', stopped: false });
    expect(matcher.push('a')).toEqual({ text: 'a', stopped: false });
    expect(matcher.push('b')).toEqual({ text: '', stopped: true, matched: 'aab' });
  });

  it('releases held-back text through flush() when generation ends for another reason', () => {
    const matcher = new StopStringMatcher(['The End']);
    expect(matcher.push('It was The E')).toEqual({ text: 'It was ', stopped: false });
    expect(matcher.flush()).toBe('The E');
    expect(matcher.flush()).toBe('');
  });

  it('finds a stop that starts inside text it held back for an earlier false start', () => {
    const matcher = new StopStringMatcher(['abc']);
    expect(matcher.push('ab')).toEqual({ text: '', stopped: false });
    expect(matcher.push('abc!')).toEqual({ text: 'ab', stopped: true, matched: 'abc' });
  });

  it('lets the earliest occurrence win among several stop strings', () => {
    const matcher = new StopStringMatcher(['world', 'lo']);
    expect(matcher.push('hello world')).toEqual({ text: 'hel', stopped: true, matched: 'lo' });
  });

  it('prefers a stop completed from held-back text over a later one in the same delta', () => {
    const matcher = new StopStringMatcher(['xyz', 'END']);
    expect(matcher.push('a EN')).toEqual({ text: 'a ', stopped: false });
    expect(matcher.push('D xyz')).toEqual({ text: '', stopped: true, matched: 'END' });
  });

  it('holds back enough for the longest possible stop among several', () => {
    const matcher = new StopStringMatcher(['a!', 'abab']);
    // "a" could start "a!", but "aba" could start "abab": the longer one is held.
    expect(matcher.push('xaba')).toEqual({ text: 'x', stopped: false });
    expect(matcher.push('c')).toEqual({ text: 'abac', stopped: false });
    expect(matcher.push('aba')).toEqual({ text: '', stopped: false });
    expect(matcher.push('b')).toEqual({ text: '', stopped: true, matched: 'abab' });
  });

  it('returns nothing after it stopped, and flush() gives nothing either', () => {
    const matcher = new StopStringMatcher(['.']);
    expect(matcher.push('One. Two')).toEqual({ text: 'One', stopped: true, matched: '.' });
    expect(matcher.push('more text')).toEqual({ text: '', stopped: true });
    expect(matcher.flush()).toBe('');
  });

  it('emits exactly the text before the stop, whichever way the text is split', () => {
    const text = 'Tom ran home.\n\nThe End. Then more.';
    const stops = ['The End', '\n\n'];
    const expected = 'Tom ran home.';
    for (let a = 0; a <= text.length; a++) {
      for (let b = a; b <= text.length; b++) {
        const matcher = new StopStringMatcher(stops);
        let out = '';
        let stopped = false;
        for (const piece of [text.slice(0, a), text.slice(a, b), text.slice(b)]) {
          const scan = matcher.push(piece);
          out += scan.text;
          stopped = scan.stopped;
          if (stopped) break;
        }
        if (!stopped) out += matcher.flush();
        expect({ a, b, out, stopped }).toEqual({ a, b, out: expected, stopped: true });
      }
    }
  });
});
