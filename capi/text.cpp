// The text path of the C ABI: tokenizer, streaming decoder, chat render/parse, sampler.
#include <cstring>

#include "capi_guard.hpp"
#include "dsv4/text/chat.hpp"
#include "handles.hpp"

using dsv4::StatusCode;
using dsv4::capi::require;

namespace {

constexpr size_t kChatParamsV1Size = sizeof(dsv4_chat_params);
constexpr size_t kSamplerParamsV1Size = sizeof(dsv4_sampler_params);

const dsv4::text::Tokenizer& tokenizer_of(const dsv4_tokenizer* handle, const char* fn) {
  if (!handle) dsv4::fail(StatusCode::kInvalidArgument, std::string(fn) + ": tokenizer is NULL");
  return *handle->tokenizer;
}

// Copies `text` and a NUL into a caller buffer of `capacity` bytes; *len gets the length.
dsv4_status write_text(const std::string& text, char* out, size_t capacity, size_t* len,
                       const char* fn) {
  require(len != nullptr, "text length pointer is NULL");
  if (!out && capacity > 0)  // a size query passes NULL and 0; NULL with a capacity is a bug
    dsv4::fail(
        StatusCode::kInvalidArgument,
        std::string(fn) + ": the buffer is NULL but its capacity is " + std::to_string(capacity));
  *len = text.size();
  if (capacity < text.size() + 1 || !out)
    dsv4::fail(StatusCode::kBufferTooSmall,
               std::string(fn) + ": the text needs " + std::to_string(text.size() + 1) +
                   " bytes (with NUL), the buffer holds " + std::to_string(capacity));
  std::memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
  return DSV4_OK;
}

dsv4_status write_ids(const std::vector<int32_t>& ids, int32_t* out, size_t capacity, size_t* n,
                      const char* fn) {
  require(n != nullptr, "n_ids is NULL");
  if (!out && capacity > 0)  // a size query passes NULL and 0; NULL with a capacity is a bug
    dsv4::fail(
        StatusCode::kInvalidArgument,
        std::string(fn) + ": the buffer is NULL but its capacity is " + std::to_string(capacity));
  *n = ids.size();
  if (ids.size() > capacity || (!out && !ids.empty()))
    dsv4::fail(StatusCode::kBufferTooSmall, std::string(fn) + ": " + std::to_string(ids.size()) +
                                                " ids, the buffer holds " +
                                                std::to_string(capacity));
  if (!ids.empty()) std::memcpy(out, ids.data(), ids.size() * sizeof(int32_t));
  return DSV4_OK;
}

dsv4::text::ChatOptions chat_options(const dsv4_chat_params* params) {
  const dsv4_chat_params p = dsv4::capi::read_params(params, dsv4_chat_default_params(),
                                                     kChatParamsV1Size, "dsv4_chat_params");
  dsv4::text::ChatOptions o;
  o.variant = dsv4::text::chat_variant_from_name(p.variant ? p.variant : "v4").value();
  o.thinking = p.thinking != 0;
  o.drop_thinking = p.drop_thinking != 0;
  o.add_bos = p.add_bos != 0;
  if (p.reasoning_effort) o.reasoning_effort = p.reasoning_effort;
  if (p.context_json) o.context_json = p.context_json;
  return o;
}

// One int32 property of a tokenizer into *out.
dsv4_status query(const dsv4_tokenizer* tokenizer, int32_t* out, const char* fn,
                  int32_t (dsv4::text::Tokenizer::*get)() const noexcept) {
  DSV4_CAPI_BEGIN
  if (out) *out = 0;
  const auto& tok = tokenizer_of(tokenizer, fn);
  if (!out) dsv4::fail(StatusCode::kInvalidArgument, std::string(fn) + ": out is NULL");
  *out = (tok.*get)();
  return DSV4_OK;
  DSV4_CAPI_END
}

dsv4::text::RenderedPrompt render(const char* messages_json, const dsv4_chat_params* params) {
  require(messages_json != nullptr, "messages_json is NULL");
  return dsv4::text::render_chat(messages_json, chat_options(params)).value();
}

}  // namespace

