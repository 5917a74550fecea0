#include "rewind/autodiff/tape.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "bf16_gemm.hpp"
#include "node.hpp"
#include "parallel.hpp"
#include "recorder.hpp"
#include "tangents.hpp"

namespace rwd::autodiff {
namespace {
// The ops.def column: ops whose backward reads neither their own value nor anything that aliases it.
bool value_dead_in_backward(Op op) {
  switch (op) {
#define REWIND_OP(name, inputs, has_grad, value_dead, saves, formula) \
  case Op::name:                                                      \
    return value_dead;
#include "rewind/autodiff/ops.def"
#undef REWIND_OP
    case Op::input:
    case Op::parameter:
      break;
  }
  return false;
}

thread_local bool grad_mode = true;
thread_local bool training_mode = true;

// Window identities are unique in the process, not only per tape: a tape built where a destroyed one
// lived must not recognise that one's handles or a parameter's cached leaf as its own.
std::atomic<std::uint64_t> next_epoch{1};

std::string describe(const Node* n) {
  std::string s = std::string(name_of(n->op)) + " " + n->shape.str();
  if (n->op == Op::parameter) s += " '" + n->param->name() + "'";
  return s + " (node #" + std::to_string(n->id) + ")";
}

template <class T>
bool all_finite(const void* values, std::int64_t count) {
  const T* v = static_cast<const T*>(values);
  T zero_unless_nonfinite = 0;  // x * 0 is NaN exactly for NaN and infinities; the loop vectorises
  for (std::int64_t i = 0; i < count; ++i) zero_unless_nonfinite += v[i] * T(0);
  return zero_unless_nonfinite == T(0);
}

#ifndef NDEBUG
void poison_value(Node* n, DType dtype) {
  if (dtype == DType::f32) {
    std::fill_n(static_cast<float*>(n->value), n->shape.numel(), std::numeric_limits<float>::quiet_NaN());
  } else {
    std::fill_n(static_cast<double*>(n->value), n->shape.numel(), std::numeric_limits<double>::quiet_NaN());
  }
}
#endif

// Backward may hand a dead value's buffer to its gradient (Recorder::grad_over_value); reading it afterwards
// would silently return gradients.
void check_value_readable(const Node* n) {
  const Node* owner = value_owner(n);
  if (owner->value_overwritten)
    throw std::logic_error("the value of " + describe(n) +
                           " was reused for gradients during backward (nothing on the tape read it "
                           "again); read values before Tape::backward, or clear() and record again");
}

}  // namespace

const char* name_of(Op op) {
  switch (op) {
    case Op::input:
      return "input";
    case Op::parameter:
      return "parameter";
#define REWIND_OP(name, inputs, has_grad, value_dead, saves, formula) \
  case Op::name:                                                      \
    return #name;
#include "rewind/autodiff/ops.def"
#undef REWIND_OP
  }
  return "unknown";
}

// ---- Var -----------------------------------------------------------------------------------------------

bool Var::valid() const {
  return tape_ != nullptr && epoch_ == tape_->epoch();
}

Node* Var::node() const {
  if (tape_ == nullptr) throw std::logic_error("Var: used before being assigned a value from a tape");
  if (epoch_ != tape_->epoch())
    throw std::logic_error(
        "Var: its tape was cleared after it was recorded; carry values across windows with "
        "Var::copy_to and Tape::input");
  return node_;
}
Shape Var::shape() const {
  return node()->shape;
}
DType Var::dtype() const {
  return tape().dtype();
}
Op Var::op() const {
  return node()->op;
}
bool Var::requires_grad() const {
  return node()->requires_grad;
}
std::uint32_t Var::id() const {
  return node()->id;
}
Tape& Var::tape() const {
  node();
  return *tape_;
}
const void* Var::raw_values() const {
  check_value_readable(node());
  return node()->value;
}

void Var::check_dtype(DType requested) const {
  if (requested != dtype())
    throw std::invalid_argument(std::string("Var: requested ") + name_of(requested) + " values of " +
                                describe(node()) + " on a " + name_of(dtype()) + " tape");
}

double Var::item() const {
  const Node* n = node();
  check_value_readable(n);
  if (n->shape.numel() != 1)
    throw std::invalid_argument("Var::item: " + describe(n) + " has " + std::to_string(n->shape.numel()) +
                                " elements, not 1");
  return dtype() == DType::f32 ? *static_cast<const float*>(n->value) : *static_cast<const double*>(n->value);
}

Tensor Var::value() const {
  Tensor t;
  copy_to(t);
  return t;
}

void Var::copy_to(Tensor& dst) const {
  const Node* n = node();
  check_value_readable(n);
  if (!dst.has_storage() || dst.shape() != n->shape || dst.dtype() != dtype()) dst.resize(n->shape, dtype());
  std::memcpy(dst.raw(), n->value, dst.bytes());
}

// ---- Parameter -----------------------------------------------------------------------------------------

Parameter::Parameter(std::string name, Tensor value)
    : name_(std::move(name)), value_(std::move(value)), grad_(value_.shape(), value_.dtype()) {
  if (!value_.has_storage())
    throw std::invalid_argument("Parameter '" + name_ + "': value tensor without storage");
}

// ---- Tape ----------------------------------------------------------------------------------------------

Tape::Tape(DType dtype, std::size_t first_block_bytes)
    : dtype_(dtype), arena_(first_block_bytes), epoch_(next_epoch.fetch_add(1, std::memory_order_relaxed)) {
  free_grads_.reserve(32);  // distinct gradient sizes in a window; more only costs one reallocation
}

Var Tape::input(const Tensor& value, bool requires_grad) {
  if (!value.has_storage())
    throw std::invalid_argument("Tape::input: a tensor without storage (default-constructed or moved from)");
  if (value.dtype() != dtype_)
    throw std::invalid_argument(std::string("Tape::input: a ") + name_of(value.dtype()) +
                                " tensor of shape " + value.shape().str() + " given to a " + name_of(dtype_) +
                                " tape");
  Node* n = Recorder::record(*this, Op::input, value.shape(), {}, false);
  n->requires_grad = requires_grad && grad_mode;
  std::memcpy(n->value, value.raw(), value.bytes());
  return Recorder::handle(*this, n);
}

Var Tape::param(Parameter& p) {
  for (const auto& [param, node] : param_leaves_)
    if (param == &p && node->requires_grad == grad_mode) return Recorder::handle(*this, node);
  const Tensor& value = p.value();
  if (!value.has_storage())
    throw std::invalid_argument("Tape::param: parameter '" + p.name() +
                                "' has no value (default-constructed or moved from)");
  if (value.dtype() != dtype_)
    throw std::invalid_argument("Tape::param: parameter '" + p.name() + "' is " + name_of(value.dtype()) +
                                " but the tape records " + name_of(dtype_));
  // Backward writes value.numel() elements into the gradient: it must be the value's twin.
  if (!p.grad().has_storage()) p.grad() = Tensor(value.shape(), value.dtype());
  if (p.grad().shape() != value.shape() || p.grad().dtype() != value.dtype())
    throw std::invalid_argument("Tape::param: parameter '" + p.name() + "' has a " + name_of(value.dtype()) +
                                " value of shape " + value.shape().str() + " but a " +
                                name_of(p.grad().dtype()) + " gradient of shape " + p.grad().shape().str() +
                                "; replace both, or set grad() = Tensor() to re-create it");
  Node* n = Recorder::record(*this, Op::parameter, value.shape(), {}, false, p.value().raw());
  n->grad = p.grad().raw();
  n->requires_grad = grad_mode;
  n->param = &p;
  param_leaves_.emplace_back(&p, n);
  return Recorder::handle(*this, n);
}

void Tape::backward(const Var& loss) {
  const Seed seed{loss, nullptr};
  backward(std::span<const Seed>(&seed, 1));
}

void Tape::backward(std::span<const Seed> seeds) {
  if (consumed_)
    throw std::logic_error(
        "Tape::backward: this window was already backpropagated; clear() the tape and "
        "record the computation again");
  if (seeds.empty()) throw std::invalid_argument("Tape::backward: no outputs to start from");
  for (const Seed& s : seeds) {
    Node* n = s.output.node();
    if (&s.output.tape() != this)
      throw std::invalid_argument("Tape::backward: " + describe(n) + " is on another tape");
    if (!n->requires_grad)
      throw std::invalid_argument("Tape::backward: " + describe(n) +
                                  " does not require a gradient: no parameter or input with requires_grad "
                                  "reaches it (or it was recorded under NoGradGuard or after stop_gradient)");
    if (s.grad == nullptr && n->shape.numel() != 1)
      throw std::invalid_argument("Tape::backward: " + describe(n) +
                                  " is not a scalar; pass a seed gradient of the same shape");
    if (s.grad != nullptr && (s.grad->shape() != n->shape || s.grad->dtype() != dtype_))
      throw std::invalid_argument("Tape::backward: seed " + s.grad->shape().str() + " " +
                                  name_of(s.grad->dtype()) + " does not match " + describe(n) + " on a " +
                                  name_of(dtype_) + " tape");
  }
  auto apply = [&](const Seed& s) {
    Node* n = s.output.node();
    void* g = Recorder::ensure_grad(*this, n);
    const std::int64_t count = n->shape.numel();
    auto accumulate = [&](auto* grad) {
      using T = std::remove_pointer_t<decltype(grad)>;
      const T* seed = s.grad != nullptr ? s.grad->data<T>() : nullptr;
      for (std::int64_t i = 0; i < count; ++i) grad[i] += seed != nullptr ? seed[i] : T(1);
    };
    if (dtype_ == DType::f32) {
      accumulate(static_cast<float*>(g));
    } else {
      accumulate(static_cast<double*>(g));
    }
  };
  // A seed on (a view of) a value whose own backward does not read it waits for that value's backward step:
  // by then a consumer's backward may have written its gradient over the value (Recorder::grad_over_value),
  // where seeding first would have allocated a gradient beside it (a sequence's final state seeded beside
  // its outputs, read by the head: one more buffer of all its steps).
  std::vector<const Seed*> waiting;
  for (const Seed& s : seeds) {
    const Node* owner = value_owner(s.output.node());
    if (owner->has_backward && owner->grad == nullptr && value_dead_in_backward(owner->op))
      waiting.push_back(&s);
    else
      apply(s);
  }
  consumed_ = true;
  for (Node* n = last_backward_; n != nullptr; n = n->prev_backward) {
    for (const Seed*& s : waiting)
      if (s != nullptr && value_owner(s->output.node()) == n) {
        apply(*s);
        s = nullptr;
      }
    if (n->grad == nullptr) continue;
#ifndef NDEBUG
    if (n->value_overwritten) poison_value(n, dtype_);  // see Recorder::grad_over_value
#endif
    run_backward(*this, n);
    Recorder::release_grad(*this, n);
  }
}

std::vector<Tensor> Tape::jvp(std::span<const Tangent> tangents, std::span<const Var> outputs) {
  if (consumed_)
    throw std::logic_error(
        "Tape::jvp: this window was already backpropagated, which may have overwritten the values that "
        "tangent rules read; call jvp() before backward()");
  Tangents t(nodes_, dtype_);
  for (const Tangent& d : tangents) {
    const Node* n = d.leaf.node();
    if (&d.leaf.tape() != this)
      throw std::invalid_argument("Tape::jvp: " + describe(n) + " is on another tape");
    if (n->op != Op::input && n->op != Op::parameter)
      throw std::invalid_argument("Tape::jvp: " + describe(n) +
                                  " is not a leaf; give directions for inputs and parameters");
    if (!n->requires_grad)
      throw std::invalid_argument("Tape::jvp: " + describe(n) +
                                  " does not require a gradient, so no tangent flows from it");
    if (d.direction == nullptr || d.direction->shape() != n->shape || d.direction->dtype() != dtype_)
      throw std::invalid_argument("Tape::jvp: the direction for " + describe(n) + " is " +
                                  (d.direction == nullptr
                                       ? std::string("missing")
                                       : d.direction->shape().str() + " " + name_of(d.direction->dtype())) +
                                  ", not " + n->shape.str() + " " + name_of(dtype_));
    if (t.of<std::byte>(n) != nullptr)
      throw std::invalid_argument("Tape::jvp: two directions for " + describe(n));
    void* tangent = dtype_ == DType::f32 ? static_cast<void*>(t.make<float>(n)) : t.make<double>(n);
    std::memcpy(tangent, d.direction->raw(), d.direction->bytes());
  }
  for (const Var& v : outputs)
    if (&v.tape() != this)
      throw std::invalid_argument("Tape::jvp: " + describe(v.node()) + " is on another tape");
  std::vector<Node*> order(nodes_);
  std::size_t i = nodes_;
  for (Node* n = last_; n != nullptr; n = n->prev) order[--i] = n;
  for (Node* n : order)
    if (n->has_backward && t.reaches(n)) run_jvp(*this, t, n);
  std::vector<Tensor> out;
  for (const Var& v : outputs) {
    Tensor tangent(v.node()->shape, dtype_);
    if (const std::byte* p = t.of<std::byte>(v.node())) std::memcpy(tangent.raw(), p, tangent.bytes());
    out.push_back(std::move(tangent));
  }
  return out;
}

Tensor Tape::grad(const Var& v) const {
  const Node* n = v.node();
  if (&v.tape() != this) throw std::invalid_argument("Tape::grad: " + describe(n) + " is on another tape");
  if (!n->requires_grad)
    throw std::invalid_argument("Tape::grad: " + describe(n) +
                                " does not require a gradient (create inputs with requires_grad = true)");
  if (n->has_backward)
    throw std::invalid_argument(
        "Tape::grad: " + describe(n) +
        " is an intermediate value; only leaves keep their gradients (create an input with "
        "requires_grad = true where you need one)");
  Tensor g(n->shape, dtype_);
  if (n->grad != nullptr) std::memcpy(g.raw(), n->grad, g.bytes());
  return g;
}

void Tape::clear() noexcept {
  arena_.reset();
  epoch_ = next_epoch.fetch_add(1, std::memory_order_relaxed);
  nodes_ = 0;
  node_bytes_ = 0;
  last_ = nullptr;
  last_backward_ = nullptr;
  free_grads_.clear();
  param_leaves_.clear();
  consumed_ = false;
}

MemoryStats Tape::memory() const {
  MemoryStats m;
  m.nodes = nodes_;
  m.node_bytes = node_bytes_;
  m.in_use_bytes = arena_.in_use_bytes();
  m.tensor_bytes = m.in_use_bytes - node_bytes_;
  m.peak_bytes = arena_.peak_bytes();
  m.reserved_bytes = arena_.reserved_bytes();
  m.block_allocations = arena_.block_allocations();
  return m;
}

std::vector<const Node*> Tape::nodes() const {
  std::vector<const Node*> out(nodes_);
  std::size_t i = nodes_;
  for (const Node* n = last_; n != nullptr; n = n->prev) out[--i] = n;
  return out;
}

std::string Tape::first_nonfinite() const {
  for (const Node* n : nodes()) {
    const Node* owner = value_owner(n);
    if (owner->value_overwritten) {  // holds gradients now; checked when it was given up
      if (owner == n && n->value_was_nonfinite) return describe(n);
      continue;
    }
    const bool finite = dtype_ == DType::f32 ? all_finite<float>(n->value, n->shape.numel())
                                             : all_finite<double>(n->value, n->shape.numel());
    if (!finite) return describe(n);
  }
  return {};
}

// ---- Recorder ------------------------------------------------------------------------------------------

Tape& Recorder::tape_of(Op op, std::span<const Var> inputs) {
  Tape* tape = nullptr;
  for (const Var& v : inputs) {
    if (!v.valid())
      throw std::logic_error(std::string(name_of(op)) +
                             ": an input is empty or belongs to a tape window that was cleared");
    if (tape != nullptr && &v.tape() != tape)
      throw std::invalid_argument(std::string(name_of(op)) + ": inputs are recorded on different tapes");
    check_value_readable(v.node_);
    tape = &v.tape();
  }
  if (tape == nullptr) throw std::invalid_argument(std::string(name_of(op)) + ": no inputs");
  return *tape;
}

Node* Recorder::record(Tape& tape, Op op, Shape shape, std::span<const Var> inputs, bool has_grad,
                       void* existing_value) {
  auto* n = tape.arena_.allocate_array<Node>(1);
  tape.node_bytes_ += sizeof(Node);
  bool any_input_requires_grad = false;
  for (const Var& in : inputs) any_input_requires_grad |= in.node_->requires_grad;
  const bool requires_grad = has_grad && any_input_requires_grad && grad_mode;
  *n = Node{};
  n->op = op;
  n->requires_grad = requires_grad;
  n->has_backward = requires_grad;
  n->n_inputs = static_cast<std::uint32_t>(inputs.size());
  n->id = static_cast<std::uint32_t>(tape.nodes_++);
  n->shape = shape;
  n->value =
      existing_value != nullptr ? existing_value : allocate_tensor(tape, tensor_bytes(shape, tape.dtype_));
  if (inputs.size() <= 2) {
    n->inputs = n->inline_inputs;
  } else {
    n->inputs = tape.arena_.allocate_array<Node*>(inputs.size());
    tape.node_bytes_ += inputs.size() * sizeof(Node*);
  }
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    n->inputs[i] = inputs[i].node_;
    if (!is_view(op)) ++value_owner(inputs[i].node_)->readers;  // a view reads nothing itself
  }
  n->prev = tape.last_;
  tape.last_ = n;
  if (requires_grad) {
    n->prev_backward = tape.last_backward_;
    tape.last_backward_ = n;
  }
  return n;
}

