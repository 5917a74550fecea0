#include "rewind/trainers/schedule.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>

#include "rewind/autodiff/ops.hpp"

namespace rwd::trainers {
namespace {

constexpr std::int64_t unreachable = std::numeric_limits<std::int64_t>::max() / 4;  // three still add up
// The programme's work is about depth x n^2 / 2; past this many, states are kept on a coarser grid.
constexpr double programme_work_limit = 4e8;
// Past this even on the coarsest grid allowed (a tight budget for a long T), planning is refused.
constexpr double programme_work_refused = 4e9;

// Most steps a reversal may record while j states are kept (0: none fits).
std::int64_t reversal_limit(const CheckpointCosts& c, std::int64_t budget, std::int64_t j) {
  const std::int64_t room = budget - c.fixed_bytes - j * c.state_bytes;
  return room < c.step_bytes ? 0 : room / std::max<std::int64_t>(1, c.step_bytes);
}

// Steps per tape-less window of an advance that makes the (j + 1)-th kept state (0: none fits).
std::int64_t advance_limit(const CheckpointCosts& c, std::int64_t budget, std::int64_t j) {
  const std::int64_t room = budget - c.advance_fixed_bytes - (j + 1) * c.state_bytes;
  if (room < c.advance_step_bytes) return 0;
  return c.advance_step_bytes > 0 ? room / c.advance_step_bytes : std::numeric_limits<std::int64_t>::max();
}

class Programme {
 public:
  Programme(std::int64_t steps, const CheckpointCosts& costs, std::int64_t budget, std::int64_t g)
      : steps_(steps), g_(g), n_((steps + g - 1) / g), costs_(costs), budget_(budget) {
    for (std::int64_t j = 0; j < n_; ++j) {
      const std::int64_t leaf = reversal_limit(costs, budget, j) / g;
      if (leaf < 1) break;
      leaf_.push_back(leaf);
    }
    cost_.assign(leaf_.size(), std::vector<std::int64_t>(static_cast<std::size_t>(n_ + 1), unreachable));
    for (auto j = static_cast<std::int64_t>(leaf_.size()) - 1; j >= 0; --j) {
      std::int64_t* here = row(j);
      const std::int64_t* deeper = splits(j) ? row(j + 1) : nullptr;
      here[0] = 0;
      for (std::int64_t t = 1; t <= n_; ++t) {
        if (leaf(j, t)) {
          here[t] = t;
          continue;
        }
        if (deeper == nullptr) continue;
        std::int64_t best = unreachable;
        for (std::int64_t y = 1; y < t; ++y) best = std::min(best, y + deeper[t - y] + here[y]);
        here[t] = std::min(best, unreachable);
      }
    }
  }

  static double work(std::int64_t steps, const CheckpointCosts& costs, std::int64_t budget, std::int64_t g) {
    const double n = std::ceil(static_cast<double>(steps) / static_cast<double>(g));
    double depth = 0;
    while (depth < n && reversal_limit(costs, budget, static_cast<std::int64_t>(depth)) / g >= 1) ++depth;
    return depth * n * n / 2;
  }

  bool feasible() const { return !leaf_.empty() && cost_[0][static_cast<std::size_t>(n_)] < unreachable; }

