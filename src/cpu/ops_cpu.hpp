// The CPU backend's row-wise operators (see ops_cpu.cpp). They may throw std::bad_alloc; the
// backend turns that into a status.
#pragma once

#include "dsv4/backend/backend.hpp"

namespace dsv4::cpu {
void embed(const EmbedArgs& args);
void rms_norm(const RmsNormArgs& args);
void rope(const RopeArgs& args);
void compress_pool(const CompressPoolArgs& args);
void mhc_pre(const MhcPreArgs& args);
void mhc_post(const MhcPostArgs& args);
void mhc_head(const MhcHeadArgs& args);
void swiglu(const SwigluArgs& args);
}  // namespace dsv4::cpu
