// libFuzzer target: a checkpoint's metadata (format, counters, position), as --resume reads it first.
#include <exception>

#include "fuzz_input.hpp"
#include "rewind/trainers/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string file = rwd::fuzz::as_file(data, size, ".safetensors");
  try {
    (void)rwd::trainers::read_checkpoint_metadata(file);
  } catch (const std::exception&) {
  }
  return 0;
}