void* Recorder::allocate_tensor(Tape& tape, std::size_t bytes) {
  return tape.arena_.allocate(bytes, 64);
}

void* Recorder::ensure_grad(Tape& tape, Node* n) {
  if (n->grad == nullptr && is_view(n->op)) {
    // A view's gradient is the part of the viewed tensor's gradient at its value's offset (a row view's rows,
    // a reshape's whole buffer): no buffer, no copy on the way back.
    const std::ptrdiff_t offset =
        static_cast<const std::byte*>(n->value) - static_cast<const std::byte*>(n->inputs[0]->value);
    n->grad = static_cast<std::byte*>(ensure_grad(tape, n->inputs[0])) + offset;
  } else if (n->grad == nullptr) {
    const std::size_t bytes = tensor_bytes(n->shape, tape.dtype_);
    void* reused = nullptr;
    for (auto& [size, head] : tape.free_grads_)
      if (size == bytes && head != nullptr) {
        reused = head;
        head = *static_cast<void**>(head);
        break;
      }
    // A released buffer holds the free list's next pointer, so every gradient buffer fits one.
    n->grad = reused != nullptr ? reused : allocate_tensor(tape, std::max(bytes, sizeof(void*)));
    std::memset(n->grad, 0, bytes);
  }
  return n->grad;
}

