// The .safetensors format: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the raw little-endian data. Files written here load with Python's safetensors
// (and so into a PyTorch state_dict), and PyTorch's files load here.
#pragma once

#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "rewind/models/export.hpp"
#include "rewind/models/model.hpp"

namespace rwd::models {

// A file that cannot be read as safetensors, or does not match what it is loaded into.
class REWIND_MODELS_EXPORT SafetensorsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using TensorMap = std::map<std::string, Tensor>;

// Writes to a temporary file beside `file` and renames it into place, so a crash leaves either the old file
// or the new one, never a torn one.
REWIND_MODELS_EXPORT void save_safetensors(const std::filesystem::path& file,
                                           const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                                           const std::map<std::string, std::string>& metadata = {});
// Reads F32 and F64 tensors of rank 0 to 2; anything else is a SafetensorsError naming the file and tensor.
REWIND_MODELS_EXPORT TensorMap load_safetensors(const std::filesystem::path& file,
                                                std::map<std::string, std::string>* metadata = nullptr);

// A model's parameters under their PyTorch names, as save_safetensors takes them.
REWIND_MODELS_EXPORT std::vector<std::pair<std::string, const Tensor*>> parameter_tensors(Model& model);
// Those, with "format": "pt" and "producer": "rewind" added to `metadata`.
REWIND_MODELS_EXPORT void save_parameters(const std::filesystem::path& file, Model& model,
                                          std::map<std::string, std::string> metadata = {});
// All or nothing: every missing, unexpected, misshapen or mistyped tensor is listed in one error, and no
// parameter changes unless all match.
REWIND_MODELS_EXPORT void load_parameters(const std::filesystem::path& file, Model& model);
// The same check and copy from tensors already read from `file`; with strict = false, tensors that are not
// parameters (optimizer or trainer state in a checkpoint) are left alone instead of being an error.
REWIND_MODELS_EXPORT void assign_parameters(const TensorMap& tensors, Model& model,
                                            const std::filesystem::path& file, bool strict = true);

}  // namespace rwd::models
