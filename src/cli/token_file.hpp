// Token-id files for the CLI: whitespace-separated decimal integers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsv4/core/status.hpp"

namespace dsv4::cli {

Result<std::vector<int32_t>> read_token_file(const std::string& path);

}  // namespace dsv4::cli
