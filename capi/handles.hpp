// What the opaque C handles are.
#pragma once

#include <memory>

#include "dsv4/model/model.hpp"

struct dsv4_model {
  std::shared_ptr<const dsv4::Model> model;
};
