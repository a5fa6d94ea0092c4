#include "dsv4/formats/model_config.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace dsv4 {
namespace {

using nlohmann::json;

constexpr int kMaxJsonDepth = 16;
constexpr size_t kMaxConfigBytes = 4u << 20;
constexpr int64_t kMaxDim = int64_t(1) << 31;

[[noreturn]] void invalid(const std::string& source, const std::string& what) {
  fail(StatusCode::kInvalidConfig, source + ": " + what);
}

class ConfigReader {
 public:
  ConfigReader(const json& root, std::string source) : root_(root), source_(std::move(source)) {}

  int64_t required_int(const char* key) const {
    if (!root_.contains(key)) invalid(source_, std::string("missing required key \"") + key + "\"");
    return as_int(key, root_[key]);
  }
  int64_t optional_int(const char* key, int64_t fallback) const {
    return present(key) ? as_int(key, root_[key]) : fallback;
  }
  double optional_double(const char* key, double fallback) const {
    return present(key) ? as_double(key, root_[key]) : fallback;
  }
  std::string optional_string(const char* key, const std::string& fallback) const {
    if (!present(key)) return fallback;
    if (!root_[key].is_string()) invalid(source_, std::string("\"") + key + "\" must be a string");
    return root_[key].get<std::string>();
  }
  bool present(const char* key) const { return root_.contains(key) && !root_[key].is_null(); }
  const json& at(const char* key) const { return root_[key]; }

  int64_t as_int(const std::string& key, const json& v) const {
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return int64_t(d);
    }
    invalid(source_, "\"" + key + "\" must be an integer");
  }
  double as_double(const std::string& key, const json& v) const {
    if (!v.is_number()) invalid(source_, "\"" + key + "\" must be a number");
    const double d = v.get<double>();
    if (!std::isfinite(d)) invalid(source_, "\"" + key + "\" must be finite");
    return d;
  }

 private:
  const json& root_;
  std::string source_;
};

ScoringFunc parse_scoring_func(const std::string& name, const std::string& source) {
  if (name == "sqrtsoftplus") return ScoringFunc::kSqrtSoftplus;
  if (name == "sigmoid") return ScoringFunc::kSigmoid;
  if (name == "softmax") return ScoringFunc::kSoftmax;
  invalid(source,
          "unknown scoring_func \"" + name + "\" (expected sqrtsoftplus, sigmoid or softmax)");
}

void parse_rope_scaling(const ConfigReader& reader, ModelConfig& c, const std::string& source) {
  if (!reader.present("rope_scaling")) return;
  const json& rs = reader.at("rope_scaling");
  if (!rs.is_object()) invalid(source, "\"rope_scaling\" must be an object");
  ConfigReader sub(rs, source + " rope_scaling");
  c.has_rope_scaling = true;
  c.rope_scaling.type = sub.optional_string("type", sub.optional_string("rope_type", "yarn"));
  c.rope_scaling.factor = sub.optional_double("factor", 1.0);
  c.rope_scaling.original_max_position_embeddings =
      sub.optional_int("original_max_position_embeddings", 0);
  c.rope_scaling.beta_fast = sub.optional_double("beta_fast", 32.0);
  c.rope_scaling.beta_slow = sub.optional_double("beta_slow", 1.0);
}

void parse_quantization(const ConfigReader& reader, ModelConfig& c, const std::string& source) {
  if (!reader.present("quantization_config")) return;
  const json& q = reader.at("quantization_config");
  if (!q.is_object()) invalid(source, "\"quantization_config\" must be an object");
  ConfigReader sub(q, source + " quantization_config");
  c.quantization.present = true;
  c.quantization.quant_method = sub.optional_string("quant_method", "fp8");
  c.quantization.fmt = sub.optional_string("fmt", "e4m3");
  c.quantization.scale_fmt = sub.optional_string("scale_fmt", "ue8m0");
  if (sub.present("weight_block_size")) {
    const json& b = q["weight_block_size"];
    if (!b.is_array() || b.size() != 2) invalid(source, "\"weight_block_size\" must be [out, in]");
    c.quantization.weight_block_out = sub.as_int("weight_block_size", b[0]);
    c.quantization.weight_block_in = sub.as_int("weight_block_size", b[1]);
  }
}

