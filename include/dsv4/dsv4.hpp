// RAII C++ over the stable C ABI (dsv4.h): for programs that link libdsv4.so rather than the
// header-mostly C++ library. Handles free themselves, failures throw dsv4::api::Error carrying
// the status and its message, and the buffer-size protocol of the C calls is handled here.
// Only dsv4.h and the standard library are needed (C++17).
#pragma once

#include <dsv4.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv4::api {

class Error : public std::runtime_error {
 public:
  Error(dsv4_status status, const std::string& message)
      : std::runtime_error(std::string(dsv4_status_name(status)) + ": " + message),
        status_(status) {}
  dsv4_status status() const noexcept { return status_; }

 private:
  dsv4_status status_;
};

inline void check(dsv4_status status) {
  if (status != DSV4_OK) throw Error(status, dsv4_last_error());
}

namespace detail {
template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const noexcept { Free(p); }
};
template <class T, void (*Free)(T*)>
using Handle = std::unique_ptr<T, Deleter<T, Free>>;

// Calls fill(buffer, capacity, &needed) once with a guess, and again when the buffer was small.
template <class Elem, class Fill>
std::vector<Elem> grow_and_fill(size_t guess, size_t extra, Fill fill) {
  std::vector<Elem> buffer(guess + extra);
  size_t needed = 0;
  dsv4_status s = fill(buffer.data(), buffer.size(), &needed);
  if (s == DSV4_ERR_BUFFER_TOO_SMALL) {
    buffer.resize(needed + extra);
    s = fill(buffer.data(), buffer.size(), &needed);
  }
  check(s);
  buffer.resize(needed);
  return buffer;
}
inline std::string as_string(const std::vector<char>& v) { return std::string(v.begin(), v.end()); }
}  // namespace detail

class Tokenizer {
 public:
  explicit Tokenizer(const std::string& path) {
    dsv4_tokenizer* t = nullptr;
    check(dsv4_tokenizer_load(path.c_str(), &t));
    handle_.reset(t);
  }
  explicit Tokenizer(dsv4_tokenizer* adopted) : handle_(adopted) {}

  std::vector<int32_t> encode(std::string_view text, bool match_special_tokens = false) const {
    const uint32_t flags = match_special_tokens ? DSV4_TOKENIZE_SPECIAL : 0u;
    return detail::grow_and_fill<int32_t>(
        text.size() / 2 + 8, 0, [&](int32_t* ids, size_t cap, size_t* n) {
          return dsv4_tokenize(get(), text.data(), text.size(), flags, ids, cap, n);
        });
  }
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const {
    const uint32_t flags = skip_special_tokens ? DSV4_DETOKENIZE_SKIP_SPECIAL : 0u;
    return detail::as_string(
        detail::grow_and_fill<char>(ids.size() * 8 + 16, 1, [&](char* text, size_t cap, size_t* n) {
          return dsv4_detokenize(get(), ids.data(), ids.size(), flags, text, cap, n);
        }));
  }
  int32_t n_vocab() const { return query(dsv4_tokenizer_n_vocab); }
  int32_t bos() const { return query(dsv4_tokenizer_bos); }
  int32_t eos() const { return query(dsv4_tokenizer_eos); }
  const dsv4_tokenizer* get() const noexcept { return handle_.get(); }

 private:
  int32_t query(dsv4_status (*fn)(const dsv4_tokenizer*, int32_t*)) const {
    int32_t v = 0;
    check(fn(get(), &v));
    return v;
  }
  detail::Handle<dsv4_tokenizer, dsv4_tokenizer_free> handle_;
};

class Model {
 public:
  explicit Model(const std::string& dir, dsv4_model_params params = dsv4_model_default_params()) {
    dsv4_model* m = nullptr;
    check(dsv4_model_load(dir.c_str(), &params, &m));
    handle_.reset(m);
  }
  int64_t n_vocab() const { return query(dsv4_model_n_vocab); }
  int64_t n_layers() const { return query(dsv4_model_n_layers); }
  int64_t n_embd() const { return query(dsv4_model_n_embd); }
  size_t resident_bytes() const {
    size_t v = 0;
    check(dsv4_model_resident_bytes(get(), &v));
    return v;
  }
  // The tokenizer shipped in the model directory (throws DSV4_ERR_IO when there is none).
  Tokenizer tokenizer() const {
    dsv4_tokenizer* t = nullptr;
    check(dsv4_model_tokenizer(get(), &t));
    return Tokenizer(t);
  }
  dsv4_model* get() const noexcept { return handle_.get(); }

 private:
  int64_t query(dsv4_status (*fn)(const dsv4_model*, int64_t*)) const {
    int64_t v = 0;
    check(fn(get(), &v));
    return v;
  }
  detail::Handle<dsv4_model, dsv4_model_free> handle_;
};