  std::vector<CheckpointAction> actions() const {
    using Kind = CheckpointAction::Kind;
    struct Task {
      std::int64_t begin, end,
          depth;  // reverse blocks [begin, end) with `depth` states kept; depth < 0: drop
    };
    std::vector<CheckpointAction> out;
    std::vector<Task> todo{{0, n_, 0}};
    while (!todo.empty()) {
      const Task task = todo.back();
      todo.pop_back();
      if (task.depth < 0) {
        out.push_back({.kind = Kind::drop, .from = position(task.begin)});
        continue;
      }
      const std::int64_t t = task.end - task.begin;
      if (leaf(task.depth, t)) {
        out.push_back({.kind = Kind::reverse, .from = position(task.begin), .to = position(task.end)});
        continue;
      }
      const std::int64_t* here = row(task.depth);
      const std::int64_t* deeper = row(task.depth + 1);
      std::int64_t y = 1;
      while (y + deeper[t - y] + here[y] != here[t]) ++y;
      const std::int64_t mid = task.begin + y;
      const std::int64_t from = position(task.begin), to = position(mid);
      out.push_back({.kind = Kind::advance,
                     .from = from,
                     .to = to,
                     .chunk = std::min(to - from, advance_limit(costs_, budget_, task.depth))});
      // Executed last first: the later steps, then the state at mid is dropped, then the earlier steps.
      todo.push_back({task.begin, mid, task.depth});
      todo.push_back({mid, 0, -1});
      todo.push_back({mid, task.end, task.depth + 1});
    }
    return out;
  }

 private:
  // Whether t blocks are reversed in one stretch beside j kept states. All of them from S_0 is full BPTT's
  // window, on its own line, which the caller found too large.
  bool leaf(std::int64_t j, std::int64_t t) const {
    return t <= leaf_[static_cast<std::size_t>(j)] && !(j == 0 && t == n_);
  }
  // A split at depth j keeps one more state, so it needs a reversal and an advance to fit beside j + 1.
  bool splits(std::int64_t j) const {
    return j + 1 < static_cast<std::int64_t>(leaf_.size()) && advance_limit(costs_, budget_, j) >= 1;
  }
  std::int64_t* row(std::int64_t j) { return cost_[static_cast<std::size_t>(j)].data(); }
  const std::int64_t* row(std::int64_t j) const { return cost_[static_cast<std::size_t>(j)].data(); }
  // Block edges counted from the end, so that only the first block is short.
  std::int64_t position(std::int64_t block) const {
    return std::max<std::int64_t>(0, steps_ - (n_ - block) * g_);
  }