ModelConfig parse_or_throw(std::string_view text, const std::string& source) {
  json root;
  try {
    root = json::parse(text.begin(), text.end(), [&](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth)
        fail(StatusCode::kCorruptFile, source + ": JSON nested too deeply");
      return true;
    });
  } catch (const json::exception& e) {
    fail(StatusCode::kCorruptFile, source + ": invalid JSON: " + e.what());
  }
  if (!root.is_object())
    fail(StatusCode::kCorruptFile, source + ": top level is not a JSON object");
  ConfigReader r(root, source);
  ModelConfig c;
  c.vocab_size = r.required_int("vocab_size");
  c.hidden_size = r.required_int("hidden_size");
  c.num_hidden_layers = r.required_int("num_hidden_layers");
  c.num_attention_heads = r.required_int("num_attention_heads");
  c.num_key_value_heads = r.optional_int("num_key_value_heads", 1);
  c.head_dim = r.required_int("head_dim");
  c.qk_rope_head_dim = r.required_int("qk_rope_head_dim");
  c.q_lora_rank = r.required_int("q_lora_rank");
  c.o_groups = r.required_int("o_groups");
  c.o_lora_rank = r.required_int("o_lora_rank");
  c.sliding_window = r.required_int("sliding_window");
  if (!r.present("compress_ratios") || !r.at("compress_ratios").is_array())
    invalid(source, "missing required array \"compress_ratios\"");
  for (const json& m : r.at("compress_ratios"))
    c.compress_ratios.push_back(r.as_int("compress_ratios", m));
  c.index_n_heads = r.optional_int("index_n_heads", 0);
  c.index_head_dim = r.optional_int("index_head_dim", 0);
  c.index_topk = r.optional_int("index_topk", 0);
  c.n_routed_experts = r.required_int("n_routed_experts");
  c.num_experts_per_tok = r.required_int("num_experts_per_tok");
  c.n_shared_experts = r.optional_int("n_shared_experts", 1);
  c.moe_intermediate_size = r.required_int("moe_intermediate_size");
  c.num_hash_layers = r.optional_int("num_hash_layers", 0);
  c.scoring_func = parse_scoring_func(r.optional_string("scoring_func", "sqrtsoftplus"), source);
  c.routed_scaling_factor = r.optional_double("routed_scaling_factor", 1.0);
  c.swiglu_limit = r.optional_double("swiglu_limit", 0.0);
  c.hc_mult = r.optional_int("hc_mult", 1);
  c.hc_sinkhorn_iters = r.optional_int("hc_sinkhorn_iters", 20);
  c.hc_eps = r.optional_double("hc_eps", 1e-6);
  c.rope_theta = r.optional_double("rope_theta", 10000.0);
  c.compress_rope_theta = r.optional_double("compress_rope_theta", 160000.0);
  parse_rope_scaling(r, c, source);
  c.rms_norm_eps = r.optional_double("rms_norm_eps", 1e-6);
  c.num_nextn_predict_layers = r.optional_int("num_nextn_predict_layers", 0);
  c.max_position_embeddings = r.optional_int("max_position_embeddings", 0);
  c.expert_dtype = r.optional_string("expert_dtype", "");
  parse_quantization(r, c, source);
  const Status valid = validate_model_config(c);
  if (!valid) fail(valid.code(), source + ": " + valid.message());
  return c;
}

[[noreturn]] void invalid_field(const std::string& what) { fail(StatusCode::kInvalidConfig, what); }