void* Recorder::grad_over_value(Tape& tape, Node* n, bool zeroed) {
  Node* owner = value_owner(n);
  if (!n->requires_grad || owner->grad != nullptr || !owner->has_backward || owner->readers != 1 ||
      !value_dead_in_backward(owner->op))
    return nullptr;
  auto* bytes = static_cast<std::byte*>(owner->value);
  // Tape::first_nonfinite can no longer read this value: remember what it would have found.
  owner->value_was_nonfinite = tape.dtype_ == DType::f32 ? !all_finite<float>(bytes, owner->shape.numel())
                                                         : !all_finite<double>(bytes, owner->shape.numel());
  owner->value_overwritten = true;
#ifndef NDEBUG
  // Debug builds keep the buffers apart; the dead value is poisoned with NaN just before its owner's own
  // backward step (Tape::backward), so an op wrongly marked value_dead in ops.def reads NaN there (gradient
  // checks fail loudly) instead of gradients. Not now: a caller passing zeroed = false still reads it.
  (void)zeroed;
  return nullptr;
#else
  const std::size_t total = tensor_bytes(owner->shape, tape.dtype_);
  if (zeroed) {
    std::memset(bytes, 0, total);
  } else {  // only the owner's rows outside the view n
    const std::size_t begin = static_cast<std::size_t>(static_cast<const std::byte*>(n->value) - bytes);
    const std::size_t end = begin + tensor_bytes(n->shape, tape.dtype_);
    std::memset(bytes, 0, begin);
    std::memset(bytes + end, 0, total - end);
  }
  owner->grad = owner->value;
  return ensure_grad(tape, n);
#endif
}

