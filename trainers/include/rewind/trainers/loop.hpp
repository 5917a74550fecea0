// The training loop every front end shares: trainer updates, clipping, the non-finite check, optimizer steps.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>

#include "rewind/trainers/checkpoint.hpp"
#include "rewind/trainers/export.hpp"
#include "rewind/trainers/optim.hpp"
#include "rewind/trainers/trainer.hpp"

namespace rwd::trainers {

// Training stopped on a NaN or an infinity; the message names the update and what went non-finite first.
class REWIND_TRAINERS_EXPORT NonFiniteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct LoopOptions {
  double clip = 0;  // max global gradient norm; 0: no clipping
  // Windows per update: their gradients are summed, weighted by their counted targets, into one update (the
  // mean over all of them, as one longer window would give); a pass's last group may be shorter. Under data
  // parallelism the ranks combine once per update, not per window.
  std::int64_t accumulate = 1;
  std::int64_t max_updates = 0;   // total updates, counted from the start of training (0: no limit)
  std::int64_t max_passes = 0;    // passes over the data (0: no limit)
  double time_limit_seconds = 0;  // 0: no limit
  // Updates with a non-finite loss or gradient discarded in a row before training stops with the diagnosis
  // (0: stop at the first, the default). A discarded update changes no parameter and no optimizer state.
  std::int64_t max_nonfinite_skips = 0;
  // Data parallelism (each process trains its share of the streams): `reduce` turns this process's gradients
  // and stats into the global ones, identical on every process, before anything looks at them; `agree` turns
  // this process's wish to stop into everyone's decision. Unset: one process.
  std::function<void(const std::vector<Parameter*>&, UpdateStats&)> reduce = {};
  std::function<bool(bool)> agree = {};
};

// An update is a trainer window with at least one counted target: windows without one (the first steps of a
// recall task under TBPTT(k, k)) change nothing and are not counted, reported or limited.
struct UpdateReport {
  std::int64_t update = 0;  // 1-based, counted from the start of training
  std::int64_t pass = 0;    // 0-based
  UpdateStats stats;
  double grad_norm = 0;  // before clipping
  double lr = 0;
  double seconds = 0;                  // since the loop started
  std::int64_t steps_recorded = 0;     // forward steps since the previous report, skipped windows included
  std::int64_t skipped_nonfinite = 0;  // non-finite updates discarded since the previous report
};

class REWIND_TRAINERS_EXPORT Loop {
 public:
  // data_for_pass(p) supplies the data of pass p (the same text again, or a new synthetic sample).
  Loop(Model& model, Trainer& trainer, Optimizer& optimizer,
       std::function<const Dataset&(std::int64_t)> data_for_pass, LoopOptions options);
  // Runs until a limit is reached or on_update returns false. Throws NonFiniteError.
  void run(const std::function<bool(const UpdateReport&)>& on_update);

  std::int64_t updates() const { return optimizer_.updates(); }
  RunPosition position() const { return {pass_, in_pass_}; }
  // Continue a restored run: the trainer has begun pass position.pass and been restored to where it was.
  void resume(const RunPosition& position) {
    pass_ = position.pass, in_pass_ = position.in_pass;
    counted_in_pass_ = 1;  // the part of the pass before the checkpoint is not known here; assume it counted
  }
  Tape& tape() { return tape_; }

 private:
  Model& model_;
  Trainer& trainer_;
  Optimizer& optimizer_;
  std::function<const Dataset&(std::int64_t)> data_for_pass_;
  LoopOptions options_;
  Tape tape_;
  std::int64_t pass_ = 0;
  bool in_pass_ = false;
  std::int64_t counted_in_pass_ = 0;  // updates of the current pass that had targets
  std::int64_t consecutive_skips_ = 0, skipped_since_report_ = 0;
  // The windows of the update being accumulated: their count, summed stats and count-weighted gradients.
  std::int64_t group_windows_ = 0;
  UpdateStats group_;
  double group_loss_sum_ = 0;
  std::vector<Tensor> group_gradients_;
  void add_to_group(const std::vector<Parameter*>& params, const UpdateStats& window);
  UpdateStats close_group(const std::vector<Parameter*>& params);
};

}  // namespace rwd::trainers
