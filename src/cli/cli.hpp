// The dsv4 command-line tool: one function per subcommand.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "dsv4/model/model.hpp"
#include "dsv4/model/session.hpp"
#include "dsv4/model/weights.hpp"

namespace dsv4::cli {

// "--key value" pairs and bare flags after the subcommand.
struct Args {
  std::map<std::string, std::string> options;
  std::vector<std::string> positional;  // arguments that are not options (a prompt)
  std::string get(const std::string& key, const std::string& fallback = "") const {
    auto it = options.find(key);
    return it == options.end() ? fallback : it->second;
  }
  bool has(const std::string& key) const { return options.count(key) != 0; }
};

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Prints "dsv4 COMMAND: STATUS" to stderr; returns the exit status 1.
inline int report(const Status& status, const char* command) {
  std::fprintf(stderr, "dsv4 %s: %s\n", command, status.to_string().c_str());
  return 1;
}

// "123", "24G", "24GiB", "512M": binary units (K, M, G, T, optionally followed by "iB").
inline bool parse_bytes(const std::string& text, int64_t* out) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 18) return false;
  int64_t value = std::stoll(text.substr(0, digits));
  std::string unit = text.substr(digits);
  if (unit.size() == 3 && unit.substr(1) == "iB") unit = unit.substr(0, 1);
  int shift = 0;
  if (unit == "K")
    shift = 10;
  else if (unit == "M")
    shift = 20;
  else if (unit == "G")
    shift = 30;
  else if (unit == "T")
    shift = 40;
  else if (!unit.empty())
    return false;
  if (value > (INT64_MAX >> shift)) return false;
  *out = value << shift;
  return true;
}

// Session options from --kv-format f32|bf16|packed, --ram-budget BYTES (the disk tier: at most
// that much of the compressed entries and indexer keys in RAM) and --spill-dir DIR
// and --lossy-cold (spilled compressed entries stored lossily as e2m1; kInvalidArgument for
// anything malformed).
inline Result<SessionOptions> session_options_from_args(const Args& args) {
  SessionOptions options;
  if (args.has("kv-format") && !parse_kv_format(args.get("kv-format"), &options.kv_format))
    return Status(StatusCode::kInvalidArgument, "--kv-format must be f32, bf16 or packed");
  if (args.has("ram-budget") &&
      (!parse_bytes(args.get("ram-budget"), &options.ram_budget) || options.ram_budget <= 0))
    return Status(StatusCode::kInvalidArgument,
                  "--ram-budget must be a positive byte count (e.g. 512M, 2G)");
  options.spill_dir = args.get("spill-dir");
  options.lossy_cold_entries = args.has("lossy-cold");
  return options;
}

// --numerics exact|official and --weights repacked|stored into the model's load options
// (kInvalidArgument otherwise).
inline Status load_options_from_args(const Args& args, ModelLoadOptions* options) {
  const std::string name = args.get("numerics", "exact");
  if (name == "exact") {
    options->numerics = Numerics::kExact;
  } else if (name == "official") {
    options->numerics = Numerics::kOfficial;
  } else {
    return Status(StatusCode::kInvalidArgument, "--numerics must be exact or official");
  }
  const std::string weights = args.get("weights", "repacked");
  if (weights != "repacked" && weights != "stored")
    return Status(StatusCode::kInvalidArgument, "--weights must be repacked or stored");
  options->repack_weights = weights == "repacked";
  return Status::ok();
}

// A whole decimal integer ("12abc" and "" are rejected).
inline bool parse_int(const std::string& text, int64_t* out) {
  try {
    size_t used = 0;
    *out = std::stoll(text, &used);
    return used == text.size();
  } catch (...) {
    return false;
  }
}

// The embedded models (demo, bench presets): seeded random weights (seed 2026) in the official
// checkpoints' formats — FP8 attention and shared expert, FP4 routed experts, BF16 embeddings,
// head, compressors and router.
inline Result<std::shared_ptr<const Model>> random_official_model(const ModelConfig& config,
                                                                  const ModelLoadOptions& options) {
  return Model::from_weights(config, random_weights(config, 2026, RandomWeightFormats::official()),
                             options);
}

int command_info(const Args& args);
int command_plan(const Args& args);
int command_eval(const Args& args);
int command_generate(const Args& args);
int command_demo(const Args& args);
int command_bench(const Args& args);
int command_tokenize(const Args& args);
int command_chat_render(const Args& args);
int command_chat_parse(const Args& args);
int command_run(const Args& args);
int command_chat(const Args& args);
int command_serve(const Args& args);

}  // namespace dsv4::cli
