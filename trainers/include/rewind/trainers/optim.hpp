// Optimizers and the pieces of an update step: gradient-norm clipping, learning-rate schedules, and the
// check that nothing went non-finite.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rewind/autodiff/tape.hpp"
#include "rewind/trainers/export.hpp"

namespace rwd::trainers {

using autodiff::Parameter;
using autodiff::Tensor;

// torch.optim's semantics for every kind; docs/trainers.md has the formulas.
struct OptimizerConfig {
  std::string kind = "adam";  // "sgd", "adam", "adamw" (decoupled weight decay) or "rmsprop"
  double lr = 1e-3;
  double momentum = 0;                            // sgd: 0 is plain SGD, p -= lr * g
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam, adamw, as torch.optim.Adam; rmsprop uses eps
  // Step decay: lr * gamma^(floor(update / step_every)); step_every 0 keeps lr constant.
  std::int64_t step_every = 0;
  double gamma = 0.5;
  double weight_decay = 0;  // sgd, adam, rmsprop: L2 added to the gradient; adamw: p *= 1 - lr * weight_decay
  bool nesterov = false;    // sgd with momentum
  double alpha = 0.99;      // rmsprop's smoothing constant
  // "constant" (or step decay when step_every > 0), "step", "cosine": linear warm-up over `warmup`
  // updates, then cosine from lr down to lr_min at update total_updates; or "plateau": torch's
  // ReduceLROnPlateau (mode min, relative threshold 1e-4): the rate is multiplied by gamma, not below lr_min,
  // once the validation loss has not improved for more than `patience` evaluations.
  std::string schedule = "constant";
  std::int64_t warmup = 0;
  double lr_min = 0;
  std::int64_t total_updates = 0;
  std::int64_t patience = 10;
};

class REWIND_TRAINERS_EXPORT Optimizer {
 public:
  explicit Optimizer(OptimizerConfig config);
  // Applies one update to every parameter from its gradient, at the schedule's rate for update `updates()`.
  void step(const std::vector<Parameter*>& params);
  double current_lr() const;
  std::int64_t updates() const { return updates_; }

  // Optimizer state for checkpoints: names and tensors in a fixed order (allocated, zero, before the first
  // step).
  std::vector<std::pair<std::string, Tensor*>> state(const std::vector<Parameter*>& params);
  void set_updates(std::int64_t n) { updates_ = n; }

  // The plateau schedule's input: one validation loss per evaluation. Returns whether the rate was reduced.
  bool observe_validation(double loss);
  // What the schedule remembers beyond the update count (the plateau's best loss, evaluations without
  // improvement and reductions), as checkpoint metadata; restoring checks it is complete and well formed.
  std::map<std::string, std::string> schedule_state() const;
  void restore_schedule_state(const std::map<std::string, std::string>& metadata);

 private:
  void allocate_state(const std::vector<Parameter*>& params);

  OptimizerConfig config_;
  std::int64_t updates_ = 0;
  std::vector<Tensor> first_, second_;  // momentum buffer (sgd) or moments (adam), per parameter
  double plateau_best_ = INFINITY;
  std::int64_t plateau_bad_ = 0, plateau_reductions_ = 0;
};

// Scales all gradients so their global L2 norm is at most max_norm; returns the norm before clipping.
REWIND_TRAINERS_EXPORT double clip_grad_norm(const std::vector<Parameter*>& params, double max_norm);
// Names the first parameter whose value or gradient holds a NaN or an infinity; empty if none.
REWIND_TRAINERS_EXPORT std::string first_nonfinite(const std::vector<Parameter*>& params);
// The same for values only: whether the parameters are worth keeping after a non-finite loss, whose gradients
// are non-finite too.
REWIND_TRAINERS_EXPORT std::string first_nonfinite_value(const std::vector<Parameter*>& params);

}  // namespace rwd::trainers
