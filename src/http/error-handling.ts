import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { RequestLimits } from '../options.js';
import { catalogueError, OpenAIError, toOpenAIError } from '../errors.js';
import { PreprocessInputError } from '../preprocess/preprocessor.js';

/** Fastify's own client errors (body parsing, content type, size), reworded for API clients. */
function fromFastify(err: FastifyError, limits: Pick<RequestLimits, 'maxBodyBytes'>): OpenAIError {
  const status = err.statusCode ?? 500;
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return catalogueError('invalid_json', [err.message]);
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return catalogueError('request_too_large', [err.message, limits.maxBodyBytes]);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return catalogueError('unsupported_media_type', [err.message]);
    default:
      if (err instanceof SyntaxError) {
        return catalogueError('invalid_json', [err.message]);
      }
      return status < 500 ? new OpenAIError(status, err.message) : new OpenAIError(500, 'The server had an error while processing your request.');
  }
}

/**
 * How a failed request is logged: an error the server did not mean (a 500) at error level with its
 * stack; a deadline (504) as a warning; what it answers on purpose, a drain's 503 included, only in
 * the request's own log line.
 */
export function logFailure(log: FastifyBaseLogger, err: unknown, apiError: OpenAIError, what: string): void {
  if (!(err instanceof OpenAIError)) {
    if (apiError.statusCode >= 500) log.error({ err }, what);
  } else if (apiError.statusCode === 504) {
    log.warn({ code: apiError.code }, what);
  }
}

/**
 * Fastify's error handler for a scope: any error a route or hook raised, as the error the API
 * answers with (ours as it is, Fastify's own — body parsing, content type, size — reworded),
 * logged, and sent in the protocol's shape (`body`: OpenAI's unless the scope speaks another).
 */
export function apiErrorHandler(limits: Pick<RequestLimits, 'maxBodyBytes'>, body: (error: OpenAIError) => unknown = (error) => error.toBody()) {
  return (err: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    const apiError = err instanceof OpenAIError || err instanceof PreprocessInputError ? toOpenAIError(err) : fromFastify(err, limits);
    logFailure(request.log, err, apiError, 'request failed');
    void reply.code(apiError.statusCode).headers(apiError.headers).send(body(apiError));
  };
}

function registerErrorHandlers(app: FastifyInstance, limits: Pick<RequestLimits, 'maxBodyBytes'>): void {
  app.setErrorHandler(apiErrorHandler(limits));
  app.setNotFoundHandler((request, reply) => {
    const error = catalogueError('unknown_url', [request.method, request.url]);
    void reply.code(404).send(error.toBody());
  });
}

/**
 * HTTP/1.1 requires a Host header. Node's own check answers with a bare 400, so it is turned off
 * on the server (see server.ts) and made here instead.
 */
function requireHostHeader(app: FastifyInstance): void {
  app.addHook('onRequest', async (request) => {
    if (request.raw.httpVersion === '1.1' && request.headers.host === undefined) {
      throw catalogueError('missing_host', []);
    }
  });
}

/** A path the router cannot decode (`/v1/models/%ZZ`): Fastify's `frameworkErrors`. */
export function answerBadUrl(_err: Error, request: FastifyRequest, reply: FastifyReply): void {
  const error = catalogueError('invalid_url', [request.raw.url ?? '']);
  void reply.code(400).header('x-request-id', request.id).send(error.toBody());
}

/** A request with an `Expect` header other than 100-continue, which Node answers with a bare 417 unless told. */
export function answerUnmetExpectation(request: IncomingMessage, response: ServerResponse): void {
  const error = catalogueError('expectation_failed', [String(request.headers.expect).slice(0, 100)], 'expect');
  const body = JSON.stringify(error.toBody());
  response.writeHead(417, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-request-id': randomUUID(), connection: 'close' });
  response.end(body);
}

/** Errors Node's HTTP parser raises before a request reaches Fastify, answered in the same shape. */
export function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (socket.destroyed || err.code === 'ECONNRESET') return;
  const error =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? catalogueError('request_timeout', [])
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? catalogueError('headers_too_large', [])
        : catalogueError('invalid_http', [err.message]);
  const body = JSON.stringify(error.toBody());
  const reason = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }[error.statusCode];
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(
    `HTTP/1.1 ${error.statusCode} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}

/**
 * Every answer in OpenAI's error shape, with the request's id: the error and not-found handlers,
 * the Host check and the `x-request-id` header. Registered before anything else.
 */
export const errorHandling = fp<{ limits: Pick<RequestLimits, 'maxBodyBytes'> }>(
  async (app, { limits }) => {
    app.addHook('onSend', async (request, reply) => {
      void reply.header('x-request-id', request.id);
    });
    registerErrorHandlers(app, limits);
    requireHostHeader(app);
  },
  { name: 'ortserve-errors' },
);
