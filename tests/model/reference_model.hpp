// A deliberately naive DeepSeek-V4 forward pass, written from the spec for the tests only: the
// whole sequence at once, every compressed entry recomputed from its definition, no cache, no
// state, double accumulation, and none of the library's operators. It is the oracle for
// configurations no golden file covers.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "dsv4/model/weights.hpp"

namespace dsv4::test {

class ReferenceModel {
 public:
  using Vec = std::vector<double>;
  ReferenceModel(const ModelConfig& c, const ModelWeights& w) : c_(c), w_(w) {}

  // logits [T][V] for every position of `tokens`.
  std::vector<Vec> forward(const std::vector<int32_t>& tokens) const {
    const int64_t T = int64_t(tokens.size()), n = c_.hc_mult, D = c_.hidden_size;
    std::vector<std::vector<Vec>> X(static_cast<size_t>(T),
                                    std::vector<Vec>(static_cast<size_t>(n)));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < n; ++j) X[t][j] = row(dense(w_.embed), tokens[t], D);
    for (int64_t l = 0; l < c_.num_hidden_layers; ++l) {
      const LayerWeights& L = w_.layers[size_t(l)];
      sublayer(X, L.hc_attn, L.attn_norm,
               [&](const std::vector<Vec>& h) { return attention(l, h); });
      sublayer(X, L.hc_ffn, L.ffn_norm,
               [&](const std::vector<Vec>& h) { return moe(l, h, tokens); });
    }
    std::vector<Vec> logits;
    for (int64_t t = 0; t < T; ++t) {
      const Vec x = flatten(X[t]);
      const Vec mix = scaled_mix(w_.hc_head.fn, n, x);
      Vec h(size_t(D), 0.0);
      for (int64_t j = 0; j < n; ++j) {
        const double pre = sigmoid(mix[j] * w_.hc_head.scale[0] + w_.hc_head.base[j]) + c_.hc_eps;
        for (int64_t i = 0; i < D; ++i) h[i] += pre * X[t][j][i];
      }
      logits.push_back(matvec((w_.head), c_.vocab_size, D, rms(h, &w_.norm)));
    }
    return logits;
  }

