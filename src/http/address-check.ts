import { createServer } from 'node:net';

/**
 * Resolves when `host`:`port` can be listened on, rejects with the system's error (EADDRINUSE,
 * EADDRNOTAVAIL, …) when not: checked before the model is loaded, which can take minutes, so that
 * a port in use is said at once. The server's own listen still reports what changes in between.
 */
export function checkListenable(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}
