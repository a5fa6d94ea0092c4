#include "dsv4/model/model_summary.hpp"

#include <set>

namespace dsv4 {

Result<ModelSummary> summarize_model(const ModelConfig& config, const Checkpoint& checkpoint) {
  return capture_result([&] {
    ModelSummary summary;
    for (int layer = 0; layer < int(config.num_hidden_layers); ++layer) {
      LayerSummary ls;
      ls.layer = layer;
      ls.attention = config.attention_kind(layer);
      ls.compress_ratio = config.compress_ratio(layer);
      ls.hash_routing = config.is_hash_layer(layer);
      summary.layers.push_back(ls);
    }
    std::set<std::string> used;
    for (const TensorSpec& spec : checkpoint_schema(config)) {
      auto format = check_tensor(checkpoint, spec);
      throw_if_error(format.status());
      const int64_t n = shape_numel(spec.shape);
      summary.n_params_total += n;
      used.insert(stored_weight_name(spec));
      if (spec.role == TensorRole::kLinear || spec.role == TensorRole::kExpert)
        used.insert(spec.name + ".scale");
      if (spec.layer < 0) {
        if (spec.name == "embed.weight" || spec.name == "head.weight")
          summary.n_params_embedding += n;
        continue;
      }
      LayerSummary& ls = summary.layers[size_t(spec.layer)];
      ls.n_params += n;
      if (spec.name.ends_with("attn.wq_a")) ls.attention_format = format.value();
      if (spec.name.ends_with("ffn.experts.0.w1")) ls.expert_format = format.value();
    }
    for (const std::string& name : checkpoint.names()) {
      const ConstTensorView v = checkpoint.view(checkpoint.find(name));
      DTypeUsage& usage = summary.by_dtype[v.dtype];
      usage.n_tensors += 1;
      usage.n_elements += v.numel();
      usage.n_bytes += int64_t(v.byte_size());
      summary.n_bytes_total += int64_t(v.byte_size());
      if (!used.count(name)) summary.n_unused_tensors += 1;
    }
    return summary;
  });
}

}  // namespace dsv4
