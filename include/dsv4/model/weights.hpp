// Model weights in their stored formats. Linear layers are WeightViews: FP8 e4m3 + 128x128 ue8m0,
// FP4 e2m1 + 1x32 ue8m0, BF16 and F32 matrices point straight into the memory-mapped checkpoint
// (no widening, no copy), so a loaded model's resident size is about its file size. Only small
// vectors (norms, mHC parameters, biases, ape, sinks) are decoded to fp32, and F16 matrices (no
// kernel) are widened to F32 into buffers the weights own.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "dsv4/core/status.hpp"
#include "dsv4/core/weight_view.hpp"
#include "dsv4/formats/model_config.hpp"
#include "dsv4/formats/safetensors.hpp"

namespace dsv4 {

// A linear layer's [out, in] weight in its stored format.
using Linear = WeightView;

struct MhcWeights {
  std::vector<float> fn;     // [(2+n)·n, n·D] (head: [n, n·D])
  std::vector<float> base;   // [(2+n)·n] (head: [n])
  std::vector<float> scale;  // [3] (head: [1])
};

struct CompressorWeights {
  Linear wkv, wgate;        // [width, D]; width = out_dim (HCA) or 2·out_dim (CSA, overlapping)
  std::vector<float> ape;   // [m, width]
  std::vector<float> norm;  // [out_dim]
  int64_t out_dim = 0;
  bool overlap = false;
};

struct IndexerWeights {
  Linear wq_b;          // [H_I·c, q_lora_rank]
  Linear weights_proj;  // [H_I, D]
  CompressorWeights compressor;
};

struct ExpertWeights {
  Linear w1, w2, w3;  // w1, w3: [I, D]; w2: [D, I]
};

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;
  MhcWeights hc_attn, hc_ffn;
  Linear wq_a, wq_b, wkv, wo_a, wo_b;
  std::vector<float> q_norm, kv_norm, attn_sink;
  std::optional<CompressorWeights> compressor;  // m > 0
  std::optional<IndexerWeights> indexer;        // CSA
  Linear gate;                                  // [E, D]
  std::vector<float> gate_bias;                 // [E] (non-hash layers)
  std::vector<int32_t> tid2eid;                 // [vocab, k] (hash layers)
  std::vector<ExpertWeights> experts;
  std::optional<ExpertWeights> shared_expert;
};

struct ModelWeights {
  WeightView embed;  // [V, D]
  std::vector<LayerWeights> layers;
  std::vector<float> norm;
  MhcWeights hc_head;
  Linear head;  // [V, D]

  // What the views point into: the mapped checkpoint, and buffers of generated or converted
  // matrices (shared, so copies and moves of ModelWeights keep every view valid).
  std::shared_ptr<const Checkpoint> checkpoint;
  std::vector<std::shared_ptr<uint8_t[]>> buffers;

  // Bytes of every weight as held: matrices in their stored formats plus the fp32 vectors.
  size_t resident_bytes() const noexcept;
};

// Calls visit(Linear&) for every matrix the forward pass multiplies by through Backend::gemm (every
// linear layer and the head; not the embedding table, which is looked up by rows). W is
// ModelWeights or const ModelWeights.
template <class W, class F>
void for_each_gemm_weight(W& w, F&& visit) {
  for (auto& L : w.layers) {
    for (auto* l : {&L.wq_a, &L.wq_b, &L.wkv, &L.wo_a, &L.wo_b, &L.gate}) visit(*l);
    for (auto* c :
         {L.compressor ? &*L.compressor : nullptr, L.indexer ? &L.indexer->compressor : nullptr})
      if (c) {
        visit(c->wkv);
        visit(c->wgate);
      }
    if (L.indexer) {
      visit(L.indexer->wq_b);
      visit(L.indexer->weights_proj);
    }
    for (auto& e : L.experts)
      for (auto* l : {&e.w1, &e.w2, &e.w3}) visit(*l);
    if (L.shared_expert)
      for (auto* l : {&L.shared_expert->w1, &L.shared_expert->w2, &L.shared_expert->w3}) visit(*l);
  }
  visit(w.head);
}

// Copies every GEMM weight (for_each_gemm_weight) into layout_for(weight), in memory the weights
// own, in huge pages from 2 MiB on (Backend::gemm_weight_layout says which layout a device reads
// fastest; a matrix whose layout stays is copied too, for the huge pages). The pages each source
// leaves are given back as it goes: a mapped checkpoint's drop out of the resident set, a replaced
// buffer is freed when no other copy of the weights holds it, so the resident size stays about the
// checkpoint's. `progress` (optional) is told (matrices done, matrices to do), one call at a time,
// and (0, 0) when there is nothing to do. Throws std::bad_alloc.
void relayout_gemm_weights(ModelWeights& w,
                           const std::function<WeightLayout(const WeightView&)>& layout_for,
                           const std::function<void(int64_t, int64_t)>& progress = {});

// The formats random_weights stores its matrices in. The defaults (F32) keep tests exact; the
// demo and benchmarks use the official checkpoints' layout: FP8 attention and shared experts,
// FP4 routed experts, BF16 embeddings, head, compressors, router and indexer weights.
struct RandomWeightFormats {
  WeightFormat linear = WeightFormat::kF32;  // FP8 in official checkpoints
  WeightFormat expert = WeightFormat::kF32;  // routed experts: FP4 in official checkpoints
  WeightFormat dense = WeightFormat::kF32;   // BF16 in official checkpoints
  static RandomWeightFormats official() {
    return {WeightFormat::kFp8Block, WeightFormat::kFp4Block, WeightFormat::kBF16};
  }
};

// Bytes a load of `checkpoint` for `config` will keep resident (every schema tensor as stored,
// plus the fp32 copies of vectors and widened F16 matrices). Checked against the memory limit
// before anything is read.
size_t estimate_resident_bytes(const Checkpoint& checkpoint, const ModelConfig& config);

// Views every tensor of the schema in its stored format; the checkpoint must already pass
// check_checkpoint. Non-finite codes (e4m3 0x7f/0xff, ue8m0 0xff, NaN/Inf in BF16/F32) are
// rejected (kCorruptFile) with the tensor's name. The weights keep the checkpoint alive.
// `progress` (optional) is told (groups done, groups total) as each layer's tensors are read;
// it is called from the loader's threads, one call at a time.
using LoadProgress = std::function<void(int64_t done, int64_t total)>;
Result<ModelWeights> load_weights(std::shared_ptr<const Checkpoint> checkpoint,
                                  const ModelConfig& config, const LoadProgress& progress = {});

// Seeded random weights of the right shapes and sensible scales (for demos and tests that need a
// model of a shape no checkpoint has). Same seed, same weights. Throws std::bad_alloc when memory
// runs out.
ModelWeights random_weights(const ModelConfig& config, uint64_t seed,
                            const RandomWeightFormats& formats = {});

// Writes `weights` as a checkpoint directory in the official layout (config.json and one
// model.safetensors: matrices in their formats with .scale tensors, vectors in F32, tid2eid I32),
// so that Model::load reads back exactly these weights. For tests and generated benchmarks.
Status write_checkpoint(const std::string& dir, const ModelConfig& config,
                        const ModelWeights& weights);

}  // namespace dsv4
