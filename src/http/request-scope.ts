import { setMaxListeners } from 'node:events';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RequestScope } from '../generation/scope.js';
import type { ServingContext } from '../generation/context.js';
import type { ServedModels } from '../generation/served-models.js';
import { apiKeyIndex } from './auth.js';
import { clientClosedRequest, modelNotFound, requestTimedOut } from '../errors.js';

export interface ScopeSettings {
  /** 0: no deadline. */
  requestTimeoutMs: number;
  /** A header whose value partitions the prefix cache instead of the API key. */
  prefixCachePartitionHeader?: string | undefined;
}

/**
 * Aborts when the client goes away before its response is complete, or when the request's
 * deadline passes (then the reason is the 504 error to answer with).
 */
export function requestSignal(reply: FastifyReply, timeoutMs: number): AbortSignal {
  const controller = new AbortController();
  // Every choice of the request listens to this one signal; a batch of prompts has many.
  setMaxListeners(Infinity, controller.signal);
  const deadline = timeoutMs > 0 ? setTimeout(() => controller.abort(requestTimedOut(timeoutMs / 1000)), timeoutMs) : undefined;
  deadline?.unref();
  const closed = () => {
    clearTimeout(deadline);
    if (!reply.raw.writableEnded) controller.abort(clientClosedRequest());
  };
  if (reply.raw.destroyed || reply.raw.socket?.destroyed) closed();
  else reply.raw.on('close', closed);
  return controller.signal;
}

/**
 * The scope of a request whose body has been read: from here on, a client that leaves cancels
 * whatever is queued or running for it. Clients are told apart by API key, else by address.
 */
export function requestScope(request: FastifyRequest, reply: FastifyReply, settings: ScopeSettings): RequestScope {
  const key = apiKeyIndex(request);
  const header = settings.prefixCachePartitionHeader;
  const given = header === undefined ? undefined : request.headers[header];
  const cachePartition = header !== undefined ? `header:${typeof given === 'string' ? given : ''}` : key !== undefined ? `key:${key}` : '';
  return {
    client: key !== undefined ? `key:${key}` : `address:${request.ip}`,
    cachePartition,
    signal: requestSignal(reply, settings.requestTimeoutMs),
  };
}

/**
 * The served model a request names (the first one when it may name none), loaded if it is not, and
 * held until the response is done or the client is gone, so that it is not unloaded under the request.
 */
export async function servedContext(models: ServedModels, name: string | null | undefined, reply: FastifyReply): Promise<ServingContext> {
  const id = name ?? models.firstId;
  if (id === undefined) throw modelNotFound('');
  const lease = await models.acquire(id);
  if (reply.raw.destroyed) {
    lease.release();
    throw clientClosedRequest();
  }
  reply.raw.once('close', lease.release);
  return lease.context;
}
