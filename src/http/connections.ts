import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/** File descriptors kept for the model, the workers and the server's own files, out of the process's limit. */
const RESERVED_DESCRIPTORS = 128;
/** Connections held back beyond which room is made: idle ones first, then the oldest that never sent a request. */
const HEADROOM = 16;

/** The process's soft limit on open files (Linux), or undefined where it cannot be read. */
function openFileLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((text) => text.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    const value = soft === undefined ? NaN : Number(soft);
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** `--max-connections`, with 0 read as what the open-file limit leaves (at most 65,536; 4,096 where the limit is unknown). */
export function connectionCap(configured: number): number {
  if (configured > 0) return configured;
  const limit = openFileLimit();
  if (limit === undefined) return 4096;
  return Math.max(HEADROOM * 2, Math.min(65_536, limit - RESERVED_DESCRIPTORS));
}

/**
 * Bounds the connections a server holds, so that idle ones cannot use up its file descriptors and
 * lock out new clients (and the orchestrator's probes). Close to the cap, each new connection makes
 * room: keep-alive connections between requests are closed first, then the oldest connections that
 * have not sent a whole request yet. At the cap itself Node refuses the connection (`maxConnections`).
 */
export function capConnections(server: Server, cap: number): void {
  server.maxConnections = cap;
  /** Open connections in the order they came, each with whether a request has arrived on it. */
  const open = new Map<Socket, { served: boolean }>();
  server.on('request', (request: { socket: Socket }) => {
    const state = open.get(request.socket);
    if (state) state.served = true;
  });
  server.on('connection', (socket: Socket) => {
    open.set(socket, { served: false });
    socket.once('close', () => open.delete(socket));
    let excess = open.size - (cap - HEADROOM) + 1;
    if (excess <= 0) return;
    server.closeIdleConnections();
    for (const [waiting, state] of open) {
      if (excess <= 0) break;
      if (state.served || waiting === socket) continue;
      waiting.destroy();
      excess--;
    }
  });
}
