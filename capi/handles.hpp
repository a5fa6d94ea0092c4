// What the opaque C handles are.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "dsv4/model/model.hpp"
#include "dsv4/model/prefix_store.hpp"
#include "dsv4/model/session.hpp"
#include "dsv4/sampling/sampler.hpp"
#include "dsv4/text/tokenizer.hpp"

struct dsv4_prefix_store {
  dsv4::PrefixStore store;
};

struct dsv4_model {
  std::shared_ptr<const dsv4::Model> model;
  std::shared_ptr<const dsv4::text::Tokenizer> tokenizer;  // null when the directory has none
};

struct dsv4_session {
  std::unique_ptr<dsv4::Session> session;
  // The last failure of a call on this session, readable from any thread.
  mutable std::mutex error_mutex;
  mutable std::string last_error;
};

struct dsv4_tokenizer {
  std::shared_ptr<const dsv4::text::Tokenizer> tokenizer;
};

struct dsv4_decoder {
  dsv4::text::StreamDecoder decoder;
};

struct dsv4_sampler {
  std::unique_ptr<dsv4::sampling::Sampler> sampler;
};
