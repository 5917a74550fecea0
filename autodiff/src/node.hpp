// The node record. Plain data bump-allocated in the tape's arena: never destroyed, only forgotten by
// Tape::clear(). See docs/tape.md.
#pragma once

#include <cstdint>
#include <type_traits>

#include "rewind/autodiff/tape.hpp"

namespace rwd::autodiff {

struct Node {
  Op op;
  bool requires_grad;        // a gradient flows into this node from the loss side and out to its inputs
  bool has_backward;         // on the backward chain: requires_grad and not a leaf
  bool value_overwritten;    // backward reused the value buffer as this node's gradient (see docs/tape.md)
  bool value_was_nonfinite;  // ... and the value held a NaN or an infinity before that
  std::uint32_t n_inputs;
  std::uint32_t id;       // creation index within the window
  std::uint32_t readers;  // nodes recorded with this value as an input, directly or through row views
  Shape shape;
  void* value;
  void* grad;  // null until a gradient arrives; a parameter leaf's points at Parameter::grad()
  Node* inline_inputs[2];
  Node** inputs;        // inline_inputs, or an arena array for variadic ops
  Node* prev;           // previous node of the window
  Node* prev_backward;  // previous node on the backward chain
  // Op-specific fields; what each op keeps where is listed once here.
  void* saved;  // what backward reads besides values: softmax probabilities, the head's logit chunk, the
                // gates of the fused cells and sequences, layer_norm's per-row mean and 1/std
  const std::int32_t* indices;  // gather_rows: the gathered rows; cross entropies: the class targets;
                                // max_cols: each row's argmax
  const std::uint8_t* resets;   // *_sequence: per (step, row), 1 where the row restarts from zeros
  double scalar;  // scale, *_scalar: the constant; pow: p; elu: alpha; leaky_relu: the slope; clamp: lo;
                  // layer_norm: eps; sum / mean / mse / *_cols / *_rows: 1 or 1 / n; cross entropies:
                  // 1 / normalizer
  std::int64_t arg0, arg1;  // slice_cols, slice_rows: [begin, end); matmul: the transposes; cross entropies:
                            // the ignored target; gelu: 1 for the tanh approximation
  const Parameter* param;   // for parameter leaves: the name shown in graphs and errors
};
static_assert(std::is_trivially_destructible_v<Node>, "nodes are never destroyed, only forgotten");

// Views own neither value nor gradient: both are part of their input's buffers, at the same offset.
constexpr bool is_view(Op op) {
  return op == Op::slice_rows || op == Op::reshape;
}

// The node that owns n's value buffer: n itself, or the tensor a view (of a view...) looks into.
template <class N>
N* value_owner(N* n) {
  while (is_view(n->op)) n = n->inputs[0];
  return n;
}

}  // namespace rwd::autodiff