  std::int64_t steps_, g_, n_;
  const CheckpointCosts& costs_;
  std::int64_t budget_;
  std::vector<std::int64_t> leaf_;               // leaf_[j]: most blocks a reversal holds beside j states
  std::vector<std::vector<std::int64_t>> cost_;  // cost_[j][t]: blocks run to reverse t blocks at depth j
};

}  // namespace

std::int64_t minimum_budget(std::int64_t steps, const CheckpointCosts& costs) {
  const std::int64_t whole = full_tape_bytes(steps, costs);  // no state kept
  if (steps <= 1) return whole;
  return std::min(whole, std::max(costs.fixed_bytes + costs.step_bytes,
                                  costs.advance_fixed_bytes + costs.advance_step_bytes) +
                             costs.state_bytes);
}

CheckpointPlan optimal_checkpoints(std::int64_t steps, const CheckpointCosts& costs,
                                   std::int64_t budget_bytes) {
  if (steps < 1) throw std::invalid_argument("checkpoint plan: the sequence needs at least one step");
  const std::int64_t least = minimum_budget(steps, costs);
  if (budget_bytes < least)
    throw std::invalid_argument("memory budget of " + std::to_string(budget_bytes) +
                                " bytes is below the minimum of " + std::to_string(least) +
                                " bytes (one kept state of " + std::to_string(costs.state_bytes) +
                                " and one step's reversal or advance)");
  CheckpointPlan plan;
  plan.steps = steps;
  plan.budget_bytes = budget_bytes;
  if (full_tape_bytes(steps, costs) <= budget_bytes) {  // full BPTT fits: nothing to recompute
    plan.actions = {{.kind = CheckpointAction::Kind::reverse, .from = 0, .to = steps}};
  } else {
    // The coarsest grid that keeps the programme short is still bounded by the longest reversal beside one
    // kept state, so that the grid never rules out every plan.
    const std::int64_t finest_leaf = std::max<std::int64_t>(1, reversal_limit(costs, budget_bytes, 1));
    std::int64_t g = 1;
    while (g < finest_leaf && Programme::work(steps, costs, budget_bytes, g) > programme_work_limit) ++g;
    if (Programme::work(steps, costs, budget_bytes, g) > programme_work_refused)
      throw std::invalid_argument("memory budget of " + std::to_string(budget_bytes) + " bytes for " +
                                  std::to_string(steps) +
                                  " steps: the plan would take too long to find (and to run: each step is "
                                  "recomputed many times); give a larger budget");
    const Programme programme(steps, costs, budget_bytes, g);
    if (!programme.feasible())
      throw std::logic_error("checkpoint plan: no plan within a budget above the minimum");
    plan.granularity = g;
    plan.actions = programme.actions();
  }
  account(plan, costs);
  if (plan.peak_bytes > budget_bytes) throw std::logic_error("checkpoint plan: its peak exceeds the budget");
  return plan;
}

CheckpointPlan uniform_checkpoints(std::int64_t steps, std::int64_t segment, const CheckpointCosts& costs) {
  using Kind = CheckpointAction::Kind;
  if (steps < 1) throw std::invalid_argument("checkpoint plan: the sequence needs at least one step");
  const std::int64_t c = std::clamp<std::int64_t>(segment, 1, steps);
  CheckpointPlan plan;
  plan.steps = steps;
  std::int64_t last = 0;
  for (; last + c < steps; last += c)
    plan.actions.push_back({.kind = Kind::advance, .from = last, .to = last + c, .chunk = c});
  for (std::int64_t begin = last; begin >= 0; begin -= c) {
    plan.actions.push_back({.kind = Kind::reverse, .from = begin, .to = std::min(begin + c, steps)});
    if (begin > 0) plan.actions.push_back({.kind = Kind::drop, .from = begin});
  }
  account(plan, costs);
  return plan;
}

void account(CheckpointPlan& plan, const CheckpointCosts& costs) {
  using Kind = CheckpointAction::Kind;
  std::set<std::int64_t> kept;
  std::int64_t frontier = plan.steps;
  plan.forward_steps = plan.peak_bytes = plan.max_kept = plan.longest_reversal = plan.reversals = 0;
  auto refuse = [](const CheckpointAction& a, const std::string& why) {
    throw std::logic_error("checkpoint plan: " + describe(a) + " " + why);
  };
  for (const CheckpointAction& a : plan.actions) {
    const auto held = static_cast<std::int64_t>(kept.size());
    if (a.kind == Kind::drop) {
      if (kept.erase(a.from) == 0) refuse(a, "drops a state not kept");
      continue;
    }
    if (a.from != 0 && kept.count(a.from) == 0) refuse(a, "starts from a state not kept");
    if (a.from >= a.to) refuse(a, "is empty");
    std::int64_t bytes = 0;
    if (a.kind == Kind::advance) {
      if (a.to >= frontier) refuse(a, "runs into steps already reversed");
      if (a.chunk < 1 || kept.count(a.to) != 0) refuse(a, "has no chunk or keeps a state twice");
      bytes = (held + 1) * costs.state_bytes + costs.advance_fixed_bytes +
              std::min(a.chunk, a.to - a.from) * costs.advance_step_bytes;
      kept.insert(a.to);
    } else {
      if (a.to != frontier)
        refuse(a, "does not end where the gradient is (step " + std::to_string(frontier) + ")");
      // From S_0 to the end, with no gradient in and none out, it is full BPTT's window.
      bytes = a.from == 0 && a.to == plan.steps
                  ? full_tape_bytes(plan.steps, costs)
                  : held * costs.state_bytes + costs.fixed_bytes + (a.to - a.from) * costs.step_bytes;
      frontier = a.from;
      plan.longest_reversal = std::max(plan.longest_reversal, a.to - a.from);
      ++plan.reversals;
    }
    plan.forward_steps += a.to - a.from;
    plan.peak_bytes = std::max(plan.peak_bytes, bytes);
    plan.max_kept = std::max(plan.max_kept, static_cast<std::int64_t>(kept.size()));
  }
  if (frontier != 0)
    throw std::logic_error("checkpoint plan: steps before " + std::to_string(frontier) +
                           " are never reversed");
  if (!kept.empty())
    throw std::logic_error("checkpoint plan: S_" + std::to_string(*kept.begin()) + " is never dropped");
}

namespace {
// The data with a target in every row of every step, so that a measured window records the head and the loss
// over all its steps, as a reversal with any target in it does, whichever steps of the real data count.
class EveryStepCounted final : public Dataset {
 public:
  explicit EveryStepCounted(const Dataset& data)
      : data_(data),
        tokens_(static_cast<std::size_t>(data.batch()), 0),
        values_(autodiff::Shape::matrix(data.batch(), std::max<std::int64_t>(1, data.output_size())),
                autodiff::DType::f64) {}
  std::int64_t batch() const override { return data_.batch(); }
  std::int64_t steps() const override { return data_.steps(); }
  std::int64_t vocab_size() const override { return data_.vocab_size(); }
  std::int64_t input_size() const override { return data_.input_size(); }
  std::int64_t output_size() const override { return data_.output_size(); }
  Step step(std::int64_t t) const override {
    Step s = data_.step(t);
    s.target_tokens = tokens_;
    s.target_values = &values_;
    s.has_loss = true;
    s.loss_rows = {};
    return s;
  }

