// Real-time recurrent learning (Williams & Zipser 1989): the exact online gradient. It carries, for every
// stream, the influence M_t = d s_t / d theta of every parameter on the state, forward in time:
// M_t = J_t M_{t-1} + I_t, and the gradient of step t's loss is its tangent along each parameter's one-hot
// direction with the state moving along M_{t-1}. Both come from one Tape::jvp per parameter element and step,
// through the Cell interface: no code per cell. Nothing from the past is stored, but M is B x p x n numbers
// (p parameters, n state units per stream) and a step costs p forward-mode passes. docs/trainers.md.
#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "online_gradient.hpp"
#include "rewind/autodiff/ops.hpp"
#include "rewind/plugins/plugin.hpp"
#include "rewind/trainers/schedule.hpp"

namespace rwd::trainers::builtin {
namespace {

using autodiff::Parameter;
using autodiff::Tangent;

class Rtrl final : public OnlineGradientTrainer {
 public:
  explicit Rtrl(const TrainerSpec& spec)
      : OnlineGradientTrainer("rtrl", spec.options.integer("k")),
        budget_(parse_bytes(spec.options.string("memory_budget"))) {}

  // stored_state() holds the model's state tensors, then the influence on each: [B, p * n_i], row b the
  // p x n_i matrix of stream b, so that it is saved, gathered across ranks and restored as the state is.
  void begin(Model& model, const Dataset& data, Tape& tape) override {
    Trainer::begin(model, data, tape);
    states_ = stored_.size();
    parameters_ = parameter_count(model);
    std::int64_t bytes = 0, largest = 0;
    for (std::size_t i = 0; i < states_; ++i) {
      largest = std::max(largest, static_cast<std::int64_t>(stored_[i].bytes()) * parameters_);
      bytes += static_cast<std::int64_t>(stored_[i].bytes()) * parameters_;
    }
    // A checkpoint gathers each stored tensor across ranks in one MPI message, counted in an int.
    if (largest > std::numeric_limits<int>::max())
      throw std::invalid_argument("trainer 'rtrl': an influence matrix of " + std::to_string(largest) +
                                  " bytes is more than a checkpoint can hold (2 GiB per state tensor)");
    if (budget_ > 0 && bytes > budget_)
      throw std::invalid_argument("trainer 'rtrl': the influence matrices need " + std::to_string(bytes) +
                                  " bytes (" + std::to_string(parameters_) + " parameters x the state of " +
                                  std::to_string(data.batch()) + " streams), above the memory budget of " +
                                  std::to_string(budget_) + " bytes");
    for (std::size_t i = 0; i < states_; ++i) {
      const autodiff::Shape s = stored_[i].shape();
      stored_.emplace_back(autodiff::Shape::matrix(s.rows, parameters_ * s.cols), stored_[i].dtype());
    }
  }

 private:
  // Step t: records it from the stored state, moves the influence one step forward, adds the step's loss
  // tangent per parameter to gradient, stores the new state.
  void step(Model& model, const Dataset& data, Tape& tape, std::int64_t t, UpdateStats& stats,
            std::vector<double>& gradient) override {
    tape.clear();
    ModelState state;
    const std::vector<Tensor> carried(stored_.begin(),
                                      stored_.begin() + static_cast<std::ptrdiff_t>(states_));
    model.begin(tape, carried, state, true);
    const std::vector<Var> leaves = flatten(state);
    const WindowResult r = record_window(
        model, tape, data, state,
        {.begin = t, .end = t + 1, .loss_begin = t, .normalizer = static_cast<double>(stats.loss_count)});
    std::vector<Var> outputs = flatten(state);
    if (r.loss.valid()) outputs.push_back(r.loss);

    std::vector<Tensor> directions;
    for (const Var& v : leaves) directions.emplace_back(v.shape(), tape.dtype());
    std::vector<Tangent> tangents;
    for (std::size_t i = 0; i < states_; ++i) tangents.push_back({leaves[i], &directions[i]});
    std::int64_t k = 0;
    for (Parameter* p : model.parameters()) {
      Tensor one_hot(p->value().shape(), tape.dtype());
      tangents.push_back({tape.param(*p), &one_hot});
      for (std::int64_t e = 0; e < p->value().numel(); ++e, ++k) {
        one_hot.set(e, 1.0);
        for (std::size_t i = 0; i < states_; ++i)
          influence_block(stored_[states_ + i], k, directions[i], true);
        std::vector<Tensor> out = tape.jvp(tangents, outputs);
        for (std::size_t i = 0; i < states_; ++i) influence_block(stored_[states_ + i], k, out[i], false);
        if (r.loss.valid()) gradient[static_cast<std::size_t>(k)] += out.back().get(0);
        one_hot.set(e, 0.0);
      }
      tangents.pop_back();
    }
    std::vector<Tensor> next(stored_.begin(), stored_.begin() + static_cast<std::ptrdiff_t>(states_));
    model.end(state, next);
    std::copy(next.begin(), next.end(), stored_.begin());
    if (r.loss.valid()) stats.loss += r.loss.item();
    stats.correct += r.correct;
  }

  // Parameter k's influence on one state tensor, state [B, n]: its block of every row of influence
  // [B, p * n], read into state (or written from it).
  static void influence_block(Tensor& influence, std::int64_t k, Tensor& state, bool read) {
    const std::int64_t rows = state.shape().rows, cols = state.shape().cols;
    const std::size_t element = autodiff::size_of(state.dtype()),
                      bytes = element * static_cast<std::size_t>(cols);
    for (std::int64_t b = 0; b < rows; ++b) {
      char* in_influence = static_cast<char*>(influence.raw()) +
                           element * static_cast<std::size_t>(b * influence.shape().cols + k * cols);
      char* in_state = static_cast<char*>(state.raw()) + element * static_cast<std::size_t>(b * cols);
      read ? std::memcpy(in_state, in_influence, bytes) : std::memcpy(in_influence, in_state, bytes);
    }
  }

  std::int64_t budget_;
  std::size_t states_ = 0;
  std::int64_t parameters_ = 0;
};

std::unique_ptr<Trainer> create(const TrainerSpec& spec) {
  return std::make_unique<Rtrl>(spec);
}

constexpr models::OptionSpec options[] = {
    steps_between_updates,
    {"memory_budget", models::OptionType::string, "1GiB",
     "refuse when the influence matrices need more (bytes, with units; 0: no limit)"}};

}  // namespace

extern const plugins::Descriptor rtrl_descriptor = plugins::trainer_descriptor(
    "rtrl", "real-time recurrent learning: the exact online gradient, influence carried forward", options,
    create);

}  // namespace rwd::trainers::builtin

REWIND_PLUGIN(rwd::trainers::builtin::rtrl_descriptor)
