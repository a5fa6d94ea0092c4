#include "fuzz_targets.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string_view>

#include "dsv4/formats/model_config.hpp"
#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/checkpoint_schema.hpp"
#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/session.hpp"
#include "dsv4/text/chat.hpp"
#include "dsv4/text/tokenizer.hpp"
#include "serve_request.hpp"

namespace dsv4::fuzz {

int safetensors_header(const uint8_t* data, size_t size) {
  auto parsed = parse_safetensors_header({reinterpret_cast<const std::byte*>(data), size});
  if (parsed.is_ok()) {
    // Every accepted tensor must lie inside the input: touch its first and last byte.
    volatile uint8_t sink = 0;
    for (const auto& t : parsed->tensors) {
      if (t.end > t.begin)
        sink = sink ^ data[parsed->data_offset + t.begin] ^ data[parsed->data_offset + t.end - 1];
    }
  }
  return 0;
}

int model_config(const uint8_t* data, size_t size) {
  auto parsed = parse_model_config(std::string_view(reinterpret_cast<const char*>(data), size));
  if (parsed.is_ok())
    (void)checkpoint_schema(parsed.value()).size();  // a valid config must yield a schema
  return 0;
}

namespace {
// A small model with every kind of layer (window, CSA, HCA), built once.
std::shared_ptr<const Model> session_model() {
  static const std::shared_ptr<const Model> model = [] {
    ModelConfig c = demo_model_config(3);
    c.vocab_size = 64, c.hidden_size = 64, c.compress_ratios = {0, 4, 8};
    c.num_attention_heads = 2, c.head_dim = 32, c.qk_rope_head_dim = 8;
    c.q_lora_rank = 32, c.o_groups = 2, c.o_lora_rank = 16;
    c.index_n_heads = 2, c.index_head_dim = 16, c.index_topk = 4, c.sliding_window = 8;
    c.n_routed_experts = 4, c.num_experts_per_tok = 2, c.moe_intermediate_size = 32;
    c.num_hash_layers = 0;
    return Model::from_weights(c, random_weights(c, 1)).value();
  }();
  return model;
}

std::string temp_file(const char* tag) {
  return (std::filesystem::temp_directory_path() /
          ("dsv4-fuzz-" + std::string(tag) + "-" + std::to_string(::getpid())))
      .string();
}
}  // namespace

int session_file(const uint8_t* data, size_t size) {
  const std::string path = temp_file("session");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  }
  SessionOptions options;
  options.kv_format = KvFormat::kPacked;
  auto loaded = Session::load(session_model(), path, options);
  std::remove(path.c_str());
  if (loaded.is_ok()) {
    // An accepted file must give a session that runs.
    const int32_t token = 1;
    float logits[64];
    if (!loaded.value()->append({&token, 1}, logits)) __builtin_trap();
  }
  return 0;
}

std::vector<std::vector<uint8_t>> session_file_seeds() {
  SessionOptions options;
  options.kv_format = KvFormat::kPacked;
  auto session = Session::create(session_model(), options).value();
  // 45 tokens: beyond the model's rebuild span (22), so a window-less restore starts mid-context.
  std::vector<int32_t> tokens(45);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(i * 7 % 64);
  if (!session->append(tokens, nullptr)) __builtin_trap();
  std::vector<std::vector<uint8_t>> seeds;
  for (SwaStrategy strategy : {SwaStrategy::kFull, SwaStrategy::kCheckpoint, SwaStrategy::kNone}) {
    const std::string path = temp_file("seed");
    SaveOptions save;
    save.swa_strategy = strategy;
    save.checkpoint_interval = 16;
    if (!session->save(path, save)) __builtin_trap();
    std::ifstream in(path, std::ios::binary);
    seeds.emplace_back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::remove(path.c_str());
  }
  return seeds;
}

namespace {
// A parser may refuse its input with any status but kInternal: that one means an exception the
// checks did not anticipate (a JSON type error, a standard-library throw) escaped them.
void require_not_internal(const Status& status, const char* target) {
  if (status.code() != StatusCode::kInternal) return;
  std::fprintf(stderr, "%s: unexpected internal error: %s\n", target, status.message().c_str());
  std::abort();
}
}  // namespace

int tokenizer_json(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto tokenizer = text::Tokenizer::parse(text);
  require_not_internal(tokenizer.status(), "tokenizer_json");
  if (!tokenizer) return 0;
  auto ids = tokenizer.value()->encode("Hello, world! 123 ünïcode \n\t <｜User｜>");
  require_not_internal(ids.status(), "tokenizer_json encode");
  if (ids) require_not_internal(tokenizer.value()->decode(ids.value()).status(), "decode");
  return 0;
}

int chat_render(const uint8_t* data, size_t size) {
  const std::string_view messages(reinterpret_cast<const char*>(data), size);
  for (bool thinking : {false, true}) {
    text::ChatOptions options;
    options.thinking = thinking;
    require_not_internal(text::render_chat(messages, options).status(), "chat_render");
  }
  return 0;
}

int chat_parse(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool thinking = data[0] == 'T';
  require_not_internal(
      text::parse_completion(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1),
                             thinking)
          .status(),
      "chat_parse");
  return 0;
}

namespace {
std::string g_tokenizer_path;
std::shared_ptr<const text::Tokenizer> http_tokenizer() {
  static const std::shared_ptr<const text::Tokenizer> tokenizer = [] {
    std::string path = g_tokenizer_path;
    if (path.empty())
      if (const char* env = std::getenv("DSV4_FUZZ_TOKENIZER")) path = env;
#ifdef DSV4_FUZZ_DEFAULT_TOKENIZER
    if (path.empty()) path = DSV4_FUZZ_DEFAULT_TOKENIZER;
#endif
    auto loaded = text::Tokenizer::load(path);
    if (!loaded) {
      std::fprintf(stderr, "http_body: no tokenizer (%s)\n", loaded.status().message().c_str());
      std::abort();
    }
    return loaded.value();
  }();
  return tokenizer;
}
}  // namespace

void set_http_body_tokenizer(const char* path) { g_tokenizer_path = path; }

int http_body(const uint8_t* data, size_t size) {
  const auto tokenizer = http_tokenizer();
  nlohmann::json body;
  try {
    body = nlohmann::json::parse(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const nlohmann::json::exception&) {
    return 0;  // the server answers 400 before any check
  }
  // Whatever the body, the checks end in a request or a dsv4 status, never anything else.
  require_not_internal(
      capture_result([&] { return cli::prepare_chat(body, tokenizer).max_tokens; }).status(),
      "http_body chat");
  require_not_internal(
      capture_result([&] { return cli::prepare_completion(body, tokenizer).max_tokens; }).status(),
      "http_body completion");
  return 0;
}

}  // namespace dsv4::fuzz
