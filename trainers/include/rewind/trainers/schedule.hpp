// Checkpoint schedules: the exact BPTT gradient within a memory budget, recomputing as little as possible
// (docs/trainers.md, "Exact BPTT within a memory budget").
//
// The model. A pass has T steps and its start state S_0 is given. An advance runs steps [from, to) without a
// tape from a kept state and keeps S_to. A reversal records steps [from, to) on the tape from a kept state
// and backpropagates them, seeded with the gradient at S_to (to is where the gradient has reached), which
// leaves the gradient at S_from. Memory at any moment is the states kept besides S_0, plus the tape: a
// reversal's fixed part and its steps, or an advance's, which runs in chunks of at most `chunk` steps.
// Every step is reversed once, so a plan's cost is its advanced steps: the recomputation.
//
// The optimum is the dynamic programme of Gruslys et al. 2016 (BPTT-HSM) with a reversal of several steps
// as its leaf: C(t, j), the least steps run to reverse t steps from a kept state while j states are kept,
// is t when t steps fit the budget beside j states, else min over 1 <= y < t of y + C(t - y, j + 1) +
// C(y, j): advance y steps, keep that state, reverse the rest with it, drop it, reverse the first y.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rewind/trainers/trainer.hpp"

namespace rwd::trainers {

struct CheckpointCosts {
  std::int64_t state_bytes = 0;  // one kept state (every layer's tensors)
  std::int64_t fixed_bytes = 0;  // a reversal's tape that does not grow with its length
  std::int64_t step_bytes = 1;   // each step a reversal records
  std::int64_t advance_fixed_bytes = 0;
  std::int64_t advance_step_bytes = 0;  // each step an advance's chunk holds on the tape
  // Full BPTT's one window, from S_0 and not seeded at its end, which holds less per step than a reversal
  // seeded there (0: as a reversal). Percentages of a budget are of this.
  std::int64_t full_fixed_bytes = 0, full_step_bytes = 0;
};

struct CheckpointAction {
  enum class Kind { advance, reverse, drop };
  Kind kind = Kind::reverse;
  std::int64_t from = 0, to = 0;  // steps [from, to); drop: the state S_from
  std::int64_t chunk = 0;         // advance: steps per tape-less window
};

struct CheckpointPlan {
  std::int64_t steps = 0;
  std::int64_t budget_bytes = 0;   // 0: none asked (a uniform plan)
  std::int64_t forward_steps = 0;  // advanced and reversed: T for full BPTT
  std::int64_t peak_bytes = 0;     // the model's memory at its highest
  std::int64_t max_kept = 0;       // states kept at once besides S_0
  std::int64_t longest_reversal = 0;
  std::int64_t reversals = 0;
  // 1: the optimum. g > 1: the optimum among plans that keep states only every g steps counted from the
  // end, chosen when T is so long that the programme over single steps would take too long.
  std::int64_t granularity = 1;
  std::vector<CheckpointAction> actions;

  std::int64_t recomputed_steps() const { return forward_steps - steps; }
};

// The least budget a plan for `steps` steps fits: one kept state beside a one-step reversal or advance, or
// the whole sequence as one reversal if that is less.
REWIND_TRAINERS_EXPORT std::int64_t minimum_budget(std::int64_t steps, const CheckpointCosts& costs);
// The plan with the fewest advanced steps within budget_bytes. Throws std::invalid_argument below
// minimum_budget, stating it, or when the budget is so tight for T that planning would take too long.
REWIND_TRAINERS_EXPORT CheckpointPlan optimal_checkpoints(std::int64_t steps, const CheckpointCosts& costs,
                                                          std::int64_t budget_bytes);
// One level: states kept every `segment` steps, then the segments reversed last first (Chen et al. 2016).
REWIND_TRAINERS_EXPORT CheckpointPlan uniform_checkpoints(std::int64_t steps, std::int64_t segment,
                                                          const CheckpointCosts& costs);
// Replays a plan and fills in its forward_steps, peak_bytes, max_kept, longest_reversal and reversals.
// Throws std::logic_error naming the first action that uses a state not kept, reverses anything but the
// steps just before the gradient, or leaves a step unreversed.
REWIND_TRAINERS_EXPORT void account(CheckpointPlan& plan, const CheckpointCosts& costs);

// "advance [0, 40)", "reverse [40, 60)", "drop S_40".
REWIND_TRAINERS_EXPORT std::string describe(const CheckpointAction& action);

// Measures the costs on `data` from `start` (the tape is cleared, its peak reset, parameter gradients
// zeroed): reversals, advances and full BPTT's window over 1, 2, 4 and 8 steps, and the line above each's
// points, with room for each node's alignment padding.
REWIND_TRAINERS_EXPORT CheckpointCosts measure_checkpoint_costs(Model& model, const Dataset& data, Tape& tape,
                                                                const std::vector<Tensor>& start);

// "50MiB", "2GiB", "500kB", "123": bytes. Throws std::invalid_argument naming the text.
REWIND_TRAINERS_EXPORT std::int64_t parse_bytes(const std::string& text);
// A budget: bytes as parse_bytes, or "5%" of full_bytes.
REWIND_TRAINERS_EXPORT std::int64_t parse_budget(const std::string& text, std::int64_t full_bytes);
// What full BPTT's tape holds for `steps` steps.
inline std::int64_t full_tape_bytes(std::int64_t steps, const CheckpointCosts& costs) {
  if (costs.full_step_bytes > 0) return costs.full_fixed_bytes + steps * costs.full_step_bytes;
  return costs.fixed_bytes + steps * costs.step_bytes;
}

}  // namespace rwd::trainers
