// Trainers turn a model and a dataset into a sequence of updates: each call to next() leaves one update's
// gradient in the model's parameter gradients. Full, truncated(k1, k2) and checkpointed BPTT are plugins
// implementing this. Exact semantics: docs/trainers.md.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rewind/autodiff/tape.hpp"
#include "rewind/models/model.hpp"
#include "rewind/models/options.hpp"
#include "rewind/trainers/data.hpp"
#include "rewind/trainers/export.hpp"

namespace rwd::trainers {

using autodiff::Tape;
using autodiff::Var;
using models::Model;
using models::ModelState;

struct TrainerSpec {
  models::Options options;  // validated against the plugin's declared options
};

struct UpdateStats {
  double loss = 0;              // mean over the update's counted targets
  std::int64_t loss_count = 0;  // targets (token data) or loss steps x rows x outputs (real data) counted
  // The gradient left in the parameters is the sum of the counted targets' gradients divided by this; 0
  // means loss_count (the mean, as the loss). Averaging updates (accumulation, ranks, pass_gradient) weighs
  // each by it. ARTBP divides by its expected count instead, so that every target weighs the same in an
  // optimizer step whatever the random length of its update (docs/trainers.md).
  double normalizer = 0;
  std::int64_t correct = 0;     // token data: counted targets whose argmax was right
  std::int64_t first_step = 0;  // the update's loss covers steps [first_step, end_step)
  std::int64_t end_step = 0;
  std::int64_t steps_recorded = 0;  // forward steps run for this update (recomputation included)
  autodiff::MemoryStats tape;       // the tape's figures at the end of the update (peak since begin())
  std::int64_t held_bytes = 0;      // checkpointing: the most bytes of tape and kept states at one time
  std::int64_t k1 = 0, k2 = 0;      // a truncating trainer's window for this update (0: not truncating)

  double gradient_normalizer() const { return normalizer > 0 ? normalizer : static_cast<double>(loss_count); }
};

class REWIND_TRAINERS_EXPORT Trainer {
 public:
  virtual ~Trainer();
  // Starts a pass over data from a zero state and zeroes the tape's peak.
  virtual void begin(Model& model, const Dataset& data, Tape& tape);
  bool done() const { return position_ >= steps_; }
  // One update: zeroes the parameter gradients, then leaves this update's gradient in them.
  virtual UpdateStats next(Model& model, const Dataset& data, Tape& tape) = 0;

  // Where the pass is: the first step whose loss the next update covers.
  std::int64_t position() const { return position_; }
  // The state the next update starts from, and the step it belongs to (for checkpoints).
  const std::vector<Tensor>& stored_state() const { return stored_; }
  std::int64_t stored_step() const { return stored_step_; }
  // Restores a position and stored state saved from an identical trainer on the same data.
  void restore(std::int64_t position, std::int64_t stored_step, std::vector<Tensor> stored);
  // Settings a trainer changes as it runs (the adaptive trainer's k), saved with a checkpoint as metadata
  // "rewind.trainer.KEY" and handed back before restore() on resume, so that the run continues exactly.
  // restore_settings throws std::invalid_argument on a value it cannot take.
  virtual std::map<std::string, std::string> settings() const { return {}; }
  virtual void restore_settings(const std::map<std::string, std::string>& /*settings*/) {}

 protected:
  // One truncated update (docs/trainers.md): the loss over [position, min(position + k1, T)) through an
  // unroll of k2 steps from the stored state, which must be the state at that unroll's start; on the way the
  // state where the next update, with next_k1 and next_k2, starts is stored. Truncated and adaptive share it.
  UpdateStats truncated_update(Model& model, const Dataset& data, Tape& tape, std::int64_t k1,
                               std::int64_t k2, std::int64_t next_k1, std::int64_t next_k2);

  std::int64_t position_ = 0;
  std::int64_t steps_ = 0;
  std::vector<Tensor> stored_;
  std::int64_t stored_step_ = 0;
};

// What every trainer records: steps [begin, end) of data from a state (updated in place), with a loss over
// the steps from loss_begin on, as a sum over counted targets divided by `normalizer` (0: their count in that
// range, so the loss is their mean). If save_step lies in [begin, end], the state at the start of that step
// is copied to *saved.
// Host buffers a window is assembled in before the tape copies it. A caller that records window after window
// keeps them (rewind online), so that a window allocates nothing once they have their sizes.
struct WindowBuffers {
  // One set per segment: a window split where the next update starts runs two segments of other lengths.
  struct Segment {
    Tensor features, targets, keep;
    std::vector<std::uint8_t> resets;
    std::vector<std::int32_t> ids, target_ids;
  } segments[2];
};
struct Window {
  std::int64_t begin = 0, end = 0;
  std::int64_t loss_begin = 0;  // the loss covers steps [max(begin, loss_begin), end): end for no loss
  double normalizer = 0;
  std::int64_t save_step = -1;
  std::vector<Tensor>* saved = nullptr;
  WindowBuffers* buffers = nullptr;  // null: temporary ones
};
// An invalid loss when no step in range carries a target.
struct WindowResult {
  Var loss;
  std::int64_t count = 0;
  std::int64_t correct = 0;
};
REWIND_TRAINERS_EXPORT WindowResult record_window(Model& model, Tape& tape, const Dataset& data,
                                                  ModelState& state, const Window& window);
// The loss part of record_window: the head on `features` (the last layer's outputs of steps [begin, end),
// step-major) and the loss over the steps from loss_begin on, added to result. What the horizon analysis
// uses for the gradient at the state a loss reads (lag 0).
REWIND_TRAINERS_EXPORT void record_loss(Model& model, Tape& tape, const Dataset& data, const Var& features,
                                        std::int64_t begin, std::int64_t end, std::int64_t loss_begin,
                                        double normalizer, WindowResult& result,
                                        WindowBuffers::Segment* buffers = nullptr);
// Targets counted in steps [begin, end): the denominator of "mean over batch and time".
REWIND_TRAINERS_EXPORT std::int64_t count_targets(const Dataset& data, std::int64_t begin, std::int64_t end);

}  // namespace rwd::trainers
