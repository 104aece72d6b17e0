/**
 * A small, fast, seedable generator (sfc32). The same seed and stream give the same numbers on
 * every platform, which is what makes `seed` reproducible; `stream` separates the choices of one request.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** The seed's two 32-bit halves and the stream fill the state as they are, so no two inputs collide. */
  constructor(seed: number, stream = 0) {
    this.a = seed >>> 0;
    this.b = Math.floor(seed / 2 ** 32) >>> 0;
    this.c = stream >>> 0;
    this.d = 1;
    for (let i = 0; i < 15; i++) this.nextUint32();
  }

  static random(): Rng {
    return new Rng(Math.floor(Math.random() * 2 ** 52), Math.floor(Math.random() * 2 ** 31));
  }

  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 2 ** 32;
  }
}
