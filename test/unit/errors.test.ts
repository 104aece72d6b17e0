import { apiError, invalidRequest, OpenAIError, toOpenAIError } from '../../src/errors.js';
import { PreprocessInputError } from '../../src/preprocess/preprocessor.js';

describe('the error catalogue', () => {
  it('gives each code its status and OpenAI type', () => {
    expect([apiError('model_not_found', 'm').statusCode, apiError('model_not_found', 'm').type]).toEqual([404, 'invalid_request_error']);
    expect([apiError('invalid_api_key', 'k').statusCode, apiError('invalid_api_key', 'k').type]).toEqual([401, 'authentication_error']);
    expect([apiError('queue_full', 'q').statusCode, apiError('queue_full', 'q').type]).toEqual([429, 'rate_limit_error']);
    expect([apiError('timeout', 't').statusCode, apiError('timeout', 't').type]).toEqual([504, 'server_error']);
    expect(invalidRequest('bad', 'n', 'invalid_value').toBody()).toEqual({ error: { message: 'bad', type: 'invalid_request_error', param: 'n', code: 'invalid_value' } });
  });

  it('answers anything else as the error it amounts to: a request that could not be prepared as a 400, the rest as a 500', () => {
    expect(toOpenAIError(new PreprocessInputError('too deep')).toBody().error).toMatchObject({ code: 'invalid_input', message: 'too deep' });
    const internal = toOpenAIError(new Error('boom'));
    expect(internal).toBeInstanceOf(OpenAIError);
    expect([internal.statusCode, internal.code, internal.type]).toEqual([500, null, 'server_error']);
  });
});