extern "C" {

DSV4_API dsv4_status dsv4_tokenizer_load(const char* path, dsv4_tokenizer** out) {
  DSV4_CAPI_BEGIN
  if (out) *out = nullptr;
  require(path != nullptr, "dsv4_tokenizer_load: path is NULL");
  require(out != nullptr, "dsv4_tokenizer_load: out is NULL");
  auto tok = dsv4::text::Tokenizer::load(path);
  if (!tok) return dsv4::capi::report(tok.status());
  *out = new dsv4_tokenizer{std::move(tok.value())};
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_model_tokenizer(const dsv4_model* model, dsv4_tokenizer** out) {
  DSV4_CAPI_BEGIN
  if (out) *out = nullptr;
  require(model != nullptr, "dsv4_model_tokenizer: model is NULL");
  require(out != nullptr, "dsv4_model_tokenizer: out is NULL");
  if (!model->tokenizer)
    dsv4::fail(StatusCode::kIo, "dsv4_model_tokenizer: the model directory has no tokenizer.json");
  *out = new dsv4_tokenizer{model->tokenizer};
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API void dsv4_tokenizer_free(dsv4_tokenizer* tokenizer) { delete tokenizer; }

DSV4_API dsv4_status dsv4_tokenizer_n_vocab(const dsv4_tokenizer* tokenizer, int32_t* out) {
  return query(tokenizer, out, "dsv4_tokenizer_n_vocab", &dsv4::text::Tokenizer::n_vocab);
}
DSV4_API dsv4_status dsv4_tokenizer_bos(const dsv4_tokenizer* tokenizer, int32_t* out) {
  return query(tokenizer, out, "dsv4_tokenizer_bos", &dsv4::text::Tokenizer::bos_id);
}
DSV4_API dsv4_status dsv4_tokenizer_eos(const dsv4_tokenizer* tokenizer, int32_t* out) {
  return query(tokenizer, out, "dsv4_tokenizer_eos", &dsv4::text::Tokenizer::eos_id);
}

DSV4_API dsv4_status dsv4_tokenize(const dsv4_tokenizer* tokenizer, const char* text,
                                   size_t text_len, uint32_t flags, int32_t* ids, size_t capacity,
                                   size_t* n_ids) {
  DSV4_CAPI_BEGIN
  if (n_ids) *n_ids = 0;
  const auto& tok = tokenizer_of(tokenizer, "dsv4_tokenize");
  require(text != nullptr || text_len == 0, "dsv4_tokenize: text is NULL");
  require((flags & ~DSV4_TOKENIZE_SPECIAL) == 0, "dsv4_tokenize: unknown flags");
  const auto result = tok.encode(std::string_view(text ? text : "", text_len),
                                 {.match_added_tokens = (flags & DSV4_TOKENIZE_SPECIAL) != 0});
  if (!result) return dsv4::capi::report(result.status());
  return write_ids(*result, ids, capacity, n_ids, "dsv4_tokenize");
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_detokenize(const dsv4_tokenizer* tokenizer, const int32_t* ids,
                                     size_t n_ids, uint32_t flags, char* text, size_t capacity,
                                     size_t* text_len) {
  DSV4_CAPI_BEGIN
  if (text_len) *text_len = 0;
  const auto& tok = tokenizer_of(tokenizer, "dsv4_detokenize");
  require(ids != nullptr || n_ids == 0, "dsv4_detokenize: ids is NULL");
  require((flags & ~DSV4_DETOKENIZE_SKIP_SPECIAL) == 0, "dsv4_detokenize: unknown flags");
  const auto result = tok.decode(
      {ids, n_ids}, {.skip_special_tokens = (flags & DSV4_DETOKENIZE_SKIP_SPECIAL) != 0});
  if (!result) return dsv4::capi::report(result.status());
  return write_text(*result, text, capacity, text_len, "dsv4_detokenize");
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_token_to_piece(const dsv4_tokenizer* tokenizer, int32_t id, char* piece,
                                         size_t capacity, size_t* piece_len) {
  DSV4_CAPI_BEGIN
  if (piece_len) *piece_len = 0;
  const auto& tok = tokenizer_of(tokenizer, "dsv4_token_to_piece");
  const std::string_view bytes = tok.token_bytes(id);
  if (bytes.empty())
    dsv4::fail(StatusCode::kOutOfRange,
               "dsv4_token_to_piece: token id " + std::to_string(id) + " is not in the vocabulary");
  return write_text(std::string(bytes), piece, capacity, piece_len, "dsv4_token_to_piece");
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_piece_to_token(const dsv4_tokenizer* tokenizer, const char* piece,
                                         size_t piece_len, int32_t* id) {
  DSV4_CAPI_BEGIN
  if (id) *id = -1;
  const auto& tok = tokenizer_of(tokenizer, "dsv4_piece_to_token");
  require(piece != nullptr, "dsv4_piece_to_token: piece is NULL");
  require(id != nullptr, "dsv4_piece_to_token: id is NULL");
  const auto found = tok.piece_to_id({piece, piece_len});
  if (!found) dsv4::fail(StatusCode::kOutOfRange, "dsv4_piece_to_token: no such token");
  *id = *found;
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_decoder_create(const dsv4_tokenizer* tokenizer, dsv4_decoder** out) {
  DSV4_CAPI_BEGIN
  if (out) *out = nullptr;
  require(tokenizer != nullptr, "dsv4_decoder_create: tokenizer is NULL");
  require(out != nullptr, "dsv4_decoder_create: out is NULL");
  *out = new dsv4_decoder{dsv4::text::StreamDecoder(tokenizer->tokenizer)};
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API void dsv4_decoder_free(dsv4_decoder* decoder) { delete decoder; }

DSV4_API dsv4_status dsv4_decoder_push(dsv4_decoder* decoder, int32_t id, char* text,
                                       size_t capacity, size_t* text_len) {
  DSV4_CAPI_BEGIN
  if (text_len) *text_len = 0;
  require(decoder != nullptr, "dsv4_decoder_push: decoder is NULL");
  require(text_len != nullptr, "dsv4_decoder_push: text_len is NULL");
  // Try on a copy: a too-small buffer must not lose the pushed bytes.
  dsv4::text::StreamDecoder attempt = decoder->decoder;
  const auto result = attempt.push(id);
  if (!result) return dsv4::capi::report(result.status());
  const dsv4_status st = write_text(*result, text, capacity, text_len, "dsv4_decoder_push");
  decoder->decoder = std::move(attempt);
  return st;
  DSV4_CAPI_END
}

DSV4_API dsv4_chat_params dsv4_chat_default_params(void) {
  dsv4_chat_params p{};
  p.struct_size = sizeof(dsv4_chat_params);
  p.drop_thinking = 1;
  p.add_bos = 1;
  return p;
}

DSV4_API dsv4_status dsv4_chat_render(const char* messages_json, const dsv4_chat_params* params,
                                      char* text, size_t capacity, size_t* text_len) {
  DSV4_CAPI_BEGIN
  if (text_len) *text_len = 0;
  return write_text(render(messages_json, params).text, text, capacity, text_len,
                    "dsv4_chat_render");
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_chat_render_tokens(const dsv4_tokenizer* tokenizer,
                                             const char* messages_json,
                                             const dsv4_chat_params* params, int32_t* ids,
                                             size_t capacity, size_t* n_ids) {
  DSV4_CAPI_BEGIN
  if (n_ids) *n_ids = 0;
  const auto& tok = tokenizer_of(tokenizer, "dsv4_chat_render_tokens");
  const auto result = dsv4::text::tokenize_prompt(tok, render(messages_json, params));
  if (!result) return dsv4::capi::report(result.status());
  return write_ids(*result, ids, capacity, n_ids, "dsv4_chat_render_tokens");
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_chat_parse(const char* text, size_t text_len, int32_t thinking,
                                     char* json, size_t capacity, size_t* json_len) {
  DSV4_CAPI_BEGIN
  if (json_len) *json_len = 0;
  require(text != nullptr || text_len == 0, "dsv4_chat_parse: text is NULL");
  const auto parsed = dsv4::text::parse_completion({text ? text : "", text_len}, thinking != 0);
  if (!parsed) return dsv4::capi::report(parsed.status());
  return write_text(*parsed, json, capacity, json_len, "dsv4_chat_parse");
  DSV4_CAPI_END
}

DSV4_API dsv4_sampler_params dsv4_sampler_default_params(void) {
  const dsv4::sampling::SamplerParams d;
  dsv4_sampler_params p{};
  p.struct_size = sizeof(dsv4_sampler_params);
  p.temperature = d.temperature;
  p.top_k = d.top_k;
  p.top_p = d.top_p;
  p.min_p = d.min_p;
  p.repetition_penalty = d.repetition_penalty;
  p.presence_penalty = d.presence_penalty;
  p.frequency_penalty = d.frequency_penalty;
  p.penalty_last_n = d.penalty_last_n;
  p.seed = d.seed;
  return p;
}

DSV4_API dsv4_status dsv4_sampler_create(const dsv4_sampler_params* params,
                                         const dsv4_tokenizer* tokenizer, dsv4_sampler** out) {
  DSV4_CAPI_BEGIN
  if (out) *out = nullptr;
  require(out != nullptr, "dsv4_sampler_create: out is NULL");
  const dsv4_sampler_params p = dsv4::capi::read_params(
      params, dsv4_sampler_default_params(), kSamplerParamsV1Size, "dsv4_sampler_params");
  dsv4::sampling::SamplerParams sp;
  sp.temperature = p.temperature;
  sp.top_k = p.top_k;
  sp.top_p = p.top_p;
  sp.min_p = p.min_p;
  sp.repetition_penalty = p.repetition_penalty;
  sp.presence_penalty = p.presence_penalty;
  sp.frequency_penalty = p.frequency_penalty;
  sp.penalty_last_n = p.penalty_last_n;
  sp.seed = p.seed;
  require(p.stop_tokens != nullptr || p.n_stop_tokens == 0,
          "dsv4_sampler_create: stop_tokens is NULL");
  sp.stop_tokens.assign(p.stop_tokens, p.stop_tokens + p.n_stop_tokens);
  require(p.stop_strings != nullptr || p.n_stop_strings == 0,
          "dsv4_sampler_create: stop_strings is NULL");
  for (size_t i = 0; i < p.n_stop_strings; ++i) {
    require(p.stop_strings[i] != nullptr, "dsv4_sampler_create: a stop string is NULL");
    sp.stop_strings.emplace_back(p.stop_strings[i]);
  }
  require(p.n_stop_strings == 0 || tokenizer != nullptr,
          "dsv4_sampler_create: stop strings need a tokenizer");
  require(p.n_logit_bias == 0 || (p.logit_bias_tokens && p.logit_bias_values),
          "dsv4_sampler_create: logit bias arrays are NULL");
  for (size_t i = 0; i < p.n_logit_bias; ++i)
    sp.logit_bias[p.logit_bias_tokens[i]] += p.logit_bias_values[i];
  auto sampler = dsv4::sampling::Sampler::create(std::move(sp));
  if (!sampler) return dsv4::capi::report(sampler.status());
  if (tokenizer) sampler.value()->set_tokenizer(tokenizer->tokenizer);
  *out = new dsv4_sampler{std::move(sampler.value())};
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API void dsv4_sampler_free(dsv4_sampler* sampler) { delete sampler; }

DSV4_API dsv4_status dsv4_sampler_sample(dsv4_sampler* sampler, const float* logits, size_t n_vocab,
                                         int32_t* token) {
  DSV4_CAPI_BEGIN
  if (token) *token = -1;
  require(sampler != nullptr, "dsv4_sampler_sample: sampler is NULL");
  require(logits != nullptr, "dsv4_sampler_sample: logits is NULL");
  require(token != nullptr, "dsv4_sampler_sample: token is NULL");
  require(n_vocab > 0 && n_vocab <= size_t(INT32_MAX), "dsv4_sampler_sample: n_vocab out of range");
  const auto t = sampler->sampler->sample({logits, n_vocab});
  if (!t) return dsv4::capi::report(t.status());
  *token = *t;
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_sampler_accept(dsv4_sampler* sampler, int32_t token, int32_t* stop) {
  DSV4_CAPI_BEGIN
  if (stop) *stop = 0;
  require(sampler != nullptr, "dsv4_sampler_accept: sampler is NULL");
  const bool s = sampler->sampler->accept(token);
  if (stop) *stop = s ? 1 : 0;
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_sampler_reset(dsv4_sampler* sampler) {
  DSV4_CAPI_BEGIN
  require(sampler != nullptr, "dsv4_sampler_reset: sampler is NULL");
  sampler->sampler->reset();
  return DSV4_OK;
  DSV4_CAPI_END
}

}  // extern "C"
