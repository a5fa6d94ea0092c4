#include "text_generation.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/weights.hpp"

namespace dsv4::cli {

ProgressBar::ProgressBar(std::string label) : label_(std::move(label)), enabled_(isatty(2) == 1) {}

void ProgressBar::update(double fraction) {
  if (!enabled_) return;
  const int width = 30, filled = int(std::clamp(fraction, 0.0, 1.0) * width);
  if (filled == drawn_) return;
  drawn_ = filled;
  std::fprintf(stderr, "\r%s [%s%s] %3d%%", label_.c_str(),
               std::string(size_t(filled), '#').c_str(),
               std::string(size_t(width - filled), ' ').c_str(), int(fraction * 100));
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (!enabled_ || drawn_ < 0) return;
  std::fprintf(stderr, "\r%*s\r", int(label_.size()) + 40, "");
  std::fflush(stderr);
}

Result<std::shared_ptr<const text::Tokenizer>> load_tokenizer_arg(const Args& args) {
  std::string path = args.get("tokenizer");
  if (path.empty()) path = DSV4_DEFAULT_TOKENIZER_DIR;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return Status(StatusCode::kIo, "no tokenizer at " + path + " (give --tokenizer PATH)");
  return text::Tokenizer::load(path);
}

Result<TextModel> load_text_model(const Args& args) {
  TextModel out;
  int64_t threads = 0;
  if (args.has("threads") && (!parse_int(args.get("threads"), &threads) || threads < 0))
    return Status(StatusCode::kInvalidArgument, "--threads must be a non-negative integer");
  ModelLoadOptions options;
  options.n_threads = int(threads);
  if (Status s = numerics_from_args(args, &options); !s) return s;
  if (args.has("model")) {
    const std::string dir = args.get("model");
    ProgressBar bar("loading " + dir);
    options.progress = [&bar](int64_t done, int64_t total) {
      bar.update(double(done) / double(total));
    };
    auto model = Model::load(dir, options);
    bar.finish();
    if (!model) return model.status();
    out.model = model.value();
    Args tok_args = args;
    std::error_code ec;
    if (!args.has("tokenizer") &&
        std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json", ec))
      tok_args.options["tokenizer"] = dir;
    auto tok = load_tokenizer_arg(tok_args);
    if (!tok) return tok.status();
    out.tokenizer = tok.value();
    out.description = dir;
  } else if (args.get("preset", "demo") == "demo") {
    auto tok = load_tokenizer_arg(args);
    if (!tok) return tok.status();
    out.tokenizer = tok.value();
    auto model = random_official_model(demo_model_config(), options);
    if (!model) return model.status();
    out.model = model.value();
    out.description = "the embedded demo model (random weights: its text is random)";
  } else {
    return Status(StatusCode::kInvalidArgument, "give --model DIR or --preset demo");
  }
  if (out.tokenizer->n_vocab() > out.model->config().vocab_size)
    return Status(StatusCode::kModelMismatch, "the tokenizer has " +
                                                  std::to_string(out.tokenizer->n_vocab()) +
                                                  " ids but the model's vocabulary is " +
                                                  std::to_string(out.model->config().vocab_size));
  return out;
}

namespace {

bool parse_float(const Args& args, const char* key, float* out) {
  if (!args.has(key)) return true;
  try {
    size_t used = 0;
    const std::string v = args.get(key);
    *out = std::stof(v, &used);
    return used == v.size();
  } catch (...) {
    return false;
  }
}

}  // namespace

Result<sampling::SamplerParams> sampler_params_from_args(const Args& args,
                                                         const text::Tokenizer& tok,
                                                         float default_temperature) {
  sampling::SamplerParams p;
  p.temperature = default_temperature;
  struct FloatOption {
    const char* key;
    float* field;
  };
  for (const FloatOption o :
       {FloatOption{"temperature", &p.temperature}, FloatOption{"top-p", &p.top_p},
        FloatOption{"min-p", &p.min_p}, FloatOption{"repeat-penalty", &p.repetition_penalty},
        FloatOption{"presence-penalty", &p.presence_penalty},
        FloatOption{"frequency-penalty", &p.frequency_penalty}})
    if (!parse_float(args, o.key, o.field))
      return Status(StatusCode::kInvalidArgument, std::string("--") + o.key + " must be a number");
  int64_t top_k = 0, seed = 0;
  if (args.has("top-k") && (!parse_int(args.get("top-k"), &top_k) || top_k < 0))
    return Status(StatusCode::kInvalidArgument, "--top-k must be a non-negative integer");
  if (args.has("seed") && !parse_int(args.get("seed"), &seed))
    return Status(StatusCode::kInvalidArgument, "--seed must be an integer");
  p.top_k = int32_t(top_k);
  p.seed = uint64_t(seed);
  if (tok.eos_id() >= 0) p.stop_tokens.push_back(tok.eos_id());
  if (Status s = sampling::check_params(p); !s) return s;
  return p;
}

Result<TurnResult> generate_turn(Session& session,
                                 const std::shared_ptr<const text::Tokenizer>& tokenizer,
                                 sampling::Sampler& sampler, std::span<const int32_t> prompt,
                                 int64_t max_new, std::FILE* out) {
  return generate_turn(session, tokenizer, sampler, prompt, max_new,
                       [out](const std::string& piece) {
                         if (out) {
                           std::fputs(piece.c_str(), out);
                           std::fflush(out);
                         }
                         return true;
                       });
}

Result<TurnResult> generate_turn(Session& session,
                                 const std::shared_ptr<const text::Tokenizer>& tokenizer,
                                 sampling::Sampler& sampler, std::span<const int32_t> prompt,
                                 int64_t max_new, const PieceCallback& on_piece,
                                 const TokenChooser& choose) {
  TurnResult r;
  const text::Tokenizer& tok = *tokenizer;
  const int64_t vocab = session.model().config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(vocab));
  // Prefill in chunks so a long prompt shows progress; only the last chunk computes logits.
  constexpr size_t kChunk = 256;
  ProgressBar bar("prefill");
  const auto t0 = Clock::now();
  for (size_t at = 0; at < prompt.size(); at += kChunk) {
    const size_t n = std::min(kChunk, prompt.size() - at);
    AppendOptions options;
    options.output = at + n == prompt.size() ? OutputMode::kLast : OutputMode::kNone;
    if (Status s = session.append(prompt.subspan(at, n), options, logits.data()); !s) return s;
    if (prompt.size() > kChunk) bar.update(double(at + n) / double(prompt.size()));
  }
  bar.finish();
  r.prefill_tokens = int64_t(prompt.size());
  r.prefill_seconds = seconds_since(t0);
  sampler.reset();  // each turn: penalties over its own text, the seed's stream from the start
  text::StreamDecoder decoder(tokenizer);
  const auto t1 = Clock::now();
  AppendOptions last;
  last.output = OutputMode::kLast;
  for (int64_t step = 0; step < max_new; ++step) {
    auto next = choose ? choose(logits) : sampler.sample(logits);
    if (!next) return next.status();
    const int32_t token = *next;
    const bool stop = sampler.accept(token);
    if (token == tok.eos_id()) {
      r.ended_by_stop = true;
      break;
    }
    auto piece = decoder.push(token);
    if (!piece) return piece.status();
    r.text += *piece;
    ++r.generated_tokens;
    if (!piece->empty() && !on_piece(*piece))
      return Status(StatusCode::kCancelled, "the turn was stopped by its reader");
    if (Status s = session.append({&token, 1}, last, logits.data()); !s) return s;
    if (stop) {
      r.ended_by_stop = true;
      break;
    }
  }
  const std::string tail = decoder.flush();
  r.text += tail;
  if (!tail.empty()) on_piece(tail);
  r.decode_seconds = seconds_since(t1);
  // Close the turn in the cache as the prompt format would have written it.
  if (tok.eos_id() >= 0) {
    const int32_t eos = tok.eos_id();
    AppendOptions none;
    none.output = OutputMode::kNone;
    if (Status s = session.append({&eos, 1}, none, nullptr); !s) return s;
  }
  return r;
}

void print_turn_stats(const TurnResult& r, std::FILE* to) {
  std::fprintf(to, "[prefill %lld tokens, %.1f tokens/s; decode %lld tokens, %.1f tokens/s]\n",
               static_cast<long long>(r.prefill_tokens),
               double(r.prefill_tokens) / std::max(r.prefill_seconds, 1e-9),
               static_cast<long long>(r.generated_tokens),
               double(r.generated_tokens) / std::max(r.decode_seconds, 1e-9));
}

}  // namespace dsv4::cli
