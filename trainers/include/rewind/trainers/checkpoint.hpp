// A run's complete state in one .safetensors file, written atomically: parameters under their PyTorch names,
// optimizer state ("optimizer.*"), the trainer's stored state ("trainer.state.*"), and as string metadata the
// position in the data and whatever the front end needs to rebuild the run (its configuration).
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "rewind/trainers/export.hpp"
#include "rewind/trainers/optim.hpp"
#include "rewind/trainers/trainer.hpp"

namespace rwd::trainers {

struct RunPosition {
  std::int64_t pass = 0;
  bool in_pass = false;  // false: the next update begins pass `pass`
};

// all_streams: the trainer's stored state of every stream, when the trainer holds a share of them (data
// parallelism gathers the ranks' shares); null: the trainer's own.
REWIND_TRAINERS_EXPORT void save_checkpoint(const std::filesystem::path& file, Model& model,
                                            Optimizer& optimizer, const Trainer& trainer,
                                            const RunPosition& position,
                                            const std::map<std::string, std::string>& metadata,
                                            const std::vector<Tensor>* all_streams = nullptr);
// The metadata alone, to rebuild the model, data and trainer before restore_checkpoint.
REWIND_TRAINERS_EXPORT std::map<std::string, std::string> read_checkpoint_metadata(
    const std::filesystem::path& file);
// Restores parameters, optimizer and trainer (after trainer.begin on the pass's data). Everything is checked
// before anything changes; a mismatch throws naming the file and every problem. A trainer that holds streams
// [first_stream, first_stream + its batch) of the all_streams saved (one rank's share) takes those rows;
// all_streams 0: the trainer holds them all.
REWIND_TRAINERS_EXPORT RunPosition restore_checkpoint(const std::filesystem::path& file, Model& model,
                                                      Optimizer& optimizer, Trainer& trainer,
                                                      std::int64_t first_stream = 0,
                                                      std::int64_t all_streams = 0);

}  // namespace rwd::trainers
