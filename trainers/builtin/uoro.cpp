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

// The sum over i < n of a[i] * b[i] in double, in 8 partial sums: one running sum is a chain of dependent
// adds that does not vectorise, and these run over every parameter each step.
template <class A, class B>
double dot(const A* a, const B* b, std::int64_t n) {
  double part[8] = {};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) part[j] += static_cast<double>(a[i + j]) * static_cast<double>(b[i + j]);
  for (; i < n; ++i) part[0] += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  double total = 0;
  for (double p : part) total += p;
  return total;
}

double norm(std::vector<Tensor>& tensors) {
  double total = 0;
  for (Tensor& t : tensors) with_elements(t, [&](const auto* v, std::int64_t n) { total += dot(v, v, n); });
  return std::sqrt(total);
}

class Uoro final : public OnlineGradientTrainer {
 public:
  explicit Uoro(const TrainerSpec& spec)
      : OnlineGradientTrainer("uoro", spec.options.integer("k"), true),
        seed_(static_cast<std::uint64_t>(spec.options.integer("seed"))) {}

  // stored_state() holds the model's state tensors, then s~ (one per state tensor, the same shapes), then
  // theta~: what a resume needs to continue bitwise. theta~ is one vector for all the streams, laid out as
  // B rows of ceil(p / B) (zero-padded, element k at flat index k) so that checkpoints save and restore it
  // by rows as they do the state (a resume under another number of ranks does not fit, and is refused).
  void begin(Model& model, const Dataset& data, Tape& tape) override {
    if (model.config().dropout > 0 && autodiff::training())
      throw std::invalid_argument(
          "trainer 'uoro': the model has dropout before its head, which the step's loss is recomputed "
          "without; train it with dropout 0");
    Trainer::begin(model, data, tape);
    states_ = stored_.size();
    for (std::size_t i = 0; i < states_; ++i) stored_.emplace_back(stored_[i].shape(), stored_[i].dtype());
    parameters_ = parameter_count(model);
    const std::int64_t rows = data.batch();
    stored_.emplace_back(autodiff::Shape::matrix(rows, (parameters_ + rows - 1) / rows), stored_[0].dtype());
    sum_ = Tensor(autodiff::Shape::vector(parameters_), stored_[0].dtype());
  }

 private:
  // Step t. The parameters' gradients are zero on entry (OnlineGradientTrainer zeroes them per update) and
  // left zero, each pass over them that reads a backward's result clearing it, until the update's last step
  // puts the update's sum there.
  void step(Model& model, const Dataset& data, Tape& tape, std::int64_t t, UpdateStats& stats,
            std::vector<double>& /*gradient: summed in sum_*/) override {
    if (t == stats.first_step) with_elements(sum_, [](auto* sum, std::int64_t n) { std::fill_n(sum, n, 0); });
    advance(model, data, tape, t);
    loss_gradient(model, data, tape, t, stats);
    if (t + 1 == stats.end_step)
      with_elements(sum_, [&](const auto* sum, std::int64_t) {
        for_each_gradient(
            model, [&](auto* g, std::int64_t n, std::int64_t offset) { std::copy_n(sum + offset, n, g); });
      });
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

    nu_.resize(states_);
    std::vector<Seed> seeds;
    std::int64_t element = 0;
    for (std::size_t i = 0; i < states_; ++i) {
      if (nu_[i].shape() != next[i].shape()) nu_[i] = Tensor(next[i].shape(), tape.dtype());
      with_elements(nu_[i], [&](auto* v, std::int64_t n) {
        for (std::int64_t e = 0; e < n; ++e)
          v[e] = static_cast<std::remove_reference_t<decltype(*v)>>(sign(seed_, t, element++));
      });
      seeds.push_back({next[i], &nu_[i]});
      stored_[i] = next[i].value();  // read before backward, which may write gradients over values
    }
    tape.backward(seeds);  // nu^T dF/dtheta into the parameters' gradients

    double theta_norm = 0, nu_f_norm = 0;
    with_elements(stored_.back(),
                  [&](const auto* theta, std::int64_t) { theta_norm = dot(theta, theta, parameters_); });
    for_each_gradient(model, [&](const auto* g, std::int64_t n, std::int64_t) { nu_f_norm += dot(g, g, n); });
    const double rho0 = std::sqrt(std::sqrt(theta_norm) / (norm(j_s) + epsilon)) + epsilon;
    const double rho1 = std::sqrt(std::sqrt(nu_f_norm) / (norm(nu_) + epsilon)) + epsilon;
    for (std::size_t i = 0; i < states_; ++i)
      with_elements(stored_[states_ + i], [&](auto* s, std::int64_t n) {
        using T = std::remove_reference_t<decltype(*s)>;
        const T* js = j_s[i].data<T>();
        const T* v = nu_[i].data<T>();
        for (std::int64_t e = 0; e < n; ++e) s[e] = static_cast<T>(rho0 * js[e] + rho1 * v[e]);
      });
    with_elements(stored_.back(), [&](auto* theta, std::int64_t) {
      using T = std::remove_reference_t<decltype(*theta)>;
      const T keep = static_cast<T>(1 / rho0), add = static_cast<T>(1 / rho1);
      for_each_gradient(model, [&](auto* g, std::int64_t n, std::int64_t offset) {
        for (std::int64_t i = 0; i < n; ++i) {
          theta[offset + i] = theta[offset + i] * keep + static_cast<T>(g[i]) * add;
          g[i] = 0;
        }
      });
    });
  }

  // Step t's loss from the new state (leaves again, on a fresh window): its direct gradient and
  // (q . s~) theta~ added to gradient, its loss and correct predictions to stats.
  void loss_gradient(Model& model, const Dataset& data, Tape& tape, std::int64_t t, UpdateStats& stats) {
    tape.clear();
    ModelState state;
    model.begin(tape, std::vector<Tensor>(stored_.begin(), stored_.begin() + offset(1)), state, true);
    const std::vector<Var> leaves = flatten(state);
    const Var features = model.cell(model.config().layers - 1).output(state.back());
    WindowResult r;
    record_loss(model, tape, data, features, t, t + 1, t, static_cast<double>(stats.loss_count), r);
    if (!r.loss.valid()) return;
    tape.backward(r.loss);
    double q_s = 0;
    for (std::size_t i = 0; i < states_; ++i) {
      Tensor q = tape.grad(leaves[i]);
      with_elements(q, [&](const auto* qv, std::int64_t n) {
        with_elements(stored_[states_ + i], [&](const auto* s, std::int64_t) { q_s += dot(qv, s, n); });
      });
    }
    with_elements(stored_.back(), [&](const auto* theta, std::int64_t) {
      using T = std::remove_const_t<std::remove_reference_t<decltype(*theta)>>;
      T* sum = sum_.data<T>();
      const T scale = static_cast<T>(q_s);
      for_each_gradient(model, [&](auto* g, std::int64_t n, std::int64_t offset) {
        for (std::int64_t i = 0; i < n; ++i) {
          sum[offset + i] += g[i] + scale * theta[offset + i];
          g[i] = 0;
        }
      });
    });
    stats.loss += r.loss.item();
    stats.correct += r.correct;
  }

  std::ptrdiff_t offset(std::size_t block) const { return static_cast<std::ptrdiff_t>(block * states_); }

  std::uint64_t seed_;
  std::size_t states_ = 0;
  std::int64_t parameters_ = 0;
  std::vector<Tensor> nu_;  // this step's signs, one tensor per state tensor
  Tensor sum_;              // the update's gradient so far, flat in the parameters' type
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
