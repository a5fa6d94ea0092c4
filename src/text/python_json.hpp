// JSON written as Python's json.dumps(x, ensure_ascii=False) writes it: the V4 prompt format
// embeds tool schemas and arguments this way, so the bytes must match.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace dsv4::text {

using ordered_json = nlohmann::ordered_json;

std::string python_dumps(const ordered_json& value);
std::string python_dumps_string(const std::string& s);

}  // namespace dsv4::text
