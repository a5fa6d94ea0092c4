// What the opaque C handles are.
#pragma once

#include <memory>

#include "dsv4/model/model.hpp"
#include "dsv4/model/session.hpp"

struct dsv4_model {
  std::shared_ptr<const dsv4::Model> model;
};

struct dsv4_session {
  std::unique_ptr<dsv4::Session> session;
};
