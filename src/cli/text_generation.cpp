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
  if (Status s = load_options_from_args(args, &options); !s) return s;
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

TurnStepper::TurnStepper(Session& session, std::shared_ptr<const text::Tokenizer> tokenizer,
                         sampling::Sampler& sampler, std::vector<int32_t> prompt, int64_t max_new,
                         PieceCallback on_piece, TokenChooser choose)
    : session_(session),
      tokenizer_(std::move(tokenizer)),
      sampler_(sampler),
      prompt_(std::move(prompt)),
      max_new_(max_new),
      on_piece_(std::move(on_piece)),
      choose_(std::move(choose)),
      decoder_(tokenizer_),
      logits_(size_t(session.model().config().vocab_size)) {
  result_.prefill_tokens = int64_t(prompt_.size());
}

Status TurnStepper::prefill(int64_t chunk, const AppendOptions& options) {
  if (phase_ != Phase::kPrefill) return Status(StatusCode::kInternal, "the prompt is prefilled");
  if (prompt_.empty()) return Status(StatusCode::kInvalidArgument, "the prompt is empty");
  if (prefilled_ == 0) prefill_start_ = Clock::now();
  const int64_t n = std::min(chunk, prompt_size() - prefilled_);
  AppendOptions step = options;
  // Only the last chunk computes logits: the first token's.
  step.output = prefilled_ + n == prompt_size() ? OutputMode::kLast : OutputMode::kNone;
  const std::span<const int32_t> tokens(prompt_.data() + prefilled_, size_t(n));
  if (Status s = session_.append(tokens, step, logits_.data()); !s) return s;
  prefilled_ += n;
  if (prefilled_ < prompt_size()) return Status::ok();
  result_.prefill_seconds = seconds_since(prefill_start_);
  sampler_.reset();  // each turn: penalties over its own text, the seed's stream from the start
  decode_start_ = Clock::now();
  phase_ = Phase::kDecode;
  return pick();
}

Status TurnStepper::pick() {
  if (result_.generated_tokens >= max_new_) return finish();
  auto next = choose_ ? choose_(logits_) : sampler_.sample(logits_);
  if (!next) return next.status();
  const int32_t token = *next;
  const bool stop = sampler_.accept(token);
  if (token == tokenizer_->eos_id()) {
    result_.ended_by_stop = true;
    return finish();
  }
  auto piece = decoder_.push(token);
  if (!piece) return piece.status();
  result_.text += *piece;
  ++result_.generated_tokens;
  if (!piece->empty() && !on_piece_(*piece))
    return Status(StatusCode::kCancelled, "the turn was stopped by its reader");
  next_ = token;
  stop_after_next_ = stop;
  return Status::ok();
}

Status TurnStepper::advance() {
  if (phase_ == Phase::kClosing) {
    phase_ = Phase::kDone;
    return Status::ok();
  }
  if (phase_ != Phase::kDecode) return Status(StatusCode::kInternal, "no token to advance past");
  if (stop_after_next_) {
    result_.ended_by_stop = true;
    return finish();
  }
  return pick();
}

Status TurnStepper::finish() {
  const std::string tail = decoder_.flush();
  result_.text += tail;
  if (!tail.empty()) on_piece_(tail);
  result_.decode_seconds = seconds_since(decode_start_);
  // The turn is closed in the cache as the prompt format would have written it: with the EOS.
  next_ = tokenizer_->eos_id();
  phase_ = next_ >= 0 ? Phase::kClosing : Phase::kDone;
  return Status::ok();
}

Result<TurnResult> generate_turn(Session& session,
                                 const std::shared_ptr<const text::Tokenizer>& tokenizer,
                                 sampling::Sampler& sampler, std::span<const int32_t> prompt,
                                 int64_t max_new, const PieceCallback& on_piece,
                                 const TokenChooser& choose) {
  TurnStepper turn(session, tokenizer, sampler, {prompt.begin(), prompt.end()}, max_new, on_piece,
                   choose);
  // Prefill in chunks so a long prompt shows progress.
  constexpr int64_t kChunk = 256;
  ProgressBar bar("prefill");
  while (turn.phase() == TurnStepper::Phase::kPrefill) {
    if (Status s = turn.prefill(kChunk); !s) return s;
    if (turn.prompt_size() > kChunk)
      bar.update(double(turn.prefilled()) / double(turn.prompt_size()));
  }
  bar.finish();
  while (turn.stepping()) {
    const int32_t token = turn.next_token();
    AppendOptions step;  // the closing EOS's logits are not read
    step.output =
        turn.phase() == TurnStepper::Phase::kClosing ? OutputMode::kNone : OutputMode::kLast;
    if (Status s = session.append({&token, 1}, step, turn.logits()); !s) return s;
    if (Status s = turn.advance(); !s) return s;
  }
  return turn.result();
}

void print_turn_stats(const TurnResult& r, std::FILE* to) {
  std::fprintf(to, "[prefill %lld tokens, %.1f tokens/s; decode %lld tokens, %.1f tokens/s]\n",
               static_cast<long long>(r.prefill_tokens),
               double(r.prefill_tokens) / std::max(r.prefill_seconds, 1e-9),
               static_cast<long long>(r.generated_tokens),
               double(r.generated_tokens) / std::max(r.decode_seconds, 1e-9));
}

}  // namespace dsv4::cli
