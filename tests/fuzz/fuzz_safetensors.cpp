// libFuzzer target: the safetensors reader, on any bytes.
#include <exception>

#include "fuzz_input.hpp"
#include "rewind/models/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string file = rwd::fuzz::as_file(data, size, ".safetensors");
  try {
    std::map<std::string, std::string> metadata;
    const rwd::models::TensorMap tensors = rwd::models::load_safetensors(file, &metadata);
    for (const auto& [name, t] : tensors)
      if (t.numel() > 0) (void)t.get(t.numel() - 1);  // every tensor it returns is readable to the end
  } catch (const std::exception&) {
  }
  return 0;
}
