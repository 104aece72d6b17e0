import { apiError, catalogueError, invalidRequest, OpenAIError, toOpenAIError } from '../../src/errors.js';
import { PreprocessInputError } from '../../src/preprocess/preprocessor.js';

describe('the error catalogue', () => {
  it('gives each code its status and OpenAI type', () => {
    expect([catalogueError('model_not_found', ['m']).statusCode, catalogueError('model_not_found', ['m']).type]).toEqual([404, 'invalid_request_error']);
    expect([apiError('invalid_api_key', 'k').statusCode, apiError('invalid_api_key', 'k').type]).toEqual([401, 'authentication_error']);
    expect([catalogueError('queue_full', []).statusCode, catalogueError('queue_full', []).type]).toEqual([429, 'rate_limit_error']);
    expect([catalogueError('timeout', [5]).statusCode, catalogueError('timeout', [5]).type]).toEqual([504, 'server_error']);
    expect(invalidRequest('bad', 'n', 'invalid_value').toBody()).toEqual({ error: { message: 'bad', type: 'invalid_request_error', param: 'n', code: 'invalid_value' } });
  });

  it("writes a code's message from its template, with the arguments given", () => {
    expect(catalogueError('missing_required_parameter', ['messages[0].content'], 'messages[0].content').toBody()).toEqual({
      error: { message: "Missing required parameter: 'messages[0].content'.", type: 'invalid_request_error', param: 'messages[0].content', code: 'missing_required_parameter' },
    });
    expect(catalogueError('timeout', [30]).message).toBe("The request did not complete within this server's limit of 30 seconds and was cancelled.");
    expect(catalogueError('limit_exceeded', ["'n' asks for 9 choices; at most 2 are allowed", 'max-n'], 'n').message).toBe("'n' asks for 9 choices; at most 2 are allowed (this server's limit, set by --max-n).");
  });

  it('answers anything else as the error it amounts to: a request that could not be prepared as a 400, the rest as a 500', () => {
    expect(toOpenAIError(new PreprocessInputError('too deep')).toBody().error).toMatchObject({ code: 'invalid_input', message: 'too deep' });
    const internal = toOpenAIError(new Error('boom'));
    expect(internal).toBeInstanceOf(OpenAIError);
    expect([internal.statusCode, internal.code, internal.type]).toEqual([500, null, 'server_error']);
  });
});
