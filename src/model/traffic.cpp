#include "dsv4/model/traffic.hpp"

#include <algorithm>
#include <vector>

namespace dsv4 {
namespace {

// The matrices one token multiplies by, with their stored bytes and (out × in) sizes.
template <class F>
void for_each_linear_of_a_token(const ModelConfig& c, const ModelWeights& w, F&& visit) {
  for (const LayerWeights& L : w.layers) {
    for (const Linear* l : {&L.wq_a, &L.wq_b, &L.wkv, &L.wo_a, &L.wo_b, &L.gate}) visit(*l);
    const int64_t n = c.hc_mult, D = c.hidden_size;
    for (const MhcWeights* m : {&L.hc_attn, &L.hc_ffn})
      visit(f32_weights(m->fn.data(), (2 + n) * n, n * D));
    for (const CompressorWeights* cw :
         {L.compressor ? &*L.compressor : nullptr, L.indexer ? &L.indexer->compressor : nullptr})
      if (cw) {
        visit(cw->wkv);
        visit(cw->wgate);
      }
    if (L.indexer) {
      visit(L.indexer->wq_b);
      visit(L.indexer->weights_proj);
    }
    if (L.shared_expert)
      for (const Linear* l : {&L.shared_expert->w1, &L.shared_expert->w2, &L.shared_expert->w3})
        visit(*l);
    if (!L.experts.empty())
      for (int64_t k = 0; k < c.num_experts_per_tok; ++k)
        for (const Linear* l : {&L.experts[0].w1, &L.experts[0].w2, &L.experts[0].w3}) visit(*l);
  }
  visit(f32_weights(w.hc_head.fn.data(), c.hc_mult, c.hc_mult * c.hidden_size));
  visit(w.head);
}

}  // namespace

DecodeTraffic decode_traffic(const ModelConfig& c, const ModelWeights& w, int64_t context,
                             KvFormat kv_format) {
  DecodeTraffic t;
  for_each_linear_of_a_token(c, w,
                             [&](const WeightView& l) { t.weight_bytes += double(l.bytes()); });
  t.weight_bytes += double(w.embed.row_bytes());
  const double entry = double(main_entry_codec(c, kv_format).bytes());
  const double key = double(indexer_entry_codec(c, kv_format).bytes());
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const int64_t m = c.compress_ratio(l), T = context;
    t.kv_bytes += double(std::min(T, c.sliding_window)) * entry;
    if (m == kCsaCompressRatio)
      t.kv_bytes += double(T / m) * key + double(std::min(T / m, c.index_topk)) * entry;
    else if (m > 0)
      t.kv_bytes += double(T / m) * entry;
  }
  return t;
}

double linear_flops_per_token(const ModelConfig& c, const ModelWeights& w) {
  double flops = 0.0;
  for_each_linear_of_a_token(c, w,
                             [&](const WeightView& l) { flops += 2.0 * double(l.out * l.in); });
  return flops;
}

}  // namespace dsv4
