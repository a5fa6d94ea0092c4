// The CPU lightning-indexer top-k (streaming over key blocks with a running top-k per query).
#pragma once

#include "dsv4/backend/backend.hpp"

namespace dsv4::cpu {
// May throw std::bad_alloc (its per-thread scratch grows on first use).
void indexer_topk(const IndexerTopkArgs& args);
}  // namespace dsv4::cpu
