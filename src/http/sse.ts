import type { FastifyReply } from 'fastify';

/**
 * A server-sent event stream in OpenAI's format: `data: {json}` events, closed by `data: [DONE]`
 * (or named events, for the Responses API).
 * Writes after the client has gone are dropped.
 */
export class SseStream {
  private readonly raw: FastifyReply['raw'];

  constructor(reply: FastifyReply) {
    reply.hijack();
    this.raw = reply.raw;
    this.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      // No Connection header of our own: Node keeps the connection alive unless the client asked
      // for `Connection: close`, and then closes it after the last event.
      'x-request-id': String(reply.request.id),
    });
    this.raw.flushHeaders();
  }

  get closed(): boolean {
    return this.raw.destroyed || this.raw.writableEnded;
  }

  send(data: unknown): void {
    if (!this.closed) this.raw.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** An event with a name (`event: name`), as the Responses API sends them. */
  sendNamed(name: string, data: unknown): void {
    if (!this.closed) this.raw.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** Ends the stream after its last event (the Responses API sends no `[DONE]`). */
  end(): void {
    if (!this.closed) this.raw.end();
  }

  /** Ends the stream with `data: [DONE]`. */
  done(): void {
    if (this.closed) return;
    this.raw.end('data: [DONE]\n\n');
  }

  /** Ends the stream with a last event carrying an error, in the API's error shape. */
  fail(body: unknown): void {
    if (this.closed) return;
    this.raw.end(`data: ${JSON.stringify(body)}\n\n`);
  }
}