void check_positive(int64_t value, const char* key) {
  if (value <= 0 || value > kMaxDim)
    invalid_field(std::string("\"") + key + "\" must be in [1, 2^31], got " +
                  std::to_string(value));
}

void check_at_most(int64_t value, int64_t limit, const char* key) {
  if (value > limit)
    invalid_field(std::string("\"") + key + "\" = " + std::to_string(value) +
                  " exceeds the supported maximum " + std::to_string(limit));
}

void validate_or_throw(const ModelConfig& c) {
  check_positive(c.vocab_size, "vocab_size");
  check_positive(c.hidden_size, "hidden_size");
  check_positive(c.num_hidden_layers, "num_hidden_layers");
  check_positive(c.num_attention_heads, "num_attention_heads");
  check_positive(c.head_dim, "head_dim");
  check_positive(c.qk_rope_head_dim, "qk_rope_head_dim");
  check_positive(c.q_lora_rank, "q_lora_rank");
  check_positive(c.o_groups, "o_groups");
  check_positive(c.o_lora_rank, "o_lora_rank");
  check_positive(c.sliding_window, "sliding_window");
  check_positive(c.n_routed_experts, "n_routed_experts");
  check_positive(c.num_experts_per_tok, "num_experts_per_tok");
  check_positive(c.moe_intermediate_size, "moe_intermediate_size");
  check_positive(c.hc_mult, "hc_mult");
  check_positive(c.hc_sinkhorn_iters, "hc_sinkhorn_iters");
  if (c.hc_mult > 64) invalid_field("\"hc_mult\" above 64 is not supported");
  // Generous ceilings (V4-Pro is far below each) that keep a hostile config from sizing
  // allocations before any tensor is read.
  check_at_most(c.num_hidden_layers, 4096, "num_hidden_layers");
  check_at_most(c.n_routed_experts, 1 << 16, "n_routed_experts");
  check_at_most(c.num_experts_per_tok, 1024, "num_experts_per_tok");
  check_at_most(c.num_attention_heads, 1 << 14, "num_attention_heads");
  check_at_most(c.vocab_size, 1 << 24, "vocab_size");
  check_at_most(c.hidden_size, 1 << 20, "hidden_size");
  check_at_most(c.head_dim, 1 << 16, "head_dim");
  check_at_most(c.hc_sinkhorn_iters, 10000, "hc_sinkhorn_iters");
  for (int64_t m : c.compress_ratios) check_at_most(m, 1 << 16, "compress_ratios entry");
  if (c.num_key_value_heads != 1)
    invalid_field("\"num_key_value_heads\" must be 1 (V4 attention shares one KV head), got " +
                  std::to_string(c.num_key_value_heads));
  if (c.qk_rope_head_dim % 2 != 0 || c.qk_rope_head_dim > c.head_dim)
    invalid_field("\"qk_rope_head_dim\" must be even and at most head_dim");
  if (c.num_attention_heads % c.o_groups != 0)
    invalid_field("num_attention_heads (" + std::to_string(c.num_attention_heads) +
                  ") must be divisible by o_groups (" + std::to_string(c.o_groups) + ")");
  if (int64_t(c.compress_ratios.size()) < c.num_hidden_layers)
    invalid_field("\"compress_ratios\" has " + std::to_string(c.compress_ratios.size()) +
                  " entries, fewer than num_hidden_layers (" + std::to_string(c.num_hidden_layers) +
                  ")");
  for (size_t i = 0; i < c.compress_ratios.size(); ++i) {
    if (c.compress_ratios[i] < 0 || c.compress_ratios[i] > kMaxDim)
      invalid_field("compress_ratios[" + std::to_string(i) + "] must be >= 0");
  }
  if (c.num_experts_per_tok > c.n_routed_experts)
    invalid_field("num_experts_per_tok exceeds n_routed_experts");
  if (c.num_hash_layers < 0 || c.num_hash_layers > c.num_hidden_layers)
    invalid_field("\"num_hash_layers\" must be in [0, num_hidden_layers]");
  if (c.n_shared_experts < 0 || c.n_shared_experts > 64)
    invalid_field("\"n_shared_experts\" must be in [0, 64]");
  if (c.has_csa_layer()) {
    check_positive(c.index_n_heads, "index_n_heads");
    check_positive(c.index_head_dim, "index_head_dim");
    check_positive(c.index_topk, "index_topk");
    if (c.index_head_dim < c.qk_rope_head_dim)
      invalid_field(
          "\"index_head_dim\" must be at least qk_rope_head_dim (indexer keys carry RoPE)");
  }
  auto positive_finite = [](double v) { return std::isfinite(v) && v > 0.0; };
  if (!positive_finite(c.rms_norm_eps)) invalid_field("\"rms_norm_eps\" must be positive");
  if (!(std::isfinite(c.hc_eps) && c.hc_eps >= 0.0)) invalid_field("\"hc_eps\" must be >= 0");
  if (!positive_finite(c.rope_theta)) invalid_field("\"rope_theta\" must be positive");
  if (!positive_finite(c.compress_rope_theta))
    invalid_field("\"compress_rope_theta\" must be positive");
  if (!positive_finite(c.routed_scaling_factor))
    invalid_field("\"routed_scaling_factor\" must be positive");
  if (!(std::isfinite(c.swiglu_limit) && c.swiglu_limit >= 0.0))
    invalid_field("\"swiglu_limit\" must be >= 0");
  if (c.has_rope_scaling) {
    const RopeScaling& rs = c.rope_scaling;
    if (rs.type != "yarn")
      invalid_field("rope_scaling type \"" + rs.type + "\" is not supported (only yarn)");
    if (!(std::isfinite(rs.factor) && rs.factor >= 1.0))
      invalid_field("rope_scaling.factor must be >= 1");
    if (rs.original_max_position_embeddings <= 0)
      invalid_field("rope_scaling.original_max_position_embeddings must be positive");
    if (!positive_finite(rs.beta_fast) || !positive_finite(rs.beta_slow))
      invalid_field("rope_scaling beta_fast and beta_slow must be positive");
  }
  if (!c.expert_dtype.empty() && c.expert_dtype != "fp4" && c.expert_dtype != "fp8" &&
      c.expert_dtype != "bf16")
    invalid_field("unknown expert_dtype \"" + c.expert_dtype + "\"");
  if (c.quantization.present) {
    if (c.quantization.fmt != "e4m3")
      invalid_field("quantization fmt \"" + c.quantization.fmt + "\" is not supported");
    if (c.quantization.scale_fmt != "ue8m0")
      invalid_field("quantization scale_fmt \"" + c.quantization.scale_fmt + "\" is not supported");
    if (c.quantization.weight_block_out <= 0 || c.quantization.weight_block_in <= 0)
      invalid_field("weight_block_size entries must be positive");
  }
  // Products that size tensors must stay far from overflow.
  const int64_t hd = c.num_attention_heads * c.head_dim;
  if (hd > kMaxDim || c.vocab_size * c.hidden_size > (int64_t(1) << 40) ||
      c.hc_mult * c.hidden_size > kMaxDim)
    invalid_field("tensor sizes implied by the config are too large");
}

}  // namespace

