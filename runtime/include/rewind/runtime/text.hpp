// Numbers as people typed them, for messages and help.
#pragma once

#include <charconv>
#include <string>

namespace rwd::runtime {

// The shortest text that reads back as v: 0.1, not 0.10000000000000001.
inline std::string shortest(double v) {
  char buf[32];
  const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  return std::string(buf, end);
}

}  // namespace rwd::runtime
