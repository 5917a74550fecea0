#include "rewind/trainers/checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "rewind/models/safetensors.hpp"

namespace rwd::trainers {

namespace fs = std::filesystem;
using models::SafetensorsError;

namespace {
constexpr const char* format_key = "rewind.checkpoint";
constexpr const char* format_version = "1";
constexpr const char* trainer_prefix = "rewind.trainer.";  // a trainer's own settings (Trainer::settings)

std::int64_t integer(const std::map<std::string, std::string>& m, const std::string& key,
                     const fs::path& file) {
  const auto it = m.find(key);
  try {
    if (it != m.end()) return std::stoll(it->second);
  } catch (const std::exception&) {
  }
  throw SafetensorsError("checkpoint '" + file.string() + "': metadata '" + key +
                         "' is missing or not a number");
}
}  // namespace

void save_checkpoint(const fs::path& file, Model& model, Optimizer& optimizer, const Trainer& trainer,
                     const RunPosition& position, const std::map<std::string, std::string>& metadata,
                     const std::vector<Tensor>* all_streams) {
  std::vector<std::pair<std::string, const Tensor*>> tensors = models::parameter_tensors(model);
  for (const auto& [name, t] : optimizer.state(model.parameters())) tensors.emplace_back(name, t);
  const std::vector<Tensor>& stored = all_streams ? *all_streams : trainer.stored_state();
  for (std::size_t i = 0; i < stored.size(); ++i)
    tensors.emplace_back("trainer.state." + std::to_string(i), &stored[i]);
  std::map<std::string, std::string> meta = metadata;
  meta[format_key] = format_version;
  meta["rewind.updates"] = std::to_string(optimizer.updates());
  meta["rewind.pass"] = std::to_string(position.pass);
  meta["rewind.in_pass"] = position.in_pass ? "1" : "0";
  meta["rewind.position"] = std::to_string(trainer.position());
  meta["rewind.stored_step"] = std::to_string(trainer.stored_step());
  for (const auto& [key, value] : optimizer.schedule_state()) meta[key] = value;
  for (const auto& [key, value] : trainer.settings()) meta[std::string(trainer_prefix) + key] = value;
  models::save_safetensors(file, tensors, meta);
}

std::map<std::string, std::string> read_checkpoint_metadata(const fs::path& file) {
  std::map<std::string, std::string> meta;
  models::load_safetensors(file, &meta);
  if (meta[format_key] != format_version)
    throw SafetensorsError("checkpoint '" + file.string() + "': not a rewind checkpoint (no '" + format_key +
                           "' = " + format_version + " in its metadata)");
  for (const char* key :
       {"rewind.updates", "rewind.pass", "rewind.in_pass", "rewind.position", "rewind.stored_step"})
    if (integer(meta, key, file) < 0)
      throw SafetensorsError("checkpoint '" + file.string() + "': metadata '" + key + "' is negative");
  return meta;
}

RunPosition restore_checkpoint(const fs::path& file, Model& model, Optimizer& optimizer, Trainer& trainer,
                               std::int64_t first_stream, std::int64_t all_streams) {
  std::map<std::string, std::string> meta;
  const models::TensorMap tensors = models::load_safetensors(file, &meta);
  if (meta[format_key] != format_version)
    throw SafetensorsError("checkpoint '" + file.string() + "': not a rewind checkpoint");
  const std::string where = "checkpoint '" + file.string() + "'";
  // Check everything first: parameters (assign_parameters checks before it copies), optimizer, trainer.
  const std::vector<autodiff::Parameter*> params = model.parameters();
  Optimizer probe = optimizer;
  auto optimizer_state = probe.state(params);
  for (const auto& [name, t] : optimizer_state) {
    const auto it = tensors.find(name);
    if (it == tensors.end() || it->second.shape() != t->shape() || it->second.dtype() != t->dtype())
      throw SafetensorsError(where + ": optimizer state '" + name +
                             "' is missing or has the wrong shape (was the run "
                             "saved with another optimizer?)");
  }
  std::vector<Tensor> stored;
  for (std::size_t i = 0; i < trainer.stored_state().size(); ++i) {
    const auto it = tensors.find("trainer.state." + std::to_string(i));
    const Tensor& expected = trainer.stored_state()[i];
    const std::int64_t rows = expected.shape().rows;
    const std::int64_t saved_rows = all_streams > 0 ? all_streams : rows;
    if (it == tensors.end() || it->second.shape().cols != expected.shape().cols ||
        it->second.dtype() != expected.dtype() || it->second.shape().rows != saved_rows ||
        first_stream + rows > saved_rows)
      throw SafetensorsError(where + ": trainer state " + std::to_string(i) +
                             " is missing or does not fit the model and batch");
    if (saved_rows == rows) {
      stored.push_back(it->second);
    } else {  // this process's streams of a run saved with all of them
      Tensor share(expected.shape(), expected.dtype());
      const std::int64_t row_bytes = share.bytes() / std::max<std::int64_t>(rows, 1);
      std::memcpy(share.raw(), static_cast<const char*>(it->second.raw()) + first_stream * row_bytes,
                  static_cast<std::size_t>(share.bytes()));
      stored.push_back(std::move(share));
    }
  }
  const RunPosition position{integer(meta, "rewind.pass", file), integer(meta, "rewind.in_pass", file) != 0};
  const std::int64_t updates = integer(meta, "rewind.updates", file);
  const std::int64_t at = integer(meta, "rewind.position", file),
                     stored_step = integer(meta, "rewind.stored_step", file);
  std::map<std::string, std::string> settings;
  for (const auto& [key, value] : meta)
    if (key.starts_with(trainer_prefix)) settings[key.substr(std::strlen(trainer_prefix))] = value;
  try {
    probe.restore_schedule_state(meta);
    trainer.restore_settings(settings);
    trainer.restore(at, stored_step, std::move(stored));
  } catch (const std::invalid_argument& e) {
    throw SafetensorsError(where + ": " + e.what());
  }
  models::assign_parameters(tensors, model, file, false);  // checks everything before it copies
  for (auto& [name, t] : optimizer.state(params)) std::memcpy(t->raw(), tensors.at(name).raw(), t->bytes());
  optimizer.set_updates(updates);
  optimizer.restore_schedule_state(meta);
  return position;
}

}  // namespace rwd::trainers