std::string_view scoring_func_name(ScoringFunc f) noexcept {
  switch (f) {
    case ScoringFunc::kSqrtSoftplus:
      return "sqrtsoftplus";
    case ScoringFunc::kSigmoid:
      return "sigmoid";
    case ScoringFunc::kSoftmax:
      return "softmax";
  }
  return "?";
}

std::string_view attention_kind_name(AttentionKind k) noexcept {
  switch (k) {
    case AttentionKind::kSlidingWindow:
      return "SWA";
    case AttentionKind::kCompressedSparse:
      return "CSA";
    case AttentionKind::kHeavilyCompressed:
      return "HCA";
  }
  return "?";
}

AttentionKind ModelConfig::attention_kind(int64_t layer) const {
  const int64_t m = compress_ratio(layer);
  if (m == 0) return AttentionKind::kSlidingWindow;
  return m == kCsaCompressRatio ? AttentionKind::kCompressedSparse
                                : AttentionKind::kHeavilyCompressed;
}

bool ModelConfig::has_csa_layer() const {
  for (int64_t i = 0; i < num_hidden_layers && i < int64_t(compress_ratios.size()); ++i)
    if (compress_ratios[size_t(i)] == kCsaCompressRatio) return true;
  return false;
}

Status validate_model_config(const ModelConfig& config) {
  return capture_status([&] { validate_or_throw(config); });
}