 private:
  static double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
  // The dequantised [out, in] matrix of a weight view.
  static std::vector<float> dense(const WeightView& w) {
    std::vector<float> m(size_t(w.out * w.in));
    for (int64_t o = 0; o < w.out; ++o) w.decode_row(o, m.data() + o * w.in);
    return m;
  }
  static Vec matvec(const WeightView& w, int64_t out, int64_t in, const Vec& x, int64_t row0 = 0) {
    Vec y(size_t(out), 0.0);
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) y[o] += double(w.at(row0 + o, i)) * x[i];
    return y;
  }
  static Vec row(const std::vector<float>& m, int64_t r, int64_t cols) {
    return Vec(m.begin() + r * cols, m.begin() + (r + 1) * cols);
  }
  static Vec matvec(const std::vector<float>& w, int64_t out, int64_t in, const Vec& x,
                    int64_t row0 = 0) {
    Vec y(size_t(out), 0.0);
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) y[o] += double(w[(row0 + o) * in + i]) * x[i];
    return y;
  }
  Vec rms(const Vec& x, const std::vector<float>* weight) const {
    double ms = 0.0;
    for (double v : x) ms += v * v;
    const double inv = 1.0 / std::sqrt(ms / double(x.size()) + c_.rms_norm_eps);
    Vec y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * (weight ? (*weight)[i] : 1.0);
    return y;
  }
  static Vec flatten(const std::vector<Vec>& streams) {
    Vec x;
    for (const Vec& s : streams) x.insert(x.end(), s.begin(), s.end());
    return x;
  }
  Vec scaled_mix(const std::vector<float>& fn, int64_t rows, const Vec& x) const {
    double ms = 0.0;
    for (double v : x) ms += v * v;
    Vec mix = matvec(fn, rows, int64_t(x.size()), x);
    for (double& v : mix) v /= std::sqrt(ms / double(x.size()) + c_.rms_norm_eps);
    return mix;
  }
  static Vec softmax(const Vec& z) {
    const double mx = *std::max_element(z.begin(), z.end());
    Vec p(z.size());
    double s = 0.0;
    for (size_t i = 0; i < z.size(); ++i) s += (p[i] = std::exp(z[i] - mx));
    for (double& v : p) v /= s;
    return p;
  }

  template <class F>
  void sublayer(std::vector<std::vector<Vec>>& X, const MhcWeights& hc,
                const std::vector<float>& norm, F&& f) const {
    const int64_t T = int64_t(X.size()), n = c_.hc_mult, D = c_.hidden_size;
    std::vector<Vec> inputs, post_all, comb_all;
    for (int64_t t = 0; t < T; ++t) {
      const Vec mix = scaled_mix(hc.fn, (2 + n) * n, flatten(X[t]));
      Vec pre(n), post(n), C(n * n);
      for (int64_t j = 0; j < n; ++j) {
        pre[j] = sigmoid(mix[j] * hc.scale[0] + hc.base[j]) + c_.hc_eps;
        post[j] = 2.0 * sigmoid(mix[n + j] * hc.scale[1] + hc.base[n + j]);
      }
      for (int64_t i = 0; i < n; ++i) {
        Vec z(n);
        for (int64_t k = 0; k < n; ++k)
          z[k] = mix[2 * n + i * n + k] * hc.scale[2] + hc.base[2 * n + i * n + k];
        const Vec p = softmax(z);
        for (int64_t k = 0; k < n; ++k) C[i * n + k] = p[k] + c_.hc_eps;
      }
      for (int64_t it = 0; it < c_.hc_sinkhorn_iters; ++it) {
        if (it > 0)
          for (int64_t i = 0; i < n; ++i) {
            double s = 0;
            for (int64_t k = 0; k < n; ++k) s += C[i * n + k];
            for (int64_t k = 0; k < n; ++k) C[i * n + k] /= s + c_.hc_eps;
          }
        for (int64_t k = 0; k < n; ++k) {
          double s = 0;
          for (int64_t i = 0; i < n; ++i) s += C[i * n + k];
          for (int64_t i = 0; i < n; ++i) C[i * n + k] /= s + c_.hc_eps;
        }
      }
      Vec y(size_t(D), 0.0);
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < D; ++i) y[i] += pre[j] * X[t][j][i];
      inputs.push_back(rms(y, &norm));
      post_all.push_back(post);
      comb_all.push_back(C);
    }
    const std::vector<Vec> z = f(inputs);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<Vec> next(size_t(n), Vec(size_t(D), 0.0));
      for (int64_t k = 0; k < n; ++k)
        for (int64_t i = 0; i < D; ++i) {
          next[k][i] = post_all[t][k] * z[t][i];
          for (int64_t j = 0; j < n; ++j) next[k][i] += comb_all[t][j * n + k] * X[t][j][i];
        }
      X[t] = next;
    }
  }

  std::vector<double> theta(bool compressed) const {
    const int64_t r = c_.qk_rope_head_dim;
    const double base = compressed ? c_.compress_rope_theta : c_.rope_theta;
    std::vector<double> th(size_t(r / 2));
    for (int64_t i = 0; i < r / 2; ++i) th[i] = std::pow(base, -2.0 * double(i) / double(r));
    if (!compressed || !c_.has_rope_scaling) return th;
    const auto& s = c_.rope_scaling;
    const double L = double(s.original_max_position_embeddings);
    const double low = std::max(
        0.0, std::floor(r * std::log(L / (s.beta_fast * 2 * M_PI)) / (2 * std::log(base))));
    const double high =
        std::min(double(r - 1),
                 std::ceil(r * std::log(L / (s.beta_slow * 2 * M_PI)) / (2 * std::log(base))));
    for (int64_t i = 0; i < r / 2; ++i) {
      const double ramp = std::clamp((i - low) / std::max(high - low, 0.001), 0.0, 1.0);
      th[i] = th[i] / s.factor * ramp + th[i] * (1 - ramp);
    }
    return th;
  }
  // Rotates the last r dims of x[offset, offset + dim) by pos (negative: inverse).
  void rope(Vec& x, int64_t offset, int64_t dim, double pos, const std::vector<double>& th) const {
    const int64_t r = c_.qk_rope_head_dim;
    for (int64_t i = 0; i < r / 2; ++i) {
      double& a = x[offset + dim - r + 2 * i];
      double& b = x[offset + dim - r + 2 * i + 1];
      const double ang = pos * th[i], ca = std::cos(ang), sa = std::sin(ang);
      const double a0 = a, b0 = b;
      a = a0 * ca - b0 * sa;
      b = a0 * sa + b0 * ca;
    }
  }

  // All complete compressed entries of a compressor over inputs h.
  std::vector<Vec> compress(const CompressorWeights& cw, int64_t m,
                            const std::vector<Vec>& h) const {
    const int64_t T = int64_t(h.size()), D = c_.hidden_size, width = cw.wkv.out, od = cw.out_dim;
    std::vector<Vec> a, g;
    for (int64_t s = 0; s < T; ++s) {
      a.push_back(matvec((cw.wkv), width, D, h[s]));
      Vec gs = matvec((cw.wgate), width, D, h[s]);
      for (int64_t i = 0; i < width; ++i) gs[i] += cw.ape[(s % m) * width + i];
      g.push_back(gs);
    }
    std::vector<Vec> entries;
    const auto th = theta(true);
    for (int64_t w = 0; (w + 1) * m <= T; ++w) {
      Vec e(static_cast<size_t>(od));
      for (int64_t ch = 0; ch < od; ++ch) {
        Vec z, v;
        if (cw.overlap) {
          if (w > 0)
            for (int64_t s = (w - 1) * m; s < w * m; ++s)
              z.push_back(g[s][ch]), v.push_back(a[s][ch]);
          for (int64_t s = w * m; s < (w + 1) * m; ++s)
            z.push_back(g[s][od + ch]), v.push_back(a[s][od + ch]);
        } else {
          for (int64_t s = w * m; s < (w + 1) * m; ++s)
            z.push_back(g[s][ch]), v.push_back(a[s][ch]);
        }
        const Vec p = softmax(z);
        e[ch] = 0;
        for (size_t i = 0; i < p.size(); ++i) e[ch] += p[i] * v[i];
      }
      e = rms(e, &cw.norm);
      rope(e, 0, od, double(w * m), th);
      entries.push_back(e);
    }
    return entries;
  }

  std::vector<Vec> attention(int64_t l, const std::vector<Vec>& h) const {
    const LayerWeights& L = w_.layers[size_t(l)];
    const int64_t T = int64_t(h.size()), D = c_.hidden_size, H = c_.num_attention_heads,
                  d = c_.head_dim;
    const int64_t m = c_.compress_ratio(l);
    const auto th = theta(m > 0);
    std::vector<Vec> keys, cq;
    for (int64_t t = 0; t < T; ++t) {
      Vec k = rms(matvec((L.wkv), d, D, h[t]), &L.kv_norm);
      rope(k, 0, d, double(t), th);
      keys.push_back(k);
      cq.push_back(rms(matvec((L.wq_a), c_.q_lora_rank, D, h[t]), &L.q_norm));
    }
    std::vector<Vec> entries, index_keys;
    if (m > 0) entries = compress(*L.compressor, m, h);
    if (L.indexer) index_keys = compress(L.indexer->compressor, m, h);
    std::vector<Vec> out;
    const int64_t G = c_.o_groups, R = c_.o_lora_rank, gin = H * d / G;
    for (int64_t t = 0; t < T; ++t) {
      Vec q = matvec((L.wq_b), H * d, c_.q_lora_rank, cq[t]);
      for (int64_t hh = 0; hh < H; ++hh) {
        Vec head(q.begin() + hh * d, q.begin() + (hh + 1) * d);
        head = rms(head, nullptr);
        std::copy(head.begin(), head.end(), q.begin() + hh * d);
        rope(q, hh * d, d, double(t), th);
      }
      std::vector<const Vec*> visible;
      for (int64_t s = std::max<int64_t>(0, t - c_.sliding_window + 1); s <= t; ++s)
        visible.push_back(&keys[s]);
      if (m > 0) {
        const int64_t nv = (t + 1) / m;
        std::vector<int64_t> chosen(static_cast<size_t>(nv));
        std::iota(chosen.begin(), chosen.end(), 0);
        if (L.indexer && nv > c_.index_topk) {
          const int64_t nh = c_.index_n_heads, ci = c_.index_head_dim;
          Vec qi = matvec((L.indexer->wq_b), nh * ci, c_.q_lora_rank, cq[t]);
          for (int64_t hh = 0; hh < nh; ++hh) rope(qi, hh * ci, ci, double(t), th);
          Vec u = matvec((L.indexer->weights_proj), nh, D, h[t]);
          Vec score(size_t(nv), 0.0);
          for (int64_t w = 0; w < nv; ++w)
            for (int64_t hh = 0; hh < nh; ++hh) {
              double dot = 0;
              for (int64_t i = 0; i < ci; ++i) dot += qi[hh * ci + i] * index_keys[w][i];
              score[w] +=
                  u[hh] / std::sqrt(double(nh)) * std::max(dot, 0.0) / std::sqrt(double(ci));
            }
          std::stable_sort(chosen.begin(), chosen.end(),
                           [&](int64_t a, int64_t b) { return score[a] > score[b]; });
          chosen.resize(size_t(c_.index_topk));
        }
        for (int64_t w : chosen) visible.push_back(&entries[w]);
      }
      Vec o(size_t(H * d), 0.0);
      for (int64_t hh = 0; hh < H; ++hh) {
        Vec z;
        for (const Vec* k : visible) {
          double dot = 0;
          for (int64_t i = 0; i < d; ++i) dot += q[hh * d + i] * (*k)[i];
          z.push_back(dot / std::sqrt(double(d)));
        }
        z.push_back(L.attn_sink[hh]);
        const Vec p = softmax(z);
        for (size_t j = 0; j < visible.size(); ++j)
          for (int64_t i = 0; i < d; ++i) o[hh * d + i] += p[j] * (*visible[j])[i];
        rope(o, hh * d, d, -double(t), th);
      }
      Vec low(size_t(G * R));
      for (int64_t g = 0; g < G; ++g) {
        Vec part(o.begin() + g * gin, o.begin() + (g + 1) * gin);
        const Vec r = matvec((L.wo_a), R, gin, part, g * R);
        std::copy(r.begin(), r.end(), low.begin() + g * R);
      }
      out.push_back(matvec((L.wo_b), D, G * R, low));
    }
    return out;
  }

  Vec expert(const ExpertWeights& e, const Vec& x) const {
    const int64_t I = e.w1.out, D = c_.hidden_size;
    const double lim = c_.swiglu_limit;
    Vec g = matvec(e.w1, I, D, x), u = matvec(e.w3, I, D, x);
    for (int64_t i = 0; i < I; ++i) {
      if (lim > 0) g[i] = std::min(g[i], lim), u[i] = std::clamp(u[i], -lim, lim);
      g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
    }
    return matvec(e.w2, D, I, g);
  }

  std::vector<Vec> moe(int64_t l, const std::vector<Vec>& h,
                       const std::vector<int32_t>& tokens) const {
    const LayerWeights& L = w_.layers[size_t(l)];
    const int64_t E = c_.n_routed_experts, k = c_.num_experts_per_tok, D = c_.hidden_size;
    std::vector<Vec> out;
    for (size_t t = 0; t < h.size(); ++t) {
      const Vec z = matvec((L.gate), E, D, h[t]);
      Vec s(static_cast<size_t>(E));
      if (c_.scoring_func == ScoringFunc::kSoftmax) s = softmax(z);
      for (int64_t e = 0; e < E; ++e) {
        if (c_.scoring_func == ScoringFunc::kSqrtSoftplus)
          s[e] = std::sqrt(std::log1p(std::exp(z[e])));
        if (c_.scoring_func == ScoringFunc::kSigmoid) s[e] = sigmoid(z[e]);
      }
      std::vector<int64_t> sel;
      if (l < c_.num_hash_layers) {
        for (int64_t j = 0; j < k; ++j) sel.push_back(L.tid2eid[tokens[t] * k + j]);
      } else {
        std::vector<int64_t> ids(static_cast<size_t>(E));
        std::iota(ids.begin(), ids.end(), 0);
        std::stable_sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) {
          return s[a] + L.gate_bias[a] > s[b] + L.gate_bias[b];
        });
        sel.assign(ids.begin(), ids.begin() + k);
      }
      double sum = 0;
      for (int64_t e : sel) sum += s[e];
      Vec y = L.shared_expert ? expert(*L.shared_expert, h[t]) : Vec(size_t(D), 0.0);
      for (int64_t e : sel) {
        const double w = (c_.scoring_func == ScoringFunc::kSoftmax ? s[e] : s[e] / sum) *
                         c_.routed_scaling_factor;
        const Vec ye = expert(L.experts[e], h[t]);
        for (int64_t i = 0; i < D; ++i) y[i] += w * ye[i];
      }
      out.push_back(y);
    }
    return out;
  }

  const ModelConfig& c_;
  const ModelWeights& w_;
};

}  // namespace dsv4::test
