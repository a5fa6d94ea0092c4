// The checkpoint schema: every tensor a DeepSeek-V4 model needs — name, shape, accepted storage
// formats (role), where it lands in ModelWeights (slot) and how random weights make it up (init) —
// derived from a ModelConfig, one table row per tensor. The schema check, the loader,
// random_weights, write_checkpoint's coverage test and `dsv4 info` all walk this one table, so a
// new tensor (or the MTP layers) is one row here plus its field in ModelWeights.
#pragma once

#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "dsv4/core/format_traits.hpp"
#include "dsv4/core/status.hpp"
#include "dsv4/core/tensor_view.hpp"
#include "dsv4/formats/model_config.hpp"
#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/weights.hpp"

namespace dsv4 {

enum class TensorRole : uint8_t {
  kFloat,       // vectors, norms, mHC parameters, embeddings: F32 / BF16 / F16
  kLinear,      // [out, in] matrix: F32 / BF16 / F16, or FP8 block-scaled
  kExpert,      // routed-expert matrix: as kLinear, or FP4 block-scaled
  kTokenTable,  // integer table (tid2eid): I32 / I64
};

// How random_weights makes a tensor up (official checkpoints' formats in brackets).
enum class TensorInit : uint8_t {
  kLinear,      // 1/sqrt(in) scaled matrix in RandomWeightFormats::linear (FP8)
  kExpert,      // the same in RandomWeightFormats::expert (FP4)
  kDense,       // the same in RandomWeightFormats::dense (BF16)
  kEmbedding,   // unit-variance rows, dense format
  kNearOne,     // norm weights: 1 + N(0, 0.05²)
  kMhcMatrix,   // N(0, 0.02²)
  kMhcBase,     // N(0, 0.5²)
  kOnes,        // mHC scales
  kApe,         // N(0, 0.1²)
  kSink,        // N(0, 1)
  kBias,        // router bias N(0, 0.1²)
  kTokenTable,  // tid2eid: a fixed spread of expert ids
};

// Where a tensor lands: a matrix view, an fp32 vector, or an integer table.
using WeightSlot = std::variant<WeightView*, std::vector<float>*, std::vector<int32_t>*>;

struct TensorSpec {
  std::string name;  // e.g. "layers.3.attn.wq_b" for linears (".weight"/".scale" appended), full
                     // name otherwise
  Shape shape;       // logical shape ([out, in] for linears)
  TensorRole role;
  int layer = -1;  // -1 for model-level tensors
  TensorInit init = TensorInit::kLinear;
  // Its place in weights shaped by prepare_weights (empty for specs made up ad hoc).
  std::function<WeightSlot(ModelWeights&)> slot;
};

// Sizes `weights` for `config`: the layers, each layer's optional parts (compressor, indexer,
// shared expert, with their widths) and expert list, so every schema slot exists.
void prepare_weights(const ModelConfig& config, ModelWeights& weights);

// All tensors of the decoder stack and head, in a stable order.
std::vector<TensorSpec> checkpoint_schema(const ModelConfig& config);

// Checks presence, dtype and shape of one tensor; for linears also determines the format
// (and checks the scale tensor). Errors are kModelMismatch naming the tensor.
Result<WeightFormat> check_tensor(const Checkpoint& checkpoint, const TensorSpec& spec);

// Checks every tensor of the schema.
Status check_checkpoint(const Checkpoint& checkpoint, const ModelConfig& config);

// Name of the stored weight of a spec (linears: NAME.weight).
std::string stored_weight_name(const TensorSpec& spec);

}  // namespace dsv4
