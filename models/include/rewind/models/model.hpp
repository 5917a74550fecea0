// A model: an embedding for token ids (or real-valued inputs fed straight to the first cell), stacked cells
// and a linear head. Parameter names follow the equivalent PyTorch module with attributes `embedding`, `rnn`
// and `head`, so state_dicts move between the two unchanged.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "rewind/autodiff/ops.hpp"
#include "rewind/models/cell.hpp"
#include "rewind/models/export.hpp"

namespace rwd::models {

struct ModelConfig {
  std::int64_t vocab_size = 0;  // > 0: inputs are token ids through embedding.weight [vocab, input_size]
  std::int64_t input_size = 0;  // features per step; for token models the embedding width (0: hidden_size)
  std::int64_t hidden_size = 64;
  int layers = 1;
  std::int64_t output_size = 0;  // head outputs (0: vocab_size)
  double init_range = 0;         // 0: PyTorch's default initialisation
  std::uint64_t seed = 1;
  DType dtype = DType::f32;
  // Dropout as PyTorch's word_language_model applies it: on the embedding's output, between stacked layers
  // and before the head; training mode only. Locked: one mask per window and row (docs/models.md).
  double dropout = 0;
  bool locked_dropout = false;
  // Press & Wolf 2017: the head's weight is embedding.weight (one tensor, both uses' gradients summed), so
  // input_size must equal hidden_size. The model then has no head.weight of its own.
  bool tie_weights = false;
};

using CellFactory = std::function<std::unique_ptr<Cell>(const CellSpec&)>;

// Per-layer states of one window, read from carried tensors with begin() and written back with end().
using ModelState = std::vector<State>;

class REWIND_MODELS_EXPORT Model {
 public:
  // make_cell is called once per layer, in order; options go to every layer's cell.
  Model(const ModelConfig& config, const CellFactory& make_cell, const Options& cell_options = {});

  const ModelConfig& config() const { return config_; }
  bool uses_tokens() const { return config_.vocab_size > 0; }
  std::vector<Parameter*> parameters();
  Parameter& parameter(const std::string& name);  // throws naming the missing parameter
  Cell& cell(int layer) { return *cells_.at(static_cast<std::size_t>(layer)); }

  // Zero state for `batch` rows: every layer's state tensors in order.
  std::vector<Tensor> initial_state(std::int64_t batch) const;
  // Leaves for the carried state (no history: the truncation point), and the copy back out. With
  // requires_grad the leaves take a gradient (Tape::grad), as a recomputed segment's start does.
  void begin(Tape& tape, const std::vector<Tensor>& carried, ModelState& state,
             bool requires_grad = false) const;
  void end(const ModelState& state, std::vector<Tensor>& carried) const;

  // Every step of a window through every layer, layer by layer, and the head: token ids [steps * batch] or
  // inputs [steps * batch, input_size], step-major, resets as in Cell::run. Returns the head's outputs
  // [steps * batch, output_size] in the same row order. What trainers record.
  Var run(Tape& tape, std::span<const std::int32_t> tokens, ModelState& state,
          std::span<const std::uint8_t> resets = {});
  Var run(Tape& tape, const Var& x, ModelState& state, std::span<const std::uint8_t> resets = {});
  // run() in two halves: the last layer's outputs of every step, and the head on them. A trainer that needs
  // only the loss takes cross_entropy() instead of head(): the same loss without keeping the logits.
  Var features(Tape& tape, std::span<const std::int32_t> tokens, ModelState& state,
               std::span<const std::uint8_t> resets = {});
  Var features(Tape& tape, const Var& x, ModelState& state, std::span<const std::uint8_t> resets = {});
  Var head(Tape& tape, const Var& features);
  Var cross_entropy(Tape& tape, const Var& features, std::span<const std::int32_t> targets,
                    const autodiff::CrossEntropyOptions& options);

  // One step through every layer and the head; returns the head's output [batch, output_size].
  Var step(Tape& tape, std::span<const std::int32_t> tokens, ModelState& state);
  Var step(Tape& tape, const Var& x, ModelState& state);
  // The same step without a tape, for inference (no gradient, no dropout), on real-valued inputs: x [batch,
  // input_size], and the state as initial_state() makes it, advanced in place. Returns the head's output
  // [batch, output_size] (valid until the next call), equal to step()'s in eval mode bit for bit; or nullptr,
  // with the state untouched, when a layer's cell has no tape-free step (Cell::infer): then record step() on
  // a no-grad tape.
  const Tensor* infer(const Tensor& x, std::vector<Tensor>& state);
  // The same for token ids [batch]: their embedding rows are the first layer's input.
  const Tensor* infer(std::span<const std::int32_t> tokens, std::vector<Tensor>& state);

 private:
  void check_state(const ModelState& state) const;
  const Tensor* infer_layers(const Tensor& x, std::vector<Tensor>& state);
  Parameter& head_weight() const { return config_.tie_weights ? *embedding_ : *head_weight_; }
  // Dropout at `site` (0: the embedding, l: after layer l) of x, whose rows are steps of `batch` rows.
  Var drop(const Var& x, std::int64_t site, std::int64_t batch) const;

  ModelConfig config_;
  std::vector<std::unique_ptr<Cell>> cells_;
  std::unique_ptr<Parameter> embedding_;    // null for real-valued inputs
  std::unique_ptr<Parameter> head_weight_;  // null when tied to the embedding
  std::unique_ptr<Parameter> head_bias_;
  std::vector<Parameter*> parameters_;  // embedding, rnn.* by layer, head: PyTorch's state_dict order
  enum class Inference { untried, yes, no } inference_ = Inference::untried;  // whether every cell infers
  Tensor embedded_, inferred_;  // infer()'s embedding rows and output
};

}  // namespace rwd::models
