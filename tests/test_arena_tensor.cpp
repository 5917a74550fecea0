#include <catch2/catch.hpp>
#include <cstdint>

#include "rewind/autodiff/arena.hpp"
#include "rewind/autodiff/tensor.hpp"

using namespace rwd::autodiff;

TEST_CASE("arena hands out aligned, disjoint memory and keeps its blocks on reset", "[arena]") {
  Arena arena(4096);
  auto* a = static_cast<std::byte*>(arena.allocate(100, 64));
  auto* b = static_cast<std::byte*>(arena.allocate(10, 8));
  CHECK(reinterpret_cast<std::uintptr_t>(a) % 64 == 0);
  CHECK(reinterpret_cast<std::uintptr_t>(b) % 8 == 0);
  CHECK(b >= a + 100);
  void* big = arena.allocate(1 << 20, 64);  // larger than a block: gets a block of its own
  CHECK(big != nullptr);
  const std::size_t reserved = arena.reserved_bytes();
  const std::size_t blocks = arena.block_allocations();
  const std::size_t peak = arena.peak_bytes();

  arena.reset();
  CHECK(arena.in_use_bytes() == 0);
  CHECK(arena.allocate(100, 64) == a);  // same requests, same memory
  CHECK(arena.allocate(10, 8) == b);
  CHECK(arena.allocate(1 << 20, 64) == big);
  CHECK(arena.reserved_bytes() == reserved);
  CHECK(arena.block_allocations() == blocks);
  CHECK(arena.peak_bytes() == peak);
}

TEST_CASE("arena rejects alignments it cannot honour", "[arena]") {
  Arena arena;
  CHECK_THROWS_WITH(arena.allocate(8, 128), Catch::Contains("alignment 128"));
}

TEST_CASE("tensors are zero-filled, copy deeply and convert dtypes", "[tensor]") {
  Tensor t(Shape::matrix(2, 3), DType::f32);
  for (std::int64_t i = 0; i < t.numel(); ++i) CHECK(t.get(i) == 0.0);
  t.set(4, 2.5);
  CHECK(t.at(1, 1) == 2.5);
  Tensor copy = t;
  copy.set(4, -1);
  CHECK(t.get(4) == 2.5);
  const Tensor d = t.to(DType::f64);
  CHECK(d.dtype() == DType::f64);
  CHECK(d.data<double>()[4] == 2.5);
  CHECK_THROWS_WITH(t.data<double>(), Catch::Contains("requested f64 data of a f32 tensor of shape [2, 3]"));
  CHECK_THROWS_WITH(t.get(6), Catch::Contains("index 6 out of range for shape [2, 3]"));
  CHECK_THROWS_WITH(Tensor::from({1.0, 2.0}, Shape::vector(3), DType::f32),
                    Catch::Contains("2 values for shape [3]"));
  CHECK(Shape::scalar().str() == "[]");
  CHECK(Shape::vector(4).str() == "[4]");
}
