import type { TaskOwner } from '../preprocess/preprocessor.js';

/** Who a request is from and whether it is still wanted, settled as soon as it is read. */
export interface RequestScope extends TaskOwner {
  /** Aborted when the client goes away before its response is complete (reason: a 499 error), or when the deadline passes (a 504). */
  signal: AbortSignal;
  /** The part of the prefix cache its prompts may reuse and fill: a client never learns what another's prompts were. */
  cachePartition: string;
}
