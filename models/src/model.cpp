#include "rewind/models/model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "rewind/autodiff/inference.hpp"
#include "rewind/autodiff/ops.hpp"

namespace rwd::models {

using autodiff::Shape;

Tensor Initializer::uniform(Shape shape, DType dtype, double bound) {
  const double r = init_range_ > 0 ? init_range_ : bound;
  std::uniform_real_distribution<double> dist(-r, r);
  Tensor t(shape, dtype);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.set(i, dist(rng_));
  return t;
}

Tensor Initializer::normal(Shape shape, DType dtype) {
  std::normal_distribution<double> dist;
  Tensor t(shape, dtype);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.set(i, dist(rng_));
  return t;
}

Cell::~Cell() = default;

const Tensor* Cell::infer(const Tensor& /*x*/, std::span<Tensor> /*state*/) {
  return nullptr;
}

std::vector<Tensor> Cell::initial_state(std::int64_t batch, DType dtype) const {
  return std::vector<Tensor>(static_cast<std::size_t>(state_size()),
                             Tensor(Shape::matrix(batch, hidden_size()), dtype));
}

Sequence Cell::run(Tape& tape, const Var& inputs, const State& state, std::span<const std::uint8_t> resets) {
  if (state.empty()) throw std::invalid_argument("cell: run() needs a state");
  const std::int64_t batch = state[0].shape().rows, rows = inputs.shape().rows;
  if (batch < 1 || rows % batch != 0 || rows == 0)
    throw std::invalid_argument("cell: inputs " + inputs.shape().str() + " are not whole steps of " +
                                std::to_string(batch) + " rows");
  if (!resets.empty() && static_cast<std::int64_t>(resets.size()) != rows)
    throw std::invalid_argument("cell: " + std::to_string(resets.size()) + " reset flags for " +
                                std::to_string(rows) + " input rows");
  Sequence out{{}, state};
  std::vector<Var> outputs;
  Tensor keep;
  for (std::int64_t t = 0; t < rows / batch; ++t) {
    const auto restarts =
        resets.empty() ? resets
                       : resets.subspan(static_cast<std::size_t>(t * batch), static_cast<std::size_t>(batch));
    if (std::any_of(restarts.begin(), restarts.end(), [](std::uint8_t r) { return r != 0; })) {
      // Restarting rows are multiplied by zero: a zero state, and a zero gradient into what came before.
      for (Var& v : out.final) {
        const Shape shape = v.shape();
        if (keep.shape() != shape || keep.dtype() != v.dtype()) keep = Tensor(shape, v.dtype());
        for (std::int64_t b = 0; b < shape.rows; ++b)
          for (std::int64_t j = 0; j < shape.cols; ++j)
            keep.set(b * shape.cols + j, restarts[static_cast<std::size_t>(b)] != 0 ? 0.0 : 1.0);
        v = v * tape.input(keep);
      }
    }
    out.final = step(tape, autodiff::slice_rows(inputs, t * batch, (t + 1) * batch), out.final);
    outputs.push_back(output(out.final));
  }
  out.outputs = outputs.size() == 1 ? outputs[0] : autodiff::concat_rows(outputs);
  return out;
}

Model::Model(const ModelConfig& config, const CellFactory& make_cell, const Options& cell_options)
    : config_(config) {
  if (config_.hidden_size < 1 || config_.layers < 1)
    throw std::invalid_argument("model: hidden_size and layers must be at least 1");
  if (config_.vocab_size < 0 || config_.input_size < 0 || config_.output_size < 0)
    throw std::invalid_argument("model: sizes must not be negative");
  if (config_.vocab_size == 0 && config_.input_size == 0)
    throw std::invalid_argument("model: give vocab_size (token inputs) or input_size (real-valued inputs)");
  if (config_.input_size == 0) config_.input_size = config_.hidden_size;
  if (config_.output_size == 0) config_.output_size = config_.vocab_size;
  if (config_.output_size == 0)
    throw std::invalid_argument("model: output_size is required for real-valued inputs");

  if (config_.tie_weights && config_.vocab_size == 0)
    throw std::invalid_argument("model: tie_weights needs token inputs (an embedding to share)");
  if (config_.tie_weights &&
      (config_.input_size != config_.hidden_size || config_.output_size != config_.vocab_size))
    throw std::invalid_argument("model: tie_weights needs the embedding size (" +
                                std::to_string(config_.input_size) + ") to equal the hidden size (" +
                                std::to_string(config_.hidden_size) + ")");
  if (!(config_.dropout >= 0 && config_.dropout < 1))
    throw std::invalid_argument("model: dropout must be in [0, 1), got " + std::to_string(config_.dropout));
  Initializer init(config_.seed, config_.init_range);
  if (uses_tokens()) {
    embedding_ = std::make_unique<Parameter>(
        "embedding.weight",
        init.normal(Shape::matrix(config_.vocab_size, config_.input_size), config_.dtype));
    parameters_.push_back(embedding_.get());
  }
  for (int layer = 0; layer < config_.layers; ++layer) {
    const CellSpec spec{layer == 0 ? config_.input_size : config_.hidden_size,
                        config_.hidden_size,
                        layer,
                        config_.dtype,
                        cell_options,
                        &init};
    try {
      cells_.push_back(make_cell(spec));
    } catch (const autodiff::AllocationError& e) {
      throw autodiff::AllocationError("model: the parameters of layer " + std::to_string(layer) +
                                      " (hidden " + std::to_string(config_.hidden_size) + "): " + e.what());
    }
    if (!cells_.back())
      throw std::runtime_error("model: the cell factory returned nothing for layer " + std::to_string(layer));
    for (Parameter* p : cells_.back()->parameters()) parameters_.push_back(p);
  }
  const double bound = 1.0 / std::sqrt(static_cast<double>(config_.hidden_size));
  if (!config_.tie_weights) {
    head_weight_ = std::make_unique<Parameter>(
        "head.weight",
        init.uniform(Shape::matrix(config_.output_size, config_.hidden_size), config_.dtype, bound));
    parameters_.push_back(head_weight_.get());
  }
  head_bias_ = std::make_unique<Parameter>(
      "head.bias", init.uniform(Shape::vector(config_.output_size), config_.dtype, bound));
  parameters_.push_back(head_bias_.get());
}

std::vector<Parameter*> Model::parameters() {
  return parameters_;
}

Parameter& Model::parameter(const std::string& name) {
  for (Parameter* p : parameters_)
    if (p->name() == name) return *p;
  throw std::invalid_argument("model: no parameter named '" + name + "'");
}

std::vector<Tensor> Model::initial_state(std::int64_t batch) const {
  std::vector<Tensor> out;
  for (const auto& cell : cells_)
    for (Tensor& t : cell->initial_state(batch, config_.dtype)) out.push_back(std::move(t));
  return out;
}

void Model::begin(Tape& tape, const std::vector<Tensor>& carried, ModelState& state,
                  bool requires_grad) const {
  state.resize(cells_.size());
  std::size_t next = 0;
  for (std::size_t layer = 0; layer < cells_.size(); ++layer) {
    state[layer].clear();
    for (int i = 0; i < cells_[layer]->state_size(); ++i) {
      if (next >= carried.size())
        throw std::invalid_argument("model: the carried state has " + std::to_string(carried.size()) +
                                    " tensors, fewer than the layers need");
      state[layer].push_back(tape.input(carried[next++], requires_grad));
    }
  }
  if (next != carried.size())
    throw std::invalid_argument("model: the carried state has " + std::to_string(carried.size()) +
                                " tensors, the layers need " + std::to_string(next));
}

void Model::end(const ModelState& state, std::vector<Tensor>& carried) const {
  std::size_t total = 0;
  for (const State& s : state) total += s.size();
  carried.resize(total);
  std::size_t next = 0;
  for (const State& s : state)
    for (const Var& v : s) v.copy_to(carried[next++]);
}

void Model::check_state(const ModelState& state) const {
  if (state.size() != cells_.size())
    throw std::invalid_argument("model: state for " + std::to_string(state.size()) +
                                " layers, the model has " + std::to_string(cells_.size()) +
                                "; call begin() first");
}

Var Model::run(Tape& tape, std::span<const std::int32_t> tokens, ModelState& state,
               std::span<const std::uint8_t> resets) {
  return head(tape, features(tape, tokens, state, resets));
}

Var Model::run(Tape& tape, const Var& x, ModelState& state, std::span<const std::uint8_t> resets) {
  return head(tape, features(tape, x, state, resets));
}

Var Model::drop(const Var& x, std::int64_t site, std::int64_t batch) const {
  if (config_.dropout == 0) return x;
  return autodiff::dropout(x, config_.dropout,
                           config_.locked_dropout
                               ? autodiff::DropoutOptions{.period_rows = batch, .stream = site}
                               : autodiff::DropoutOptions{});
}

Var Model::features(Tape& tape, std::span<const std::int32_t> tokens, ModelState& state,
                    std::span<const std::uint8_t> resets) {
  if (!uses_tokens())
    throw std::invalid_argument("model: token ids given to a model with real-valued inputs");
  check_state(state);
  const Var embedded = autodiff::gather_rows(tape.param(*embedding_), tokens);
  return features(tape, drop(embedded, 0, state[0][0].shape().rows), state, resets);
}

Var Model::features(Tape& tape, const Var& x, ModelState& state, std::span<const std::uint8_t> resets) {
  check_state(state);
  Var input = x;
  for (std::size_t layer = 0; layer < cells_.size(); ++layer) {
    Sequence seq = cells_[layer]->run(tape, input, state[layer], resets);
    state[layer] = std::move(seq.final);
    input = drop(seq.outputs, static_cast<std::int64_t>(layer) + 1, state[layer][0].shape().rows);
  }
  return input;
}

Var Model::head(Tape& tape, const Var& features) {
  return autodiff::linear(features, tape.param(head_weight()), tape.param(*head_bias_));
}

Var Model::cross_entropy(Tape& tape, const Var& features, std::span<const std::int32_t> targets,
                         const autodiff::CrossEntropyOptions& options) {
  return autodiff::linear_cross_entropy(features, tape.param(head_weight()), tape.param(*head_bias_), targets,
                                        options);
}

Var Model::step(Tape& tape, std::span<const std::int32_t> tokens, ModelState& state) {
  if (!uses_tokens())
    throw std::invalid_argument("model: token ids given to a model with real-valued inputs");
  check_state(state);
  const Var embedded = autodiff::gather_rows(tape.param(*embedding_), tokens);
  return step(tape, drop(embedded, 0, state[0][0].shape().rows), state);
}

Var Model::step(Tape& tape, const Var& x, ModelState& state) {
  check_state(state);
  Var input = x;
  for (std::size_t layer = 0; layer < cells_.size(); ++layer) {
    state[layer] = cells_[layer]->step(tape, input, state[layer]);
    input = drop(cells_[layer]->output(state[layer]), static_cast<std::int64_t>(layer) + 1,
                 state[layer][0].shape().rows);
  }
  return head(tape, input);
}

const Tensor* Model::infer(const Tensor& x, std::vector<Tensor>& state) {
  if (uses_tokens()) throw std::invalid_argument("model: real-valued inputs given to a token model");
  return infer_layers(x, state);
}

const Tensor* Model::infer(std::span<const std::int32_t> tokens, std::vector<Tensor>& state) {
  if (!uses_tokens())
    throw std::invalid_argument("model: token ids given to a model with real-valued inputs");
  const Tensor& table = embedding_->value();
  const std::int64_t width = table.shape().cols;
  embedded_.resize(Shape::matrix(static_cast<std::int64_t>(tokens.size()), width), table.dtype());
  const std::size_t row_bytes = table.bytes() / static_cast<std::size_t>(config_.vocab_size);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size)
      throw std::invalid_argument("model: token " + std::to_string(tokens[i]) +
                                  " is outside the vocabulary of " + std::to_string(config_.vocab_size));
    std::memcpy(static_cast<std::byte*>(embedded_.raw()) + i * row_bytes,
                static_cast<const std::byte*>(table.raw()) + static_cast<std::size_t>(tokens[i]) * row_bytes,
                row_bytes);
  }
  return infer_layers(embedded_, state);
}

const Tensor* Model::infer_layers(const Tensor& x, std::vector<Tensor>& state) {
  if (inference_ == Inference::no) return nullptr;
  std::size_t needed = 0;
  for (const auto& cell : cells_) needed += static_cast<std::size_t>(cell->state_size());
  if (state.size() != needed)
    throw std::invalid_argument("model: the state has " + std::to_string(state.size()) +
                                " tensors, the layers need " + std::to_string(needed));
  // The first call finds out whether every layer infers; a layer that does not leaves the state as it was.
  std::vector<Tensor> before;
  if (inference_ == Inference::untried) before = state;
  const Tensor* input = &x;
  std::size_t next = 0;
  for (const auto& cell : cells_) {
    const auto count = static_cast<std::size_t>(cell->state_size());
    input = cell->infer(*input, std::span<Tensor>(state).subspan(next, count));
    if (input == nullptr) {
      inference_ = Inference::no;
      state = std::move(before);
      return nullptr;
    }
    next += count;
  }
  inference_ = Inference::yes;
  autodiff::infer::linear(*input, head_weight().value(), head_bias_->value(), inferred_);
  return &inferred_;
}

}  // namespace rwd::models
