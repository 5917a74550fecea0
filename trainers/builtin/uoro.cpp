// Unbiased online recurrent optimization (Tallec & Ollivier 2018): RTRL's influence M_t = d s_t / d theta
// replaced by a rank-one estimate s~ theta~^T whose expectation is M_t. With the whole batch as one system
// (s the state of every stream, theta shared), each step is
//   s~' = rho0 J s~ + rho1 nu,   theta~' = theta~ / rho0 + nu^T (dF/dtheta) / rho1,
// nu random +-1, rho0 = sqrt(|theta~| / |J s~|) and rho1 = sqrt(|nu^T dF/dtheta| / |nu|) (the variance-
// minimising scales), and the gradient of the step's loss is (q . s~') theta~' plus its direct part, q the
// loss's gradient at the new state. J s~ is one Tape::jvp and nu^T dF/dtheta one backward: about a forward
// and a backward step each time step, O(n + p) memory. docs/trainers.md.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "online_gradient.hpp"
#include "rewind/autodiff/ops.hpp"
#include "rewind/plugins/plugin.hpp"

namespace rwd::trainers::builtin {
namespace {

using autodiff::Seed;
using autodiff::Tangent;

constexpr double epsilon = 1e-7;  // the paper's guard in rho0 and rho1

// nu's element i at step t: +-1 from a counter-based hash of (seed, t, i), so that a resumed run draws what
// an uninterrupted one would without storing a generator.
double sign(std::uint64_t seed, std::int64_t t, std::int64_t i) {
  std::uint64_t z = seed ^ (static_cast<std::uint64_t>(t) * 0x9e3779b97f4a7c15ULL) ^
                    (static_cast<std::uint64_t>(i) * 0xbf58476d1ce4e5b9ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return ((z ^ (z >> 31)) >> 63) != 0 ? 1.0 : -1.0;
}

double norm(const std::vector<Tensor>& tensors) {
  double total = 0;
  for (const Tensor& t : tensors)
    for (std::int64_t i = 0; i < t.numel(); ++i) total += t.get(i) * t.get(i);
  return std::sqrt(total);
}

class Uoro final : public OnlineGradientTrainer {
 public:
  explicit Uoro(const TrainerSpec& spec)
      : OnlineGradientTrainer("uoro", spec.options.integer("k")),
        seed_(static_cast<std::uint64_t>(spec.options.integer("seed"))) {}

  // stored_state() holds the model's state tensors, then s~ (one per state tensor, the same shapes), then
  // theta~: what a resume needs to continue bitwise. theta~ is one vector for all the streams, laid out as
  // B rows of ceil(p / B) (zero-padded, element k at flat index k) so that checkpoints save and restore it
  // by rows as they do the state (a resume under another number of ranks does not fit, and is refused).
  void begin(Model& model, const Dataset& data, Tape& tape) override {
    if (model.config().dropout > 0)
      throw std::invalid_argument(
          "trainer 'uoro': the model has dropout before its head, which the step's loss is recomputed "
          "without; train it with dropout 0");
    Trainer::begin(model, data, tape);
    states_ = stored_.size();
    for (std::size_t i = 0; i < states_; ++i) stored_.emplace_back(stored_[i].shape(), stored_[i].dtype());
    parameters_ = parameter_count(model);
    const std::int64_t rows = data.batch();
    stored_.emplace_back(autodiff::Shape::matrix(rows, (parameters_ + rows - 1) / rows), stored_[0].dtype());
  }

 private:
  double step(Model& model, const Dataset& data, Tape& tape, std::int64_t t, std::int64_t count,
              std::vector<double>& gradient) override {
    advance(model, data, tape, t);
    return loss_gradient(model, data, tape, t, count, gradient);
  }

  // Step t's transition: the new state, and s~, theta~ moved one step.
  void advance(Model& model, const Dataset& data, Tape& tape, std::int64_t t) {
    tape.clear();
    ModelState state;
    model.begin(tape, std::vector<Tensor>(stored_.begin(), stored_.begin() + offset(1)), state, true);
    const std::vector<Var> leaves = flatten(state);
    record_window(model, tape, data, state, {.begin = t, .end = t + 1, .loss_begin = t + 1});
    const std::vector<Var> next = flatten(state);
    std::vector<Tangent> directions;
    for (std::size_t i = 0; i < states_; ++i) directions.push_back({leaves[i], &stored_[states_ + i]});
    std::vector<Tensor> j_s = tape.jvp(directions, next);  // J s~

    std::vector<Tensor> nu;
    std::vector<Seed> seeds;
    std::int64_t element = 0;
    for (std::size_t i = 0; i < states_; ++i) {
      nu.emplace_back(next[i].shape(), tape.dtype());
      for (std::int64_t e = 0; e < nu[i].numel(); ++e) nu[i].set(e, sign(seed_, t, element++));
    }
    for (std::size_t i = 0; i < states_; ++i) seeds.push_back({next[i], &nu[i]});
    const std::vector<Tensor> new_state = values(next);
    zero_gradients(model);
    tape.backward(seeds);  // nu^T dF/dtheta into the parameters' gradients
    std::vector<double> nu_f(static_cast<std::size_t>(parameters_), 0.0);
    add_gradients(model, nu_f);

    Tensor& theta = stored_.back();
    double theta_norm = 0, nu_f_norm = 0;
    for (std::int64_t k = 0; k < parameters_; ++k) theta_norm += theta.get(k) * theta.get(k);
    for (double v : nu_f) nu_f_norm += v * v;
    const double rho0 = std::sqrt(std::sqrt(theta_norm) / (norm(j_s) + epsilon)) + epsilon;
    const double rho1 = std::sqrt(std::sqrt(nu_f_norm) / (norm(nu) + epsilon)) + epsilon;
    for (std::size_t i = 0; i < states_; ++i) {
      Tensor& s = stored_[states_ + i];
      for (std::int64_t e = 0; e < s.numel(); ++e) s.set(e, rho0 * j_s[i].get(e) + rho1 * nu[i].get(e));
      stored_[i] = new_state[i];
    }
    for (std::int64_t k = 0; k < parameters_; ++k)
      theta.set(k, theta.get(k) / rho0 + nu_f[static_cast<std::size_t>(k)] / rho1);
  }

  // Step t's loss from the new state (leaves again, on a fresh window): its direct gradient and
  // (q . s~) theta~ added to gradient; returns the loss.
  double loss_gradient(Model& model, const Dataset& data, Tape& tape, std::int64_t t, std::int64_t count,
                       std::vector<double>& gradient) {
    tape.clear();
    ModelState state;
    model.begin(tape, std::vector<Tensor>(stored_.begin(), stored_.begin() + offset(1)), state, true);
    const std::vector<Var> leaves = flatten(state);
    const Var features = model.cell(model.config().layers - 1).output(state.back());
    WindowResult r;
    record_loss(model, tape, data, features, t, t + 1, t, static_cast<double>(count), r);
    if (!r.loss.valid()) return 0;
    zero_gradients(model);
    tape.backward(r.loss);
    add_gradients(model, gradient);
    double q_s = 0;
    for (std::size_t i = 0; i < states_; ++i) {
      const Tensor q = tape.grad(leaves[i]);
      const Tensor& s = stored_[states_ + i];
      for (std::int64_t e = 0; e < q.numel(); ++e) q_s += q.get(e) * s.get(e);
    }
    const Tensor& theta = stored_.back();
    for (std::int64_t k = 0; k < parameters_; ++k)
      gradient[static_cast<std::size_t>(k)] += q_s * theta.get(k);
    return r.loss.item();
  }

  static std::vector<Tensor> values(const std::vector<Var>& vars) {
    std::vector<Tensor> out;
    for (const Var& v : vars) out.push_back(v.value());
    return out;
  }
  std::ptrdiff_t offset(std::size_t block) const { return static_cast<std::ptrdiff_t>(block * states_); }

  std::uint64_t seed_;
  std::size_t states_ = 0;
  std::int64_t parameters_ = 0;
};

std::unique_ptr<Trainer> create(const TrainerSpec& spec) {
  return std::make_unique<Uoro>(spec);
}

constexpr models::OptionSpec options[] = {
    steps_between_updates, {"seed", models::OptionType::integer, "1", "seed of the random signs nu"}};

}  // namespace

extern const plugins::Descriptor uoro_descriptor = plugins::trainer_descriptor(
    "uoro", "unbiased online recurrent optimization: a rank-one unbiased estimate of RTRL's gradient",
    options, create);

}  // namespace rwd::trainers::builtin

REWIND_PLUGIN(rwd::trainers::builtin::uoro_descriptor)
