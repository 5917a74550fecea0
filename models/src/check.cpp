#include "rewind/models/check.hpp"

#include <random>
#include <stdexcept>

#include "rewind/autodiff/ops.hpp"

namespace rwd::models {

using autodiff::Shape;

namespace {
Tensor uniform(Shape shape, DType dtype, std::mt19937_64& rng, double bound) {
  std::uniform_real_distribution<double> dist(-bound, bound);
  Tensor t(shape, dtype);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.set(i, dist(rng));
  return t;
}
}  // namespace

Var random_unroll(Model& model, Tape& tape, const UnrollOptions& options, std::vector<Tensor>* outputs) {
  if (options.batch < 1 || options.steps < 1)
    throw std::invalid_argument("random_unroll: batch and steps must be positive");
  const ModelConfig& config = model.config();
  std::mt19937_64 rng(options.seed);
  std::vector<Tensor> carried = model.initial_state(options.batch);
  for (Tensor& t : carried) t = uniform(t.shape(), config.dtype, rng, 0.9);
  ModelState state;
  model.begin(tape, carried, state);
  std::uniform_int_distribution<std::int32_t> token(
      0, static_cast<std::int32_t>(std::max<std::int64_t>(config.vocab_size, 1) - 1));
  std::uniform_int_distribution<std::int32_t> target(0, static_cast<std::int32_t>(config.output_size - 1));
  std::vector<std::int32_t> ids(static_cast<std::size_t>(options.batch)), targets(ids.size());
  Var loss;
  for (int t = 0; t < options.steps; ++t) {
    if (options.cut > 0 && t > 0 && t % options.cut == 0)
      for (State& layer : state)
        for (Var& v : layer) v = autodiff::stop_gradient(v);
    Var y;
    if (model.uses_tokens()) {
      for (auto& id : ids) id = token(rng);
      y = model.step(tape, ids, state);
    } else {
      y = model.step(
          tape, tape.input(uniform(Shape::matrix(options.batch, config.input_size), config.dtype, rng, 2.0)),
          state);
    }
    if (outputs != nullptr) outputs->push_back(y.value());
    Var step_loss;
    if (model.uses_tokens()) {
      for (auto& tg : targets) tg = target(rng);
      step_loss = autodiff::softmax_cross_entropy(y, targets);
    } else {
      step_loss = autodiff::mse(y, tape.input(uniform(y.shape(), config.dtype, rng, 1.0)));
    }
    loss = t == 0 ? step_loss : loss + step_loss;
  }
  return loss;
}

autodiff::GradcheckReport check_gradients(Model& model, const UnrollOptions& unroll,
                                          const autodiff::GradcheckOptions& options) {
  if (model.config().dtype != DType::f64)
    throw std::invalid_argument("check_gradients: the model must be built with dtype f64");
  return autodiff::gradcheck([&](Tape& t) { return random_unroll(model, t, unroll); }, model.parameters(),
                             options);
}

}  // namespace rwd::models
