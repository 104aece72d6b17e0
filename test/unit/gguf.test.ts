import { quantizeQ4_0 } from '../../tools/gguf.js';

/** q4_0 blocks as ggml's reference quantizer (quantize_row_q4_0_ref) writes them. */
describe('quantizeQ4_0', () => {
  it('scales by the value of largest magnitude over −8, and packs value j and j + 16 in one byte', () => {
    // −16 … 15: the largest magnitude is −16, so d = 2 and each value is trunc(v / 2 + 8.5), at most 15.
    const block = Float32Array.from({ length: 32 }, (_, i) => i - 16);
    const bytes = quantizeQ4_0(block, 32);
    expect(bytes.length).toBe(18);
    expect(new DataView(bytes.buffer).getUint16(0, true)).toBe(0x4000); // 2.0 in float16
    const nibble = (v: number) => Math.min(15, Math.trunc(v / 2 + 8.5));
    for (let j = 0; j < 16; j++) expect(bytes[2 + j]).toBe(nibble(j - 16) | (nibble(j) << 4));
    expect(bytes[2]).toBe(0x80);
    expect(bytes[17]).toBe(0xf8);
  });

  it('decodes within half a step of each value, a block of zeros to zeros', () => {
    const values = Float32Array.from({ length: 96 }, (_, i) => (i < 32 ? 0 : Math.sin(i) * (i % 7)));
    const bytes = quantizeQ4_0(values, 96);
    const view = new DataView(bytes.buffer);
    for (let block = 0; block < 3; block++) {
      const at = block * 18;
      const half = view.getUint16(at, true);
      const sign = half & 0x8000 ? -1 : 1;
      const exponent = (half >> 10) & 0x1f;
      const d = exponent === 0 ? sign * (half & 0x3ff) * 2 ** -24 : sign * (1 + (half & 0x3ff) / 1024) * 2 ** (exponent - 15);
      for (let j = 0; j < 32; j++) {
        const byte = bytes[at + 2 + (j % 16)]!;
        const q = j < 16 ? byte & 0x0f : byte >> 4;
        expect(Math.abs((q - 8) * d - values[block * 32 + j]!)).toBeLessThanOrEqual(Math.abs(d) / 2 + 1e-3 * Math.abs(d));
      }
    }
  });

  it('refuses rows that do not split into blocks of 32', () => {
    expect(() => quantizeQ4_0(new Float32Array(48), 48)).toThrow('q4_0 needs rows of a multiple of 32 values, not 48');
  });
});