 private:
  const Dataset& data_;
  std::vector<std::int32_t> tokens_;
  Tensor values_;
};
}  // namespace

std::string describe(const CheckpointAction& a) {
  switch (a.kind) {
    case CheckpointAction::Kind::advance:
      return "advance [" + std::to_string(a.from) + ", " + std::to_string(a.to) + ")";
    case CheckpointAction::Kind::reverse:
      return "reverse [" + std::to_string(a.from) + ", " + std::to_string(a.to) + ")";
    case CheckpointAction::Kind::drop:
      return "drop S_" + std::to_string(a.from);
  }
  return "?";
}

CheckpointCosts measure_checkpoint_costs(Model& model, const Dataset& real_data, Tape& tape,
                                         const std::vector<Tensor>& start) {
  const EveryStepCounted data(real_data);
  // Peak tape bytes of a window of `steps` steps, reversed (recorded and backpropagated) or advanced.
  std::int64_t state_bytes = 0;
  enum class Kind { reversal, advance, full };
  auto window = [&](std::int64_t steps, Kind kind) {
    std::optional<autodiff::NoGradGuard> no_grad;
    if (kind == Kind::advance) no_grad.emplace();
    tape.clear();
    tape.reset_peak();
    ModelState state;
    model.begin(tape, start, state, kind == Kind::reversal);
    std::vector<Tensor> end;
    const WindowResult w = record_window(model, tape, data, state,
                                         {.begin = 0,
                                          .end = steps,
                                          .loss_begin = kind == Kind::advance ? steps : 0,
                                          .save_step = steps,
                                          .saved = &end});
    state_bytes = 0;
    for (const Tensor& s : end) state_bytes += static_cast<std::int64_t>(s.bytes());
    if (kind == Kind::full && w.loss.valid() && w.loss.requires_grad()) tape.backward(w.loss);
    if (kind ==
        Kind::reversal) {  // seeded as a reversal before the last is: the loss and a gradient at the end
      std::vector<autodiff::Seed> seeds;
      if (w.loss.valid() && w.loss.requires_grad()) seeds.push_back({w.loss, nullptr});
      std::vector<Tensor> zeros;
      for (const Tensor& s : end) zeros.emplace_back(s.shape(), s.dtype());
      std::size_t k = 0;
      for (const models::State& layer : state)
        for (const Var& v : layer) {
          if (v.requires_grad()) seeds.push_back({v, &zeros[k]});
          ++k;
        }
      if (!seeds.empty()) tape.backward(seeds);
    }
    // Another length pads its allocations to the arena's alignment differently: allow each node that.
    return static_cast<std::int64_t>(tape.memory().peak_bytes +
                                     tape.memory().nodes * autodiff::Arena::max_align);
  };
  // The line through the measured points that lies above all of them: slope the steepest between
  // neighbours, intercept the largest the points allow.
  auto fit = [&](Kind kind, std::int64_t& fixed, std::int64_t& per_step) {
    std::vector<std::pair<std::int64_t, std::int64_t>> points;
    for (std::int64_t steps : {1, 2, 4, 8})
      if (steps <= data.steps()) points.emplace_back(steps, window(steps, kind));
    per_step = points.size() > 1 ? 1 : std::max<std::int64_t>(1, points[0].second);
    for (std::size_t i = 1; i < points.size(); ++i) {
      const std::int64_t rise = points[i].second - points[i - 1].second,
                         run = points[i].first - points[i - 1].first;
      per_step = std::max(per_step, (rise + run - 1) / run);
    }
    fixed = 0;
    for (auto [steps, bytes] : points) fixed = std::max(fixed, bytes - steps * per_step);
  };
  CheckpointCosts costs;
  fit(Kind::reversal, costs.fixed_bytes, costs.step_bytes);
  costs.fixed_bytes += state_bytes;  // the gradient a reversal receives at its end, held beside the tape
  fit(Kind::advance, costs.advance_fixed_bytes, costs.advance_step_bytes);
  costs.advance_fixed_bytes += state_bytes;  // advances after the first reversal carry its gradient too
  fit(Kind::full, costs.full_fixed_bytes, costs.full_step_bytes);
  costs.state_bytes = state_bytes;
  tape.clear();
  tape.reset_peak();
  for (autodiff::Parameter* p : model.parameters()) p->zero_grad();
  return costs;
}

namespace {
// The number `text` starts with and the characters it takes; 0 characters when it starts with none.
std::pair<double, std::size_t> leading_number(const std::string& text) {
  std::size_t used = 0;
  try {
    const double value = std::stod(text, &used);
    return {value, used};
  } catch (const std::exception&) {
    return {0, 0};
  }
}
}  // namespace

std::int64_t parse_bytes(const std::string& text) {
  const auto [value, used] = leading_number(text);
  std::string unit = text.substr(used);
  while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.front()))) unit.erase(0, 1);
  static const std::pair<const char*, double> units[] = {
      {"", 1},          {"B", 1},           {"kB", 1e3},        {"KB", 1e3},           {"MB", 1e6},
      {"GB", 1e9},      {"KiB", 1024.0},    {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"K", 1024.0},
      {"M", 1048576.0}, {"G", 1073741824.0}};
  for (auto [name, scale] : units)
    if (used > 0 && unit == name && std::isfinite(value) && value >= 0 && value * scale < 9e18)
      return static_cast<std::int64_t>(std::llround(value * scale));
  throw std::invalid_argument("'" + text + "' is not a size in bytes (e.g. 123, 500kB, 50MiB, 2GiB)");
}

std::int64_t parse_budget(const std::string& text, std::int64_t full_bytes) {
  if (text.empty() || text.back() != '%') return parse_bytes(text);
  const auto [percent, used] = leading_number(text);
  if (used + 1 != text.size() || !(percent > 0 && percent <= 100))
    throw std::invalid_argument("'" + text +
                                "' is not a budget (bytes such as 50MiB, or a percentage of full "
                                "BPTT's tape in (0, 100]%)");
  return static_cast<std::int64_t>(std::floor(percent / 100 * static_cast<double>(full_bytes)));
}

}  // namespace rwd::trainers
