// A recurrent cell: one step of a recurrence, written against the autodiff API. Built-in cells (rnn, gru,
// lstm) and users' own cells implement this and are loaded as plugins (rewind/plugins/plugin.hpp).
#pragma once

#include <boost/container/static_vector.hpp>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "rewind/autodiff/tape.hpp"
#include "rewind/models/export.hpp"
#include "rewind/models/options.hpp"

namespace rwd::models {

using autodiff::DType;
using autodiff::Parameter;
using autodiff::Tape;
using autodiff::Tensor;
using autodiff::Var;

// A cell's recurrent state: h, or h and c. Fixed capacity, so a step allocates nothing on the heap.
using State = boost::container::static_vector<Var, 4>;

// Deterministic parameter initialisation, shared by every cell of a model in creation order.
class REWIND_MODELS_EXPORT Initializer {
 public:
  Initializer(std::uint64_t seed, double init_range) : rng_(seed), init_range_(init_range) {}
  // U(-r, r) with r = init_range if set, else `bound` (PyTorch's default for recurrent layers is
  // 1 / sqrt(hidden_size), for nn.Linear 1 / sqrt(in_features)).
  Tensor uniform(autodiff::Shape shape, DType dtype, double bound);
  Tensor normal(autodiff::Shape shape, DType dtype);  // N(0, 1), PyTorch's nn.Embedding default

 private:
  std::mt19937_64 rng_;
  double init_range_;
};

// What a cell plugin's factory is given.
struct CellSpec {
  std::int64_t input_size = 0;
  std::int64_t hidden_size = 0;
  int layer = 0;  // parameter names end in _l{layer}, as in PyTorch
  DType dtype = DType::f32;
  Options options;                     // validated against the plugin's declared options
  Initializer* initializer = nullptr;  // draw initial parameter values from this, in a fixed order

  // PyTorch's name for a parameter of this layer inside the model: "rnn.weight_ih_l0" for "weight_ih".
  std::string name(const std::string& base) const { return "rnn." + base + "_l" + std::to_string(layer); }
};

// Every step of a window at once (Cell::run).
struct Sequence {
  Var outputs;  // what the next layer or the head reads, every step: [steps * batch, ...], step-major
  State final;  // the state after the last step
};

class REWIND_MODELS_EXPORT Cell {
 public:
  virtual ~Cell();  // defined in the models library: Cell's type information lives in one place

  virtual std::int64_t input_size() const = 0;
  virtual std::int64_t hidden_size() const = 0;
  // Number of state tensors (1 for h, 2 for h and c); each is [batch, hidden_size] and starts at zero.
  virtual int state_size() const { return 1; }
  // One step: x is [batch, input_size]; returns the new state.
  virtual State step(Tape& tape, const Var& x, const State& state) = 0;
  // What the next layer or the head reads; h by default.
  virtual Var output(const State& state) const { return state[0]; }
  // Every step of a window: inputs [steps * batch, input_size], step-major (rows t * batch ... t * batch +
  // batch - 1 are step t). resets is empty or holds a flag per input row: 1 restarts that row from a zero
  // state before that step, and no gradient flows back across the restart. The default runs step() on row
  // views of inputs and stacks output() of every step; the built-in cells run the window as one op.
  virtual Sequence run(Tape& tape, const Var& inputs, const State& state,
                       std::span<const std::uint8_t> resets);
  // Named without the module prefix, as in PyTorch (weight_ih_l0, ...).
  virtual std::vector<Parameter*> parameters() = 0;
  // One step without a tape, for inference (no gradient, no dropout): x [batch, input_size]; the state's
  // tensors, shaped as initial_state() makes them, become the next step's. Returns what output() would give
  // (valid until the next call), or nullptr when the cell has no such step: callers then record step() on a
  // no-grad tape. Equal to step() bit for bit. The built-in fused cells have one; a cell of your own can
  // add one with rewind/autodiff/inference.hpp. At batch 1 it is several times faster than recording.
  virtual const Tensor* infer(const Tensor& x, std::span<Tensor> state);

  std::vector<Tensor> initial_state(std::int64_t batch, DType dtype) const;
};

}  // namespace rwd::models
