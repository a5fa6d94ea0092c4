// The checkpoint schema: every tensor a DeepSeek-V4 model needs, with its shape and the storage
// formats accepted for it, derived from a ModelConfig. Loading checks the whole schema before
// any weight is touched, so a bad checkpoint fails with a message naming the tensor.
#pragma once

#include <string>
#include <vector>

#include "dsv4/core/format_traits.hpp"
#include "dsv4/core/status.hpp"
#include "dsv4/core/tensor_view.hpp"
#include "dsv4/formats/model_config.hpp"
#include "dsv4/formats/safetensors.hpp"

namespace dsv4 {

enum class TensorRole : uint8_t {
  kFloat,       // vectors, norms, mHC parameters, embeddings: F32 / BF16 / F16
  kLinear,      // [out, in] matrix: F32 / BF16 / F16, or FP8 block-scaled
  kExpert,      // routed-expert matrix: as kLinear, or FP4 block-scaled
  kTokenTable,  // integer table (tid2eid): I32 / I64
};

struct TensorSpec {
  std::string name;  // e.g. "layers.3.attn.wq_b" for linears (".weight"/".scale" appended), full
                     // name otherwise
  Shape shape;       // logical shape ([out, in] for linears)
  TensorRole role;
  int layer = -1;  // -1 for model-level tensors
};

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
