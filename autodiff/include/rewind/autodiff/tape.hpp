// The tape: a Wengert list of the operations recorded since the last clear(). Creation order is backward
// order, so backward() is one reverse loop over the nodes that need a gradient. See docs/tape.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "rewind/autodiff/arena.hpp"
#include "rewind/autodiff/export.hpp"
#include "rewind/autodiff/tensor.hpp"

namespace rwd::autodiff {

enum class Op : std::uint8_t {
  input,      // a leaf copied into the arena: data, initial or carried state
  parameter,  // a leaf that reads a Parameter's storage and accumulates into its gradient
#define REWIND_OP(name, inputs, has_grad, value_dead, saves, formula) name,
#include "rewind/autodiff/ops.def"
#undef REWIND_OP
};
REWIND_AUTODIFF_EXPORT const char* name_of(Op op);

struct Node;  // plain data in the tape's arena; defined in autodiff/src/node.hpp
class Tape;

// A handle to a value recorded on a tape. Cheap to copy; invalid once its tape is cleared.
class REWIND_AUTODIFF_EXPORT Var {
 public:
  Var() = default;

  Shape shape() const;
  DType dtype() const;
  Op op() const;
  bool requires_grad() const;
  Tape& tape() const;
  std::uint32_t id() const;  // creation index in its window: the vertex number in a graph export
  bool valid() const;        // false when default-constructed or when its tape has been cleared since

  template <class T>
  std::span<const T> values() const {
    check_dtype(dtype_of<T>());
    return {static_cast<const T*>(raw_values()), static_cast<std::size_t>(shape().numel())};
  }
  double item() const;  // the value of a one-element tensor
  Tensor value() const;
  // Copies the value into dst, reusing dst's buffer when it already has this shape and dtype. Together
  // with Tape::input this is the carry-over at a truncation boundary (docs/stop_gradient.md).
  void copy_to(Tensor& dst) const;

  Node* node() const;  // for the library's own op implementations; checks validity

 private:
  friend class Tape;
  friend struct Recorder;
  Var(Tape* tape, Node* node, std::uint64_t epoch) : tape_(tape), node_(node), epoch_(epoch) {}
  const void* raw_values() const;
  void check_dtype(DType requested) const;

  Tape* tape_ = nullptr;
  Node* node_ = nullptr;
  std::uint64_t epoch_ = 0;
};

// A named trainable tensor with a persistent gradient buffer outside any arena. Gradients accumulate over
// backward calls until zero_grad(). Value and gradient may be replaced between windows; Tape::param checks
// that they agree (a gradient without storage is re-created as zeros). Do not move a Parameter while a tape
// window reads it.
class REWIND_AUTODIFF_EXPORT Parameter {
 public:
  Parameter(std::string name, Tensor value);
  Parameter(Parameter&&) noexcept = default;
  Parameter& operator=(Parameter&&) noexcept = default;
  Parameter(const Parameter&) = delete;
  Parameter& operator=(const Parameter&) = delete;

  const std::string& name() const { return name_; }
  Tensor& value() { return value_; }
  const Tensor& value() const { return value_; }
  Tensor& grad() { return grad_; }
  const Tensor& grad() const { return grad_; }
  void zero_grad() { grad_.fill(0.0); }

 private:
  std::string name_;
  Tensor value_;
  Tensor grad_;
};

struct MemoryStats {
  std::size_t nodes = 0;              // nodes recorded in the current window
  std::size_t node_bytes = 0;         // node records
  std::size_t tensor_bytes = 0;       // values, gradients and saved buffers
  std::size_t in_use_bytes = 0;       // everything the arena handed out, alignment padding included
  std::size_t peak_bytes = 0;         // highest in_use_bytes since construction or reset_peak()
  std::size_t reserved_bytes = 0;     // blocks the arena holds
  std::size_t block_allocations = 0;  // blocks the arena ever took from the heap: flat after warm-up
};

// What random ops (dropout) draw from: a mask element is a pure function of this key, the op's stream (its
// position on the tape, or a fixed stream the caller names) and the element's index, so the same update
// always draws the same mask, in any thread split, and a resumed run needs no generator state. The training
// loop sets seed and update; record_window sets window to the window's first step (the segments of one
// checkpointed update differ, and their recomputation draws the same masks again).
struct RandomKey {
  std::uint64_t seed = 0;
  std::uint64_t update = 0;
  std::uint64_t window = 0;
};

// A gradient to start backward from: grad == nullptr means d(output) = 1, allowed for one-element outputs.
struct Seed {
  Var output;
  const Tensor* grad = nullptr;
};

// A direction for forward mode: a leaf (an input with requires_grad, or a parameter) and its tangent, a
// tensor of the leaf's shape and the tape's dtype.
struct Tangent {
  Var leaf;
  const Tensor* direction = nullptr;
};

class REWIND_AUTODIFF_EXPORT Tape {
 public:
  explicit Tape(DType dtype = DType::f32, std::size_t first_block_bytes = Arena::default_block_bytes);
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  DType dtype() const { return dtype_; }

  // A leaf holding a copy of value. With requires_grad, its gradient is readable with grad() after backward.
  Var input(const Tensor& value, bool requires_grad = false);
  // A leaf reading p's storage directly; the gradient accumulates into p.grad(). Recorded once per window.
  Var param(Parameter& p);

