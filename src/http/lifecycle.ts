import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { serverShuttingDown } from '../errors.js';

/**
 * Readiness and draining. A draining server first only says so on `/ready` (503), for the drain
 * delay, so that load balancers take it out while it still serves; then new API requests get 503,
 * and the requests already in flight (streams included) are counted until they end.
 */
export class Lifecycle {
  /** `/ready` says 503. */
  private leaving = false;
  /** New requests are refused. */
  private draining = false;
  private inFlight = 0;
  private readonly idleWaiters = new Set<() => void>();

  get ready(): boolean {
    return !this.leaving;
  }

  get requestsInFlight(): number {
    return this.inFlight;
  }

  /** Counts the requests of `api`'s routes in flight, and refuses them while draining. */
  trackRequests(api: FastifyInstance): void {
    api.addHook('onRequest', async (_request, reply) => {
      if (this.draining) throw serverShuttingDown();
      this.inFlight++;
      // `close` fires once the response is sent or the connection is gone, hijacked streams included.
      reply.raw.once('close', () => this.finished());
    });
  }

  registerReadiness(app: FastifyInstance): void {
    app.get('/ready', async (_request, reply) => {
      if (this.leaving) return reply.code(503).send({ status: 'draining' });
      return { status: 'ready' };
    });
  }

  /**
   * Says it is not ready at once, stops taking requests after `delayMs`, and resolves true when
   * those in flight are done, false after `graceMs` more.
   */
  async drain(graceMs: number, delayMs = 0): Promise<boolean> {
    this.leaving = true;
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    this.draining = true;
    if (this.inFlight === 0) return true;
    return new Promise<boolean>((resolve) => {
      const done = (idle: boolean) => {
        clearTimeout(timer);
        this.idleWaiters.delete(onIdle);
        resolve(idle);
      };
      const onIdle = () => done(true);
      const timer = setTimeout(() => done(false), graceMs);
      this.idleWaiters.add(onIdle);
    });
  }

  private finished(): void {
    this.inFlight--;
    if (this.inFlight === 0) for (const waiter of [...this.idleWaiters]) waiter();
  }
}

/** Refuses the requests of the scope it is registered in while draining, and counts those in flight. */
export const drainGuard = fp<{ lifecycle: Lifecycle }>(async (api, { lifecycle }) => lifecycle.trackRequests(api), { name: 'ortserve-drain' });

/** `GET /ready`. */
export const readiness = fp<{ lifecycle: Lifecycle }>(async (app, { lifecycle }) => lifecycle.registerReadiness(app), { name: 'ortserve-readiness' });
