/** A push-to-pull bridge: producers push values, one consumer iterates them. */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly values: T[] = [];
  private waiter: { resolve: (result: IteratorResult<T>) => void; reject: (err: Error) => void } | undefined;
  private ended = false;
  private failure: Error | undefined;

  push(value: T): void {
    if (this.ended) return;
    if (this.waiter) {
      const { resolve } = this.waiter;
      this.waiter = undefined;
      resolve({ value, done: false });
    } else {
      this.values.push(value);
    }
  }

  end(): void {
    this.ended = true;
    this.settleWaiter();
  }

  fail(err: Error): void {
    if (this.ended) return;
    this.failure = err;
    this.ended = true;
    this.settleWaiter();
  }

  private settleWaiter(): void {
    if (!this.waiter || this.values.length > 0) return;
    const { resolve, reject } = this.waiter;
    this.waiter = undefined;
    if (this.failure) reject(this.failure);
    else resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.values.length > 0) return Promise.resolve({ value: this.values.shift()!, done: false });
        if (this.failure) return Promise.reject(this.failure);
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.waiter = { resolve, reject };
        });
      },
    };
  }
}
