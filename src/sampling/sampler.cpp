#include "dsv4/sampling/sampler.hpp"

#include <algorithm>
#include <cmath>

#include "dsv4/text/tokenizer.hpp"

namespace dsv4::sampling {

namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Below this log-probability relative to the top token a candidate is dropped before sorting:
// e^-50 ≈ 2e-22, far below what a float probability sum can resolve.
constexpr float kNegligibleLogProb = -50.0f;

}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t state = seed;
  for (uint64_t& s : s_) s = splitmix64(state);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return double(next() >> 11) * 0x1.0p-53; }

Status check_params(const SamplerParams& p) {
  auto bad = [](const std::string& what) {
    return Status(StatusCode::kInvalidArgument, "sampler: " + what);
  };
  if (!std::isfinite(p.temperature) || p.temperature < 0)
    return bad("temperature must be finite and >= 0");
  if (p.top_k < 0) return bad("top_k must be >= 0");
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return bad("top_p must be in (0, 1]");
  if (!(p.min_p >= 0.0f && p.min_p < 1.0f)) return bad("min_p must be in [0, 1)");
  if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0)
    return bad("repetition_penalty must be finite and > 0");
  if (!std::isfinite(p.presence_penalty) || !std::isfinite(p.frequency_penalty))
    return bad("presence and frequency penalties must be finite");
  if (p.penalty_last_n < -1) return bad("penalty_last_n must be >= -1");
  for (const auto& [token, bias] : p.logit_bias) {
    if (token < 0) return bad("logit_bias names a negative token id");
    if (std::isnan(bias) || bias == INFINITY) return bad("a logit bias must be a number or -inf");
  }
  for (int32_t t : p.stop_tokens)
    if (t < 0) return bad("stop token ids must be >= 0");
  for (const std::string& s : p.stop_strings)
    if (s.empty()) return bad("stop strings must not be empty");
  return Status::ok();
}

Sampler::Sampler(SamplerParams params) : params_(std::move(params)), rng_(params_.seed) {}

Result<std::unique_ptr<Sampler>> Sampler::create(SamplerParams params) {
  if (Status s = check_params(params); !s) return s;
  return std::unique_ptr<Sampler>(new Sampler(std::move(params)));
}

void Sampler::set_tokenizer(std::shared_ptr<const text::Tokenizer> tokenizer) {
  tokenizer_ = std::move(tokenizer);
}

void Sampler::reset() {
  history_.clear();
  recent_text_.clear();
  rng_ = Rng(params_.seed);
}

bool Sampler::accept(int32_t token) {
  history_.push_back(token);
  if (std::find(params_.stop_tokens.begin(), params_.stop_tokens.end(), token) !=
      params_.stop_tokens.end())
    return true;
  if (params_.stop_strings.empty() || !tokenizer_) return false;
  recent_text_ += tokenizer_->token_bytes(token);
  size_t longest = 0;
  for (const std::string& s : params_.stop_strings) {
    if (recent_text_.find(s) != std::string::npos) return true;
    longest = std::max(longest, s.size());
  }
  // Keep only what a stop string could still end in.
  if (recent_text_.size() > longest) recent_text_.erase(0, recent_text_.size() - (longest - 1));
  return false;
}

std::span<const float> Sampler::apply_penalties_and_bias(std::span<const float> logits) {
  const bool penalize = (params_.repetition_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                         params_.frequency_penalty != 0.0f) &&
                        !history_.empty() && params_.penalty_last_n != 0;
  // Nothing to change: read the caller's logits instead of copying a vocabulary-sized row.
  if (params_.logit_bias.empty() && !penalize) return logits;
  work_.assign(logits.begin(), logits.end());
  const auto n = int64_t(work_.size());
  for (const auto& [token, bias] : params_.logit_bias)
    if (token < n) work_[size_t(token)] += bias;
  if (!penalize) return work_;
  const size_t window = params_.penalty_last_n < 0
                            ? history_.size()
                            : std::min(history_.size(), size_t(params_.penalty_last_n));
  std::unordered_map<int32_t, int32_t> counts;
  for (size_t i = history_.size() - window; i < history_.size(); ++i) ++counts[history_[i]];
  for (const auto& [token, count] : counts) {
    if (token < 0 || token >= n) continue;
    float& l = work_[size_t(token)];
    l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
    l -= params_.presence_penalty + params_.frequency_penalty * float(count);
  }
  return work_;
}

Status Sampler::build_distribution(std::span<const float> logits) {
  if (logits.empty()) return Status(StatusCode::kInvalidArgument, "sampler: no logits");
  for (size_t i = 0; i < logits.size(); ++i)
    if (std::isnan(logits[i]) || logits[i] == INFINITY)
      return Status(StatusCode::kInvalidArgument,
                    "sampler: logit " + std::to_string(i) + " is not a number");
  const std::span<const float> values = apply_penalties_and_bias(logits);
  const auto top = std::max_element(values.begin(), values.end());  // lowest id among equal maxima
  if (*top == -INFINITY)
    return Status(StatusCode::kInvalidArgument, "sampler: every token is masked");
  candidates_.clear();
  if (params_.temperature == 0.0f) {
    candidates_.emplace_back(int32_t(top - values.begin()), 1.0f);
    return Status::ok();
  }

  const float max_logit = *top, inv_t = 1.0f / params_.temperature;
  for (size_t i = 0; i < values.size(); ++i) {
    const float scaled = (values[i] - max_logit) * inv_t;
    if (scaled >= kNegligibleLogProb) candidates_.emplace_back(int32_t(i), scaled);
  }
  auto more_likely = [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  };
  size_t keep = candidates_.size();
  if (params_.top_k > 0 && size_t(params_.top_k) < keep) {
    keep = size_t(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + std::ptrdiff_t(keep),
                      candidates_.end(), more_likely);
    candidates_.resize(keep);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), more_likely);
  }
  double sum = 0;
  for (auto& c : candidates_) sum += (c.second = std::exp(c.second));
  // Nucleus: the smallest prefix whose probability reaches top_p.
  if (params_.top_p < 1.0f) {
    double cumulative = 0;
    size_t n = 0;
    while (n < candidates_.size()) {
      cumulative += candidates_[n++].second / sum;
      if (cumulative >= params_.top_p) break;
    }
    candidates_.resize(n);
  }
  if (params_.min_p > 0.0f) {
    const float floor = params_.min_p * candidates_.front().second;
    while (candidates_.size() > 1 && candidates_.back().second < floor) candidates_.pop_back();
  }
  sum = 0;
  for (const auto& c : candidates_) sum += c.second;
  for (auto& c : candidates_) c.second = float(c.second / sum);
  return Status::ok();
}

Result<std::vector<std::pair<int32_t, float>>> Sampler::distribution(
    std::span<const float> logits) {
  if (Status s = build_distribution(logits); !s) return s;
  return candidates_;
}

Result<int32_t> Sampler::sample(std::span<const float> logits) {
  if (Status s = build_distribution(logits); !s) return s;
  if (candidates_.size() == 1) return candidates_.front().first;
  const double u = rng_.uniform();
  double cumulative = 0;
  for (const auto& [token, p] : candidates_) {
    cumulative += p;
    if (u < cumulative) return token;
  }
  return candidates_.back().first;  // u beyond the rounded total
}

}  // namespace dsv4::sampling
