import { Rng } from '../../src/engine/thread/rng.js';
import { argmax, kthLargest, sampleToken } from '../../src/engine/thread/sampling.js';

/** softmax(logits / temperature), computed independently of the code under test. */
function softmax(logits: readonly number[], temperature: number): number[] {
  const scaled = logits.map((l) => l / temperature);
  const max = Math.max(...scaled);
  const exps = scaled.map((s) => Math.exp(s - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

/** Draws `n` tokens and returns how often each id came up, as fractions. */
function frequencies(logits: Float32Array, temperature: number, topP: number, n: number, rng: Rng): number[] {
  const counts = new Array<number>(logits.length).fill(0);
  const weights = new Float64Array(logits.length);
  for (let i = 0; i < n; i++) counts[sampleToken(logits, { temperature, topP }, rng, weights)]!++;
  return counts.map((c) => c / n);
}

function draws(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => rng.next());
}

describe('Rng', () => {
  it('gives the same sequence of numbers for the same seed and stream', () => {
    expect(draws(new Rng(42, 3), 100)).toEqual(draws(new Rng(42, 3), 100));
  });

  it('gives a different sequence for a different seed', () => {
    expect(draws(new Rng(42, 0), 20)).not.toEqual(draws(new Rng(43, 0), 20));
  });

  it('gives a different sequence for a different stream of the same seed', () => {
    expect(draws(new Rng(42, 0), 20)).not.toEqual(draws(new Rng(42, 1), 20));
  });

  it('uses the high bits of seeds beyond 32 bits', () => {
    expect(draws(new Rng(2 ** 32 + 7), 20)).not.toEqual(draws(new Rng(7), 20));
  });

  it('keeps next() within [0, 1) and spreads it evenly', () => {
    const rng = new Rng(1234);
    let sum = 0;
    let below = 0;
    const n = 100_000;
    let outside = 0;
    for (let i = 0; i < n; i++) {
      const x = rng.next();
      if (!(x >= 0 && x < 1)) outside++;
      sum += x;
      if (x < 0.25) below++;
    }
    expect(outside).toBe(0);
    expect(sum / n).toBeCloseTo(0.5, 2);
    expect(below / n).toBeCloseTo(0.25, 2);
  });

  it('keeps next() within [0, 1) even when the raw word is the largest 32-bit value', () => {
    const rng = new Rng(1);
    rng.nextUint32 = () => 0xffffffff;
    const x = rng.next();
    expect(x).toBeLessThan(1);
    expect(x).toBeGreaterThanOrEqual(0);
  });
});

describe('argmax', () => {
  it('returns the index of the largest value', () => {
    expect(argmax([0.1, -3, 7.5, 2])).toBe(2);
  });

  it('returns the lowest index when the largest value is tied', () => {
    expect(argmax([1, 3, 0, 3, 3])).toBe(1);
  });
});

describe('sampleToken', () => {
  it('picks the most likely token at temperature 0, whatever the random numbers', () => {
    const logits = new Float32Array([0.3, 2.5, -1, 2.4]);
    const rng = new Rng(9);
    for (let i = 0; i < 50; i++) expect(sampleToken(logits, { temperature: 0, topP: 1 }, rng)).toBe(1);
  });

  it.each([5e-324, 1e-310, Number.MIN_VALUE])('decodes greedily at a temperature of %s, whose inverse overflows', (temperature) => {
    const logits = new Float32Array([0.3, 2.5, -1, 2.4]);
    for (const topP of [1, 0.95, 0.1]) expect(sampleToken(logits, { temperature, topP }, new Rng(3))).toBe(1);
  });

  it('breaks ties at temperature 0 in favour of the lowest index', () => {
    const logits = new Float32Array([-1, 4, 0, 4, 4]);
    expect(sampleToken(logits, { temperature: 0, topP: 0.5 }, new Rng(1))).toBe(1);
  });

  it('draws the same tokens for the same seed and stream', () => {
    const logits = new Float32Array([0, 0.2, 0.4, 0.1, -0.3, 0.25]);
    const run = (seed: number, stream: number) => {
      const rng = new Rng(seed, stream);
      return Array.from({ length: 200 }, () => sampleToken(logits, { temperature: 1, topP: 1 }, rng));
    };
    expect(run(5, 0)).toEqual(run(5, 0));
    expect(run(5, 0)).not.toEqual(run(6, 0));
    expect(run(5, 0)).not.toEqual(run(5, 1));
  });

  it.each([1, 0.5])('draws tokens with the frequencies of softmax(logits / %p)', (temperature) => {
    const values = [1.0, 0.5, -0.5, 2.0, 0.0];
    const expected = softmax(values, temperature);
    const observed = frequencies(new Float32Array(values), temperature, 1, 20_000, new Rng(2024, temperature === 1 ? 0 : 1));
    observed.forEach((frequency, id) => {
      // Standard error is at most 0.0036 for 20000 draws; 0.015 is about four of them.
      expect(Math.abs(frequency - expected[id]!)).toBeLessThan(0.015);
    });
  });

  it('makes the distribution sharper at a lower temperature', () => {
    const logits = new Float32Array([1.0, 0.5, -0.5, 2.0]);
    const hot = frequencies(logits, 1, 1, 5000, new Rng(11));
    const cold = frequencies(logits, 0.5, 1, 5000, new Rng(11));
    expect(cold[3]!).toBeGreaterThan(hot[3]! + 0.1);
  });

  describe('with top_p', () => {
    const probabilities = [0.5, 0.3, 0.15, 0.05];
    const logits = new Float32Array(probabilities.map(Math.log));

    it('draws only from the smallest set of most likely tokens reaching top_p, in proportion', () => {
      // 0.5 alone is below 0.75, 0.5 + 0.3 reaches it: the nucleus is tokens 0 and 1.
      const observed = frequencies(logits, 1, 0.75, 20_000, new Rng(77));
      expect(observed[2]).toBe(0);
      expect(observed[3]).toBe(0);
      expect(observed[0]!).toBeCloseTo(0.5 / 0.8, 1);
      expect(observed[1]!).toBeCloseTo(0.3 / 0.8, 1);
    });

    it('keeps the third token once top_p needs it', () => {
      const observed = frequencies(logits, 1, 0.9, 20_000, new Rng(78));
      expect(observed[3]).toBe(0);
      expect(observed[2]!).toBeCloseTo(0.15 / 0.95, 1);
    });

    it('always returns the most likely token when top_p is tiny', () => {
      const shuffled = new Float32Array([Math.log(0.15), Math.log(0.3), Math.log(0.5), Math.log(0.05)]);
      const observed = frequencies(shuffled, 1, 0.01, 2000, new Rng(3));
      expect(observed[2]).toBe(1);
    });

    it('applies top_p to the tempered distribution', () => {
      // At T = 0.5 the probabilities become 0.5², 0.3², ... normalised: 0.685, 0.247, 0.062, 0.007.
      // 0.685 alone is below 0.7, so token 1 joins the nucleus and 0.932 is enough: tokens 2 and 3 are out.
      const observed = frequencies(logits, 0.5, 0.7, 10_000, new Rng(5));
      expect(observed[1]!).toBeGreaterThan(0.2);
      expect(observed[2]).toBe(0);
      expect(observed[3]).toBe(0);
    });

    it('falls back to sorting every token when the likely ones do not reach top_p, and stays in the nucleus', () => {
      // One token of weight 1 and many of weight e^-10 (below the 1e-4 prefilter). The likely set
      // alone holds 1 / 1.454 of the mass, less than top_p, so the whole vocabulary is sorted.
      const vocab = 10_001;
      const flat = new Float32Array(vocab).fill(-10);
      flat[0] = 0;
      const topP = 0.9;
      const tail = Math.exp(-10);
      const total = 1 + (vocab - 1) * tail;
      // Tied tail tokens sort by id, so the nucleus is 0..k with k the first count reaching top_p.
      const k = Math.ceil((topP * total - 1) / tail);
      const rng = new Rng(8);
      const weights = new Float64Array(vocab);
      const seen: number[] = [];
      for (let i = 0; i < 300; i++) seen.push(sampleToken(flat, { temperature: 1, topP }, rng, weights));
      for (const id of seen) {
        expect(Number.isInteger(id)).toBe(true);
        expect(id).toBeGreaterThanOrEqual(0);
        expect(id).toBeLessThanOrEqual(k + 1);
      }
      const tailDraws = seen.filter((id) => id !== 0);
      // Without the fallback only token 0 could be drawn; with it the tail holds about 24% of the nucleus.
      const tailShare = (k * tail) / (1 + k * tail);
      expect(tailDraws.length).toBeGreaterThan(300 * tailShare * 0.5);
      expect(tailDraws.length).toBeLessThan(300 * tailShare * 1.5);
      expect(Math.max(...tailDraws)).toBeGreaterThan(k / 2);
    });
  });
});

describe('Rng seeding', () => {
  const firstDraws = (rng: Rng) => Array.from({ length: 4 }, () => rng.nextUint32());

  it('keeps seeds that differ only in their high 32 bits apart', () => {
    expect(firstDraws(new Rng(2 ** 32))).not.toEqual(firstDraws(new Rng(0x27d4eb2d)));
    expect(firstDraws(new Rng(2 ** 32))).not.toEqual(firstDraws(new Rng(0)));
  });

  it('keeps a seed and stream pair apart from other seeds on stream 0', () => {
    expect(firstDraws(new Rng(0, 1))).not.toEqual(firstDraws(new Rng(989505747, 0)));
    expect(firstDraws(new Rng(0, 1))).not.toEqual(firstDraws(new Rng(1, 0)));
  });
});

describe('seeded nucleus sampling under float noise', () => {
  it('a change of a few parts in a million in the logits (as batching with other sequences makes) does not move a seeded draw', () => {
    // Thousands of nearly equal logits, as a model with random weights gives: ordering them by
    // weight would turn on their last bits.
    const source = new Rng(7, 0);
    const logits = Float32Array.from({ length: 4096 }, () => (source.next() - 0.5) * 0.01);
    const noisy = Float32Array.from(logits, (value, i) => value * (1 + (((i * 2654435761) % 7) - 3) * 5e-6));
    let moved = 0;
    for (let seed = 0; seed < 300; seed++) {
      const params = { temperature: 0.8, topP: 0.95 };
      if (sampleToken(logits, params, new Rng(seed, 0)) !== sampleToken(noisy, params, new Rng(seed, 0))) moved++;
    }
    expect(moved).toBe(0);
  });
});

describe('top-k', () => {
  it('kthLargest finds the k-th largest value, ties counted', () => {
    const values = [3, 9, 1, 9, 4, 7];
    expect(kthLargest(values, 1)).toBe(9);
    expect(kthLargest(values, 2)).toBe(9);
    expect(kthLargest(values, 3)).toBe(7);
    expect(kthLargest(values, 6)).toBe(1);
  });

  it('draws only from the k most likely tokens', () => {
    const logits = Float32Array.from([0, 5, 1, 4.9, 2]);
    const seen = new Set<number>();
    const rng = new Rng(7);
    for (let i = 0; i < 500; i++) seen.add(sampleToken(logits, { temperature: 5, topP: 1, topK: 2 }, rng));
    expect([...seen].sort()).toEqual([1, 3]);
  });
});