Result<ModelConfig> parse_model_config(std::string_view json_text, std::string_view source) {
  return capture_result([&] { return parse_or_throw(json_text, std::string(source)); });
}

Result<ModelConfig> load_model_config(const std::string& path) {
  return capture_result([&] {
    namespace fs = std::filesystem;
    std::error_code ec;
    const std::string file =
        fs::is_directory(path, ec) ? (fs::path(path) / "config.json").string() : path;
    const auto size = fs::file_size(file, ec);
    if (ec) fail(StatusCode::kIo, file + ": " + ec.message());
    if (size > kMaxConfigBytes) fail(StatusCode::kCorruptFile, file + ": larger than 4 MiB");
    std::ifstream in(file, std::ios::binary);
    if (!in) fail(StatusCode::kIo, file + ": cannot open");
    std::ostringstream text;
    text << in.rdbuf();
    return parse_or_throw(text.str(), file);
  });
}

std::string model_config_to_json(const ModelConfig& c) {
  json j;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["qk_rope_head_dim"] = c.qk_rope_head_dim;
  j["q_lora_rank"] = c.q_lora_rank;
  j["o_groups"] = c.o_groups;
  j["o_lora_rank"] = c.o_lora_rank;
  j["sliding_window"] = c.sliding_window;
  j["compress_ratios"] = c.compress_ratios;
  j["index_n_heads"] = c.index_n_heads;
  j["index_head_dim"] = c.index_head_dim;
  j["index_topk"] = c.index_topk;
  j["n_routed_experts"] = c.n_routed_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["n_shared_experts"] = c.n_shared_experts;
  j["moe_intermediate_size"] = c.moe_intermediate_size;
  j["num_hash_layers"] = c.num_hash_layers;
  j["scoring_func"] = std::string(scoring_func_name(c.scoring_func));
  j["routed_scaling_factor"] = c.routed_scaling_factor;
  j["swiglu_limit"] = c.swiglu_limit;
  j["hc_mult"] = c.hc_mult;
  j["hc_sinkhorn_iters"] = c.hc_sinkhorn_iters;
  j["hc_eps"] = c.hc_eps;
  j["rope_theta"] = c.rope_theta;
  j["compress_rope_theta"] = c.compress_rope_theta;
  if (c.has_rope_scaling)
    j["rope_scaling"] = {
        {"type", c.rope_scaling.type},
        {"factor", c.rope_scaling.factor},
        {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings},
        {"beta_fast", c.rope_scaling.beta_fast},
        {"beta_slow", c.rope_scaling.beta_slow}};
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  j["max_position_embeddings"] = c.max_position_embeddings;
  if (!c.expert_dtype.empty()) j["expert_dtype"] = c.expert_dtype;
  if (c.quantization.present)
    j["quantization_config"] = {
        {"quant_method", c.quantization.quant_method},
        {"fmt", c.quantization.fmt},
        {"scale_fmt", c.quantization.scale_fmt},
        {"weight_block_size", {c.quantization.weight_block_out, c.quantization.weight_block_in}}};
  return j.dump(2);
}

}  // namespace dsv4
