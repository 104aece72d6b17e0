import { ModelLoadError } from './errors.js';
import { isObject, type JsonObject as Json } from '../util/json.js';

/**
 * onnxruntime-genai folders describe the model in `genai_config.json` (written by its model
 * builder) instead of config.json. This reads what config.json would say from it, the graph's
 * file name, and the sampling defaults of its `search` section.
 */

/** The I/O names this server feeds and fetches; a genai graph that names them otherwise is refused. */
const EXPECTED_NAMES: Record<string, string> = {
  input_ids: 'input_ids',
  attention_mask: 'attention_mask',
  position_ids: 'position_ids',
  past_key_names: 'past_key_values.%d.key',
  past_value_names: 'past_key_values.%d.value',
  logits: 'logits',
  present_key_names: 'present.%d.key',
  present_value_names: 'present.%d.value',
};

export interface GenaiModel {
  /** config.json's fields, as Hugging Face names them. */
  config: Json;
  generationConfig: Json;
  filename: string | undefined;
}

export function genaiModelConfig(genai: Json): GenaiModel {
  const model = isObject(genai.model) ? genai.model : undefined;
  const decoder = model && isObject(model.decoder) ? model.decoder : undefined;
  if (!model || !decoder) throw new ModelLoadError('genai_config.json: no model.decoder section');
  for (const section of ['inputs', 'outputs'] as const) {
    const names = isObject(decoder[section]) ? decoder[section] : {};
    for (const [key, name] of Object.entries(names)) {
      const expected = EXPECTED_NAMES[key];
      if (expected !== undefined && name !== expected) {
        throw new ModelLoadError(`genai_config.json: the graph's ${section.slice(0, -1)} ${key} is named ${JSON.stringify(name)}; this server needs ${JSON.stringify(expected)}`);
      }
    }
  }
  const search = isObject(genai.search) ? genai.search : {};
  const config: Json = {
    model_type: model.type,
    vocab_size: model.vocab_size,
    max_position_embeddings: model.context_length,
    num_hidden_layers: decoder.num_hidden_layers,
    num_attention_heads: decoder.num_attention_heads,
    num_key_value_heads: decoder.num_key_value_heads,
    hidden_size: decoder.hidden_size,
    head_dim: decoder.head_size,
    eos_token_id: model.eos_token_id,
    bos_token_id: model.bos_token_id,
  };
  // The builder writes its sampling settings whether or not it samples: they count only with do_sample.
  const generationConfig: Json = search.do_sample === true ? { temperature: search.temperature, top_p: search.top_p } : {};
  return { config, generationConfig, filename: typeof decoder.filename === 'string' ? decoder.filename : undefined };
}