void Recorder::release_grad(Tape& tape, Node* n) {
  if (is_view(n->op)) {  // borrowed from the viewed tensor, which releases it
    n->grad = nullptr;
    return;
  }
  const std::size_t bytes = tensor_bytes(n->shape, tape.dtype_);
  void* buffer = n->grad;
  n->grad = nullptr;
  for (auto& [size, head] : tape.free_grads_)
    if (size == bytes) {
      *static_cast<void**>(buffer) = head;
      head = buffer;
      return;
    }
  *static_cast<void**>(buffer) = nullptr;
  tape.free_grads_.emplace_back(bytes, buffer);
}

// ---- NoGradGuard ---------------------------------------------------------------------------------------

NoGradGuard::NoGradGuard() : previous_(grad_mode) {
  grad_mode = false;
}
NoGradGuard::~NoGradGuard() {
  grad_mode = previous_;
}
bool grad_enabled() {
  return grad_mode;
}

FlushDenormalsGuard::FlushDenormalsGuard(bool flush) : previous_(parallel::float_mode()) {
  parallel::set_float_mode(flush ? previous_ | parallel::flush_denormals_bits
                                 : previous_ & ~parallel::flush_denormals_bits);
}
FlushDenormalsGuard::~FlushDenormalsGuard() {
  parallel::set_float_mode(previous_);
}
bool flushing_denormals() {
  return parallel::flush_denormals_bits != 0 &&
         (parallel::float_mode() & parallel::flush_denormals_bits) == parallel::flush_denormals_bits;
}

namespace {
std::atomic<MatmulPrecision> product_precision{MatmulPrecision::f32};
}
void set_matmul_precision(MatmulPrecision precision) {
  if (precision == MatmulPrecision::bf16)
    if (const std::string why = bf16_unavailable_reason(); !why.empty())
      throw std::runtime_error("bf16 products are not available: " + why);
  product_precision.store(precision, std::memory_order_relaxed);
}
MatmulPrecision matmul_precision() {
  return product_precision.load(std::memory_order_relaxed);
}
std::string bf16_unavailable_reason() {
  static const std::string reason = kernels::bf16::unsupported_reason();
  return reason;
}
MatmulPrecisionGuard::MatmulPrecisionGuard(MatmulPrecision precision) : previous_(matmul_precision()) {
  set_matmul_precision(precision);
}
MatmulPrecisionGuard::~MatmulPrecisionGuard() {
  product_precision.store(previous_, std::memory_order_relaxed);
}

EvalModeGuard::EvalModeGuard() : previous_(training_mode) {
  training_mode = false;
}
EvalModeGuard::~EvalModeGuard() {
  training_mode = previous_;
}
bool training() {
  return training_mode;
}

}  // namespace rwd::autodiff
