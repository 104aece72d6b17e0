/** A model directory that cannot be served: the message names the file and what is wrong with it. */
export class ModelLoadError extends Error {
  override readonly name = 'ModelLoadError';
}
