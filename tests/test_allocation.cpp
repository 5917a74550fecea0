// Counts every heap allocation in this test binary, to prove that recording a window again after a clear
// performs none (the arena reuses its blocks). Under AddressSanitizer every allocation already goes through
// its allocator, which reports them to a hook; elsewhere operator new is replaced with a counting one.
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <new>
#include <vector>

#include "helpers.hpp"
#include "rewind/autodiff/ops.hpp"

namespace {
std::atomic<std::size_t> allocations{0}, allocated_bytes{0};
}  // namespace

std::size_t rwd::test::heap_allocations() {
  return allocations.load();
}
std::size_t rwd::test::heap_bytes() {
  return allocated_bytes.load();
}

#if defined(__SANITIZE_ADDRESS__)
// Declared by hand: GCC ships the sanitizer runtime's function but not clang's allocator_interface.h.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*)(const volatile void*, std::size_t),
                                                         void (*)(const volatile void*));

namespace {
void count_malloc(const volatile void*, std::size_t bytes) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  allocated_bytes.fetch_add(bytes, std::memory_order_relaxed);
}
void ignore_free(const volatile void*) {}
const int hooks_installed = __sanitizer_install_malloc_and_free_hooks(count_malloc, ignore_free);
}  // namespace

#else
namespace {
void* counted(std::size_t bytes, std::size_t align) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  allocated_bytes.fetch_add(bytes, std::memory_order_relaxed);
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (bytes + align - 1) / align * align)
                                              : std::malloc(bytes ? bytes : 1);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) {
  return counted(n, alignof(std::max_align_t));
}
void* operator new[](std::size_t n) {
  return counted(n, alignof(std::max_align_t));
}
void* operator new(std::size_t n, std::align_val_t a) {
  return counted(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
#endif

using namespace rwd::autodiff;

namespace {
// A window shaped like a recurrent training step: gates from a matmul, slices, nonlinearities, a loss.
void record_window(Tape& tape, Parameter& w, Parameter& b, Tensor& carried, const std::int32_t* targets) {
  tape.clear();
  Var h = tape.input(carried);
  Var loss;
  for (int t = 0; t < 8; ++t) {
    Var gates = matmul(h, tape.param(w)) + tape.param(b);
    Var z = sigmoid(slice_cols(gates, 0, 16));
    Var n = tanh(slice_cols(gates, 16, 32));
    h = concat_cols({mul(z, n)});
    Var step_loss = softmax_cross_entropy(h, std::span<const std::int32_t>(targets, 4));
    loss = t == 0 ? step_loss : loss + step_loss;
  }
  tape.backward(loss);
  h.copy_to(carried);
}
}  // namespace

TEST_CASE("after warm-up, recording the same window performs no heap allocation", "[arena][memory]") {
  Tape tape;
  Parameter w = rwd::test::random_parameter("w", Shape::matrix(16, 32), 1, DType::f32);
  Parameter b = rwd::test::random_parameter("b", Shape::vector(32), 2, DType::f32);
  Tensor carried = rwd::test::random_tensor(Shape::matrix(4, 16), DType::f32, 3);
  const std::int32_t targets[] = {0, 5, 15, 7};

#if defined(__SANITIZE_ADDRESS__)
  REQUIRE(hooks_installed != 0);
#endif
  {  // the counter sees allocations at all
    const std::size_t seen = allocations.load();
    delete new std::vector<int>(16);
    REQUIRE(allocations.load() > seen);
  }
  record_window(tape, w, b, carried, targets);  // warm-up
  const MemoryStats warm = tape.memory();
  const std::size_t blocks = tape.arena().block_allocations();
  const std::size_t before = allocations.load();
  for (int window = 0; window < 1000; ++window) record_window(tape, w, b, carried, targets);
  const std::size_t during = allocations.load() - before;

  CHECK(during == 0);
  CHECK(tape.arena().block_allocations() == blocks);
  CHECK(tape.memory().peak_bytes == warm.peak_bytes);  // flat across 1,000 identical windows
  CHECK(tape.memory().reserved_bytes == warm.reserved_bytes);
}

namespace {
// A custom cell built from the primitives of docs/ops.md: layer norm, broadcasts both ways, constants, the
// new activations and reductions, views.
Var custom_step(Tape& tape, Parameter& w, Parameter& gain, Parameter& bias, const Var& mask, const Var& h) {
  const Var x = layer_norm(matmul(h, tape.param(w)), tape.param(gain), tape.param(bias));  // [4, 16]
  const Var attention = softmax(x - max_cols(x));                                          // column broadcast
  const Var mixed = where(mask, gelu(x, GeluApproximation::tanh), softplus(x) / (1.0 + abs(x)));
  const Var pooled = reshape(transpose(mixed), Shape::matrix(4, 16)) * mean_rows(attention);
  return tanh(clamp(pooled, -3, 3) + sqrt(square(x) + 1e-3) - 0.5 * log_softmax(x) * logsumexp_cols(x));
}
}  // namespace

TEST_CASE("after warm-up, a cell made of the new primitives performs no heap allocation", "[arena][memory]") {
  Tape tape;
  Parameter w = rwd::test::random_parameter("w", Shape::matrix(16, 16), 4, DType::f32);
  Parameter gain = rwd::test::random_parameter("gain", Shape::vector(16), 5, DType::f32);
  Parameter bias = rwd::test::random_parameter("bias", Shape::vector(16), 6, DType::f32);
  const Tensor mask = rwd::test::random_tensor(Shape::vector(16), DType::f32, 7, 0, 1);  // nonzero: true
  Tensor carried = rwd::test::random_tensor(Shape::matrix(4, 16), DType::f32, 8);
  auto window = [&] {
    tape.clear();
    const Var m = tape.input(mask);
    Var h = tape.input(carried);
    for (int t = 0; t < 8; ++t) h = custom_step(tape, w, gain, bias, m, h);
    tape.backward(mean(h));
    h.copy_to(carried);
  };
  window();  // warm-up
  const std::size_t peak = tape.memory().peak_bytes;
  const std::size_t before = allocations.load();
  for (int i = 0; i < 100; ++i) window();
  CHECK(allocations.load() - before == 0);
  CHECK(tape.memory().peak_bytes == peak);
}