class Session {
 public:
  explicit Session(const Model& model, dsv4_session_params params = dsv4_session_default_params())
      : n_vocab_(size_t(model.n_vocab())) {
    dsv4_session* s = nullptr;
    check(dsv4_session_create(model.get(), &params, &s));
    handle_.reset(s);
  }
  // Appends tokens and returns the logits of the last one (n_vocab floats).
  std::vector<float> append(const std::vector<int32_t>& tokens) {
    std::vector<float> logits(n_vocab_);
    dsv4_append_params p = dsv4_append_default_params();
    p.output = DSV4_OUTPUT_LAST;
    checked(dsv4_session_append_ex(get(), tokens.data(), tokens.size(), &p, logits.data(),
                                   logits.size()));
    return logits;
  }
  // Appends tokens without computing logits (a prompt prefix).
  void prefill(const std::vector<int32_t>& tokens) {
    dsv4_append_params p = dsv4_append_default_params();
    p.output = DSV4_OUTPUT_NONE;
    checked(dsv4_session_append_ex(get(), tokens.data(), tokens.size(), &p, nullptr, 0));
  }
  int64_t position() const {
    int64_t v = 0;
    checked(dsv4_session_position(get(), &v));
    return v;
  }
  void reset() { checked(dsv4_session_reset(get())); }
  dsv4_session* get() const noexcept { return handle_.get(); }

 private:
  // The session's own error slot: right even if another thread failed meanwhile.
  void checked(dsv4_status s) const {
    if (s != DSV4_OK) throw Error(s, dsv4_session_last_error(get()));
  }
  size_t n_vocab_;
  detail::Handle<dsv4_session, dsv4_session_free> handle_;
};

class Sampler {
 public:
  explicit Sampler(dsv4_sampler_params params = dsv4_sampler_default_params(),
                   const Tokenizer* tokenizer = nullptr) {
    dsv4_sampler* s = nullptr;
    check(dsv4_sampler_create(&params, tokenizer ? tokenizer->get() : nullptr, &s));
    handle_.reset(s);
  }
  int32_t sample(const std::vector<float>& logits) {
    int32_t t = -1;
    check(dsv4_sampler_sample(handle_.get(), logits.data(), logits.size(), &t));
    return t;
  }
  // True when generation should stop (a stop token or stop string).
  bool accept(int32_t token) {
    int32_t stop = 0;
    check(dsv4_sampler_accept(handle_.get(), token, &stop));
    return stop != 0;
  }
  void reset() { check(dsv4_sampler_reset(handle_.get())); }

 private:
  detail::Handle<dsv4_sampler, dsv4_sampler_free> handle_;
};

// Whole UTF-8 characters from a stream of ids.
class Decoder {
 public:
  explicit Decoder(const Tokenizer& tokenizer) {
    dsv4_decoder* d = nullptr;
    check(dsv4_decoder_create(tokenizer.get(), &d));
    handle_.reset(d);
  }
  std::string push(int32_t id) {
    return detail::as_string(
        detail::grow_and_fill<char>(32, 1, [&](char* text, size_t cap, size_t* n) {
          return dsv4_decoder_push(handle_.get(), id, text, cap, n);
        }));
  }

 private:
  detail::Handle<dsv4_decoder, dsv4_decoder_free> handle_;
};

inline std::string chat_render(const std::string& messages_json,
                               const dsv4_chat_params& params = dsv4_chat_default_params()) {
  return detail::as_string(detail::grow_and_fill<char>(
      messages_json.size() * 2 + 64, 1, [&](char* text, size_t cap, size_t* n) {
        return dsv4_chat_render(messages_json.c_str(), &params, text, cap, n);
      }));
}
inline std::vector<int32_t> chat_render_tokens(
    const Tokenizer& tokenizer, const std::string& messages_json,
    const dsv4_chat_params& params = dsv4_chat_default_params()) {
  return detail::grow_and_fill<int32_t>(
      messages_json.size() + 64, 0, [&](int32_t* ids, size_t cap, size_t* n) {
        return dsv4_chat_render_tokens(tokenizer.get(), messages_json.c_str(), &params, ids, cap,
                                       n);
      });
}
// The parsed assistant message as a JSON object text.
inline std::string chat_parse(std::string_view completion, bool thinking) {
  return detail::as_string(detail::grow_and_fill<char>(
      completion.size() * 2 + 128, 1, [&](char* text, size_t cap, size_t* n) {
        return dsv4_chat_parse(completion.data(), completion.size(), thinking ? 1 : 0, text, cap,
                               n);
      }));
}

}  // namespace dsv4::api
