// What op implementations need from a tape: allocation in its arena and linking new nodes.
#pragma once

#include <initializer_list>
#include <span>

#include "node.hpp"

namespace rwd::autodiff {

struct Recorder {
  // The tape all inputs belong to; throws naming op if they are invalid or come from different tapes.
  static Tape& tape_of(Op op, std::span<const Var> inputs);
  // A new node linked into the window, with an uninitialised value buffer unless it shares existing_value.
  // It joins the backward chain when has_grad, recording is enabled and an input requires a gradient.
  static Node* record(Tape& tape, Op op, Shape shape, std::span<const Var> inputs, bool has_grad,
                      void* existing_value = nullptr);
  static Var handle(Tape& tape, Node* node) { return Var(&tape, node, tape.epoch_); }
  static void* allocate_tensor(Tape& tape, std::size_t bytes);
  // The gradient buffer of n, allocated and zero-filled on first use (a recycled one of the same size, or a
  // new one).
  static void* ensure_grad(Tape& tape, Node* n);
  // For a backward step that has finished reading the value of its input n (or, with zeroed = false, reads
  // each part before writing its gradient there): n's value buffer as n's gradient buffer when nothing else
  // will read that value (n is an intermediate whose only reader is the caller, made by an op whose own
  // backward does not read it); null otherwise. zeroed: the buffer is zero-filled (accumulate into it);
  // otherwise the caller must assign every element. Later reads of the value throw. A view qualifies
  // through the tensor it views, whose rows outside the view are zeroed.
  static void* grad_over_value(Tape& tape, Node* n, bool zeroed = true);
  // n's backward step has run: nothing reads its gradient again, so the buffer can serve another node.
  static void release_grad(Tape& tape, Node* n);
};

}  // namespace rwd::autodiff

namespace rwd::autodiff {
class Tangents;
// The two rules of every row of ops.def, defined next to its forward (ops.cpp, ops_elementwise.cpp,
// ops_reduce.cpp, ops_shape.cpp, ops_norm.cpp, ops_fused.cpp, ops_sequence.cpp, ops_random.cpp) in
// namespace rwd::autodiff: the backward step backward_<name><T>, which adds the inputs' gradients from the
// output's, and the tangent rule jvp_<name><T>, which makes the output's tangent from the inputs' (forward
// mode, before backward: values are intact). Those outside ops.cpp instantiate both for float and double
// with REWIND_INSTANTIATE_RULES(name), so a row without either fails to link.
#define REWIND_OP(name, inputs, has_grad, value_dead, saves, formula) \
  template <class T>                                                  \
  void backward_##name(Tape& tape, Node* n);                          \
  template <class T>                                                  \
  void jvp_##name(const Tape& tape, Tangents& t, Node* n);
#include "rewind/autodiff/ops.def"
#undef REWIND_OP
#define REWIND_INSTANTIATE_RULES(name)                            \
  template void backward_##name<float>(Tape&, Node*);             \
  template void backward_##name<double>(Tape&, Node*);            \
  template void jvp_##name<float>(const Tape&, Tangents&, Node*); \
  template void jvp_##name<double>(const Tape&, Tangents&, Node*);

// Runs the backward step of one node (ops.cpp, dispatched on the ops.def table).
void run_backward(Tape& tape, Node* node);
// Runs the tangent rule of one node that a tangent reaches (ops.cpp, dispatched on the same table).
void run_jvp(const Tape& tape, Tangents& tangents, Node* node);
// Element-size aware helpers shared by the tape and the ops.
inline std::size_t tensor_bytes(Shape s, DType t) {
  return static_cast<std::size_t>(s.numel()) * size_of(t);
}
}  // namespace rwd::autodiff