  // Reverse pass from a scalar loss (seed 1) or from several outputs with explicit seeds. A window can be
  // backpropagated once: it is consumed until clear().
  void backward(const Var& loss);
  void backward(std::span<const Seed> seeds);
  // Forward mode (docs/forward_mode.md): J v, the tangents of `outputs` when each leaf in `tangents` moves
  // along its direction and every other leaf stays, computed along the window in recording order by each
  // op's tangent rule (ops.def). Tangents flow where gradients would: from leaves that require a gradient,
  // through ops recorded with gradients on. Call it before backward(), which may overwrite values; it
  // changes nothing on the tape, so backward() may follow. Each call costs about one forward pass.
  std::vector<Tensor> jvp(std::span<const Tangent> tangents, std::span<const Var> outputs);
  // The gradient of a leaf (an input with requires_grad) after backward; zeros where none reached it.
  // Intermediate gradients are not kept: each is recycled once its node's backward step has run.
  Tensor grad(const Var& v) const;

  void clear() noexcept;  // O(1); invalidates every Var of this window, keeps the arena's blocks
  bool consumed() const { return consumed_; }
  std::size_t size() const { return nodes_; }
  std::uint64_t epoch() const { return epoch_; }
  RandomKey& random_key() { return random_key_; }
  const RandomKey& random_key() const { return random_key_; }

  MemoryStats memory() const;
  void reset_peak() { arena_.reset_peak(); }
  const Arena& arena() const { return arena_; }

  // Nodes of the current window in creation order (graph export and inspection).
  std::vector<const Node*> nodes() const;
  // The first node, in creation order, whose value holds a NaN or an infinity, described by op, shape and
  // parameter name ("tanh [2, 4] (node #7)"); empty when every value is finite.
  std::string first_nonfinite() const;

 private:
  friend struct Recorder;
  DType dtype_;
  Arena arena_;
  std::uint64_t epoch_;
  std::size_t nodes_ = 0;
  std::size_t node_bytes_ = 0;
  // Gradient buffers whose node's backward step has run, by byte size, for reuse later in the same pass:
  // gradient memory stays that of a few steps instead of growing with the unroll.
  std::vector<std::pair<std::size_t, void*>> free_grads_;
  // The leaf each Parameter got in this window (one per grad mode), so a window records it once. Kept here,
  // not in the Parameter: two tapes in two threads may read the same Parameter.
  std::vector<std::pair<const Parameter*, Node*>> param_leaves_;
  Node* last_ = nullptr;           // newest node of the window
  Node* last_backward_ = nullptr;  // newest node that has a backward step
  bool consumed_ = false;
  RandomKey random_key_;
};

// Turns recording off on this thread while alive: ops compute values but record no backward steps.
class REWIND_AUTODIFF_EXPORT NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};
REWIND_AUTODIFF_EXPORT bool grad_enabled();

// Flush-to-zero and denormals-are-zero on this thread while alive (and in the pool's threads, for the parts
// of the work this thread splits): a denormal operand, such as a gradient that has decayed through hundreds
// of steps, costs many CPUs a microcode assist per instruction. rewind train sets it for its whole run
// (--keep-denormals turns it off). x86 only (MXCSR): elsewhere it changes nothing and flushing_denormals()
// stays false. docs/performance.md.
class REWIND_AUTODIFF_EXPORT FlushDenormalsGuard {
 public:
  explicit FlushDenormalsGuard(bool flush = true);
  ~FlushDenormalsGuard();
  FlushDenormalsGuard(const FlushDenormalsGuard&) = delete;
  FlushDenormalsGuard& operator=(const FlushDenormalsGuard&) = delete;

 private:
  unsigned previous_;
};
REWIND_AUTODIFF_EXPORT bool flushing_denormals();  // on this thread

// How products of f32 tensors are computed (the GEMMs of matmul, linear, the cells and the sequence ops'
// recurrences): in f32, or with both operands rounded to bfloat16 and the products summed in f32, on
// AVX512_BF16's vdpbf16ps at twice the f32 rate. f64 products are always f64 (gradcheck is unaffected); the
// pointwise work, parameters and gradients stay f32. Process-wide, like torch.set_float32_matmul_precision.
// A few products keep f32 whatever the setting: linear_cross_entropy's head, and a per-step product by a
// parameter under 128 rows. docs/performance.md, "bf16".
enum class MatmulPrecision { f32, bf16 };
// Throws std::runtime_error, with the reason, for bf16 on a CPU that cannot (bf16_unavailable_reason()).
REWIND_AUTODIFF_EXPORT void set_matmul_precision(MatmulPrecision precision);
REWIND_AUTODIFF_EXPORT MatmulPrecision matmul_precision();
// Empty when this CPU runs bf16 products; otherwise why not.
REWIND_AUTODIFF_EXPORT std::string bf16_unavailable_reason();

// set_matmul_precision while alive, the previous precision restored after.
class REWIND_AUTODIFF_EXPORT MatmulPrecisionGuard {
 public:
  explicit MatmulPrecisionGuard(MatmulPrecision precision);
  ~MatmulPrecisionGuard();
  MatmulPrecisionGuard(const MatmulPrecisionGuard&) = delete;
  MatmulPrecisionGuard& operator=(const MatmulPrecisionGuard&) = delete;

 private:
  MatmulPrecision previous_;
};

// Training or evaluation, per thread (PyTorch's train() / eval()): dropout is the identity in evaluation. A
// mode, not a flag per op; separate from NoGradGuard (recording nothing is not the same as evaluating).
// Training by default; evaluate(), sample() and validation run under EvalModeGuard.
class REWIND_AUTODIFF_EXPORT EvalModeGuard {
 public:
  EvalModeGuard();
  ~EvalModeGuard();
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  bool previous_;
};
REWIND_AUTODIFF_EXPORT bool training();

}  // namespace rwd::autodiff
