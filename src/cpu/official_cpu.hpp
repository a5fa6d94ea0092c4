// The CPU backend's operators in the official numerics (Numerics::kOfficial): the reference
// operators of dsv4/ops/official_numerics.hpp run over rows, in parallel where rows are
// independent. They may throw std::bad_alloc; the backend turns that into a status.
#pragma once

#include "dsv4/backend/backend.hpp"

namespace dsv4::cpu::official {
void gemm(const GemmArgs& args);
void rms_norm(const RmsNormArgs& args);
void rope(const RopeArgs& args);
void attention(const AttentionArgs& args);
void indexer_topk(const IndexerTopkArgs& args);
void compress_pool(const CompressPoolArgs& args);
void mhc_pre(const MhcPreArgs& args);
void mhc_post(const MhcPostArgs& args);
void mhc_head(const MhcHeadArgs& args);
void swiglu(const SwigluArgs& args);
}  // namespace dsv4::cpu::official
