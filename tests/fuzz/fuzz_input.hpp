// What the fuzz targets share: the input as a file (the readers under test take paths), and the rule that
// a bad input may throw a std::exception with a message, never crash, hang or leak.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

namespace rwd::fuzz {

// A file in /tmp holding the input, one per process and extension, rewritten for every input.
inline std::string as_file(const std::uint8_t* data, std::size_t size, const char* extension) {
  const std::string path = "/tmp/rewind-fuzz-" + std::to_string(::getpid()) + extension;
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace rwd::fuzz
