#include "rewind/trainers/analysis.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "rewind/autodiff/ops.hpp"

namespace rwd::trainers {

SegmentView::SegmentView(const Dataset& base, std::int64_t offset, std::int64_t steps)
    : base_(base), offset_(offset), steps_(steps) {
  if (offset < 0 || steps < 1 || offset + steps > base.steps())
    throw std::invalid_argument("segment [" + std::to_string(offset) + ", " + std::to_string(offset + steps) +
                                ") lies outside the data's " + std::to_string(base.steps()) + " steps");
}

std::vector<Tensor> pass_gradient(Model& model, Trainer& trainer, const Dataset& data,
                                  const std::vector<Tensor>& start, Tape& tape, PassGradientStats* stats) {
  trainer.begin(model, data, tape);
  // The model's state first, then what the trainer carries beside it (rtrl's influence), as begin() left it.
  std::vector<Tensor> stored = trainer.stored_state();
  const std::size_t states = model.initial_state(data.batch()).size();
  if (start.size() != states)
    throw std::invalid_argument("pass_gradient: " + std::to_string(start.size()) +
                                " state tensors for a model with " + std::to_string(states));
  std::copy(start.begin(), start.end(), stored.begin());
  trainer.restore(0, 0, std::move(stored));
  const std::vector<autodiff::Parameter*> params = model.parameters();
  std::vector<Tensor> sum;
  for (const autodiff::Parameter* p : params) {
    sum.emplace_back(p->value().shape(), p->value().dtype());
    sum.back().fill(0.0);
  }
  const auto total = static_cast<double>(count_targets(data, 0, data.steps()));
  PassGradientStats local;
  while (!trainer.done()) {
    const UpdateStats s = trainer.next(model, data, tape);
    local.tape_peak_bytes = std::max(local.tape_peak_bytes, s.tape.peak_bytes);
    local.steps_recorded += s.steps_recorded;
    if (s.loss_count == 0) continue;  // no target, zero gradient: the loop takes no step either
    ++local.updates;
    const double weight = s.gradient_normalizer() / total;
    for (std::size_t i = 0; i < params.size(); ++i) {
      const Tensor& g = params[i]->grad();
      for (std::int64_t e = 0; e < g.numel(); ++e) sum[i].set(e, sum[i].get(e) + weight * g.get(e));
    }
  }
  if (stats) *stats = local;
  return sum;
}

std::vector<Tensor> forward_state(Model& model, const Dataset& data, const std::vector<Tensor>& start,
                                  Tape& tape) {
  autodiff::NoGradGuard no_grad;
  tape.clear();
  ModelState state;
  model.begin(tape, start, state);
  std::vector<Tensor> end;
  const std::int64_t T = data.steps();
  record_window(model, tape, data, state,
                {.begin = 0, .end = T, .loss_begin = T, .save_step = T, .saved = &end});
  tape.clear();
  return end;
}

GradientComparison compare_gradients(const std::vector<const Tensor*>& approx,
                                     const std::vector<const Tensor*>& exact) {
  double dot = 0, aa = 0, ee = 0, dd = 0;
  for (std::size_t i = 0; i < exact.size(); ++i)
    for (std::int64_t e = 0; e < exact[i]->numel(); ++e) {
      const double a = approx[i]->get(e), x = exact[i]->get(e);
      dot += a * x, aa += a * a, ee += x * x, dd += (a - x) * (a - x);
    }
  if (ee == 0 && aa == 0) return {1, 0, 1};
  if (ee == 0) return {NAN, INFINITY, INFINITY};
  return {aa == 0 ? 0.0 : dot / std::sqrt(aa * ee), std::sqrt(dd / ee), std::sqrt(aa / ee)};
}

namespace {

void check_segments(const Dataset& data, std::int64_t steps, std::int64_t segments) {
  if (steps < 1) throw std::invalid_argument("--steps must be >= 1, got " + std::to_string(steps));
  if (segments < 1) throw std::invalid_argument("--segments must be >= 1, got " + std::to_string(segments));
  if (steps * segments > data.steps())
    throw std::invalid_argument("--segments " + std::to_string(segments) + " x --steps " +
                                std::to_string(steps) + " = " + std::to_string(steps * segments) +
                                " steps per stream, the data has " + std::to_string(data.steps()));
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TruncationAnalysis analyze_truncation(Model& model, const Dataset& data, std::int64_t steps,
                                      std::int64_t segments, const std::vector<TruncationSetting>& settings,
                                      const TrainerMaker& make_trainer) {
  check_segments(data, steps, segments);
  if (settings.empty()) throw std::invalid_argument("--k: no truncation lengths given");
  for (const TruncationSetting& s : settings) {
    if (s.seeds < 1) throw std::invalid_argument("--seeds must be >= 1, got " + std::to_string(s.seeds));
    if (!s.trainer.empty()) continue;
    if (s.k1 < 1 || s.k2 < 1)
      throw std::invalid_argument("--k1/--k2: truncation lengths must be positive, got k1 = " +
                                  std::to_string(s.k1) + ", k2 = " + std::to_string(s.k2));
    if (s.k1 > s.k2)
      throw std::invalid_argument("--k1/--k2: need k1 <= k2, got k1 = " + std::to_string(s.k1) +
                                  ", k2 = " + std::to_string(s.k2));
    if (s.k2 > steps)
      throw std::invalid_argument("--k2: " + std::to_string(s.k2) + " exceeds --steps " +
                                  std::to_string(steps) + " (k >= T is full BPTT already)");
  }
  // The same function for every trainer: dropout masks depend on the window, so they would differ.
  autodiff::EvalModeGuard eval;
  TruncationAnalysis out;
  for (const autodiff::Parameter* p : model.parameters()) out.parameters.push_back(p->name());
  out.steps = steps, out.segments = segments;
  out.results.resize(settings.size());
  for (std::size_t i = 0; i < settings.size(); ++i) out.results[i].setting = settings[i];
  Tape tape(model.config().dtype);
  std::vector<Tensor> start = model.initial_state(data.batch());
  for (std::int64_t seg = 0; seg < segments; ++seg) {
    const SegmentView view(data, seg * steps, steps);
    std::vector<Tensor> next = forward_state(model, view, start, tape);
    if (count_targets(view, 0, steps) == 0) {  // no loss, no gradient to compare
      start = std::move(next);
      continue;
    }
    ++out.segments_used;
    auto full = make_trainer("full", {});
    PassGradientStats stats;
    auto began = std::chrono::steady_clock::now();
    const std::vector<Tensor> g = pass_gradient(model, *full, view, start, tape, &stats);
    out.full_seconds += seconds_since(began);
    out.full_tape_peak_bytes = std::max(out.full_tape_peak_bytes, stats.tape_peak_bytes);
    for (TruncationResult& r : out.results)
      for (std::int64_t seed = 1; seed <= r.setting.seeds; ++seed) {
        std::map<std::string, std::string> options;
        if (r.setting.trainer.empty())
          options = {{"k1", std::to_string(r.setting.k1)}, {"k2", std::to_string(r.setting.k2)}};
        else if (r.setting.seeds > 1)
          options = {{"seed", std::to_string(seed)}};
        auto trainer = make_trainer(r.setting.trainer.empty() ? "truncated" : r.setting.trainer, options);
        began = std::chrono::steady_clock::now();
        const std::vector<Tensor> gk = pass_gradient(model, *trainer, view, start, tape, &stats);
        r.seconds += seconds_since(began);
        r.tape_peak_bytes = std::max(r.tape_peak_bytes, stats.tape_peak_bytes);
        TruncationSegment segment;
        std::vector<const Tensor*> all_k, all;
        for (std::size_t p = 0; p < g.size(); ++p) {
          segment.parameters.push_back(compare_gradients({&gk[p]}, {&g[p]}));
          all_k.push_back(&gk[p]), all.push_back(&g[p]);
        }
        segment.overall = compare_gradients(all_k, all);
        r.segments.push_back(std::move(segment));
      }
    start = std::move(next);
  }
  for (autodiff::Parameter* p : model.parameters()) p->zero_grad();
  if (out.segments_used == 0)
    throw std::invalid_argument("no segment of --steps " + std::to_string(steps) +
                                " has a target: nothing to compare (give longer --steps or more --segments)");
  return out;
}

namespace {

bool row_counted(const Step& s, std::int64_t b) {
  const auto i = static_cast<std::size_t>(b);
  if (s.target_values == nullptr) return s.target_tokens[i] != no_target;
  return s.has_loss && (s.loss_rows.empty() || s.loss_rows[i] != 0);
}

// Adds each counted row's norm of the gradient over every state tensor (every layer's h and c).
void add_row_norms(const std::vector<Tensor>& grads, const Step& target_step, std::int64_t batch, double& sum,
                   std::int64_t& count) {
  for (std::int64_t b = 0; b < batch; ++b) {
    if (!row_counted(target_step, b)) continue;
    double squares = 0;
    for (const Tensor& g : grads) {
      const std::int64_t cols = g.shape().cols;
      for (std::int64_t c = 0; c < cols; ++c) squares += g.get(b * cols + c) * g.get(b * cols + c);
    }
    sum += std::sqrt(squares);
    ++count;
  }
}

std::vector<Tensor> leaf_grads(const Tape& tape, const ModelState& leaves) {
  std::vector<Tensor> out;
  for (const models::State& layer : leaves)
    for (const Var& v : layer) out.push_back(tape.grad(v));
  return out;
}

}  // namespace

std::vector<double> truncation_bias(const std::vector<double>& norms, double lambda) {
  // norms[j] is lag j = 0..J; bias[k - 1] for k = 1..J.
  std::vector<double> bias(norms.empty() ? 0 : norms.size() - 1, 1.0);
  if (bias.empty()) return bias;
  // Beyond lag J the geometric tail of the last norm: none when that norm is zero (every path back was cut,
  // by resets), unbounded when the norms do not decay.
  double tail = 0;
  if (norms.back() > 0) {
    if (!(lambda >= 0 && lambda < 1)) return bias;
    tail = norms.back() * lambda / (1 - lambda);
  }
  double total = tail;
  for (double n : norms) total += n;
  if (!(total > 0)) return bias;
  double from_k = tail;  // the mass a k-step unroll drops: lags k and beyond
  for (auto k = static_cast<std::ptrdiff_t>(bias.size()); k >= 1; --k) {
    from_k += norms[static_cast<std::size_t>(k)];
    bias[static_cast<std::size_t>(k - 1)] = from_k / total;
  }
  return bias;
}

std::int64_t suggested_truncation(const std::vector<double>& norms, double lambda, double tolerance) {
  const std::vector<double> bias = truncation_bias(norms, lambda);
  for (std::size_t k = 1; k <= bias.size(); ++k)
    if (bias[k - 1] <= tolerance) return static_cast<std::int64_t>(k);
  if (norms.size() < 2 || !(lambda < 1) || !(lambda > 0) || !(norms.back() > 0)) return -1;
  // Beyond J only the tail is left: phi_J lambda^(k - J) / (1 - lambda) <= tolerance * total.
  double total = norms.back() * lambda / (1 - lambda);
  for (double n : norms) total += n;
  const auto J = static_cast<double>(norms.size() - 1);
  const double extra = std::log(tolerance * total * (1 - lambda) / norms.back()) / std::log(lambda);
  return static_cast<std::int64_t>(J + std::max(1.0, std::ceil(extra)));
}

namespace {

struct LagSums {
  std::vector<double> sum;
  std::vector<std::int64_t> count;
  std::int64_t loss_steps = 0;
};

// Adds the per-row norms of dL_t / dh_{t-j}, j = 0..lags, for the latest `loss_steps` steps t of `view` that
// have targets, entered from `start`. Returns the state after the view.
std::vector<Tensor> add_lag_norms(Model& model, const Dataset& view, const std::vector<Tensor>& start,
                                  std::int64_t lags, std::int64_t loss_steps, Tape& tape, LagSums& sums) {
  const std::int64_t steps = view.steps(), batch = view.batch();
  // S[s]: the state before step s of the view, from one forward pass without history.
  std::vector<std::vector<Tensor>> S(static_cast<std::size_t>(steps + 1));
  S[0] = start;
  {
    autodiff::NoGradGuard no_grad;
    for (std::int64_t s = 0; s < steps; ++s) {
      tape.clear();
      ModelState state;
      model.begin(tape, S[static_cast<std::size_t>(s)], state);
      record_window(model, tape, view, state,
                    {.begin = s,
                     .end = s + 1,
                     .loss_begin = s + 1,
                     .save_step = s + 1,
                     .saved = &S[static_cast<std::size_t>(s + 1)]});
    }
  }
  std::int64_t measured = 0;
  for (std::int64_t t = steps - 1; t >= 0 && measured < loss_steps; --t) {
    if (count_targets(view, t, t + 1) == 0) continue;
    ++measured;
    const Step target_step = view.step(t);
    // dL_t / dS_{t+1}, S_{t+1} = h_t, the state the loss reads: lag 0, which every unroll keeps.
    tape.clear();
    ModelState read;
    model.begin(tape, S[static_cast<std::size_t>(t + 1)], read, true);
    WindowResult head;
    const int top = model.config().layers - 1;
    record_loss(model, tape, view, model.cell(top).output(read[static_cast<std::size_t>(top)]), t, t + 1, t,
                1, head);
    tape.backward(head.loss);
    add_row_norms(leaf_grads(tape, read), target_step, batch, sums.sum[0], sums.count[0]);
    // dL_t / dS_t, S_t = h_{t-1}: lag 1. Then one step back at a time, as checkpointed BPTT does: record
    // step s from its state as a leaf, seed its end with the gradient found so far, read the leaf's.
    tape.clear();
    ModelState state;
    model.begin(tape, S[static_cast<std::size_t>(t)], state, true);
    ModelState leaves = state;
    const WindowResult w =
        record_window(model, tape, view, state, {.begin = t, .end = t + 1, .loss_begin = t, .normalizer = 1});
    tape.backward(w.loss);
    std::vector<Tensor> grad = leaf_grads(tape, leaves);
    add_row_norms(grad, target_step, batch, sums.sum[1], sums.count[1]);
    for (std::int64_t j = 2; j <= lags && t - j + 1 >= 0; ++j) {
      const std::int64_t s = t - j + 1;  // dL_t / dS_s, S_s = h_{t-j}
      tape.clear();
      ModelState st;
      model.begin(tape, S[static_cast<std::size_t>(s)], st, true);
      leaves = st;
      record_window(model, tape, view, st, {.begin = s, .end = s + 1, .loss_begin = s + 1});
      std::vector<autodiff::Seed> seeds;
      std::size_t k = 0;
      for (const models::State& layer : st)
        for (const Var& v : layer) {
          if (v.requires_grad()) seeds.push_back({v, &grad[k]});
          ++k;
        }
      if (seeds.empty()) break;  // a reset for every row: nothing further back
      tape.backward(seeds);
      grad = leaf_grads(tape, leaves);
      add_row_norms(grad, target_step, batch, sums.sum[static_cast<std::size_t>(j)],
                    sums.count[static_cast<std::size_t>(j)]);
    }
  }
  sums.loss_steps += measured;
  tape.clear();
  for (autodiff::Parameter* p : model.parameters()) p->zero_grad();
  return std::move(S.back());
}

HorizonAnalysis finish(const LagSums& sums, double tolerance) {
  HorizonAnalysis out;
  out.tolerance = tolerance;
  out.loss_steps = sums.loss_steps;
  out.samples = sums.count;
  out.mean_norm.resize(sums.sum.size());
  for (std::size_t j = 0; j < sums.sum.size(); ++j)
    out.mean_norm[j] = out.samples[j] > 0 ? sums.sum[j] / static_cast<double>(out.samples[j]) : 0.0;
  // Least squares on the lags j >= 1 with signal: the decay through the recurrence (lag 0 is the head's
  // gradient, not a step of it); a zero (past a reset) says nothing about the rate.
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (std::size_t j = 1; j < out.mean_norm.size(); ++j) {
    if (!(out.mean_norm[j] > 0)) continue;
    const double x = static_cast<double>(j), y = std::log(out.mean_norm[j]);
    n += 1, sx += x, sy += y, sxx += x * x, sxy += x * y;
  }
  if (n >= 2 && n * sxx - sx * sx > 0) {
    const double slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    out.lambda = std::exp(slope);
    out.scale = std::exp((sy - slope * sx) / n);
  } else {
    out.lambda = NAN;
  }
  // Trailing lags without samples (beyond every loss step's history) are left out of the estimate.
  std::vector<double> norms = out.mean_norm;
  while (!norms.empty() && out.samples[norms.size() - 1] == 0) norms.pop_back();
  out.bias = truncation_bias(norms, out.lambda);
  out.suggested_k = suggested_truncation(norms, out.lambda, tolerance);
  return out;
}

void check_horizon(std::int64_t lags, double tolerance, std::int64_t loss_steps) {
  if (lags < 2)
    throw std::invalid_argument("--lags must be >= 2 to fit a decay, got " + std::to_string(lags));
  if (!(tolerance > 0 && tolerance < 1))
    throw std::invalid_argument("--tolerance must lie in (0, 1), got " + std::to_string(tolerance));
  if (loss_steps < 1)
    throw std::invalid_argument("--loss-steps must be >= 1, got " + std::to_string(loss_steps));
}

}  // namespace

HorizonAnalysis analyze_horizon(Model& model, const Dataset& data, std::int64_t steps, std::int64_t segments,
                                std::int64_t lags, double tolerance, std::int64_t loss_steps_per_segment) {
  check_segments(data, steps, segments);
  check_horizon(lags, tolerance, loss_steps_per_segment);
  autodiff::EvalModeGuard eval;
  LagSums sums{std::vector<double>(static_cast<std::size_t>(lags + 1), 0.0),
               std::vector<std::int64_t>(static_cast<std::size_t>(lags + 1), 0), 0};
  Tape tape(model.config().dtype);
  std::vector<Tensor> start = model.initial_state(data.batch());
  for (std::int64_t seg = 0; seg < segments; ++seg)
    start = add_lag_norms(model, SegmentView(data, seg * steps, steps), start, lags, loss_steps_per_segment,
                          tape, sums);
  if (sums.loss_steps == 0)
    throw std::invalid_argument("no step of the " + std::to_string(segments) + " segment(s) has a target");
  return finish(sums, tolerance);
}

HorizonAnalysis estimate_horizon(Model& model, const Dataset& view, const std::vector<Tensor>& start,
                                 std::int64_t lags, double tolerance, std::int64_t loss_steps, Tape& tape) {
  check_horizon(lags, tolerance, loss_steps);
  autodiff::EvalModeGuard eval;
  LagSums sums{std::vector<double>(static_cast<std::size_t>(lags + 1), 0.0),
               std::vector<std::int64_t>(static_cast<std::size_t>(lags + 1), 0), 0};
  add_lag_norms(model, view, start, lags, loss_steps, tape, sums);
  return finish(sums, tolerance);
}

}  // namespace rwd::trainers
