#include <atomic>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "helpers.hpp"
#include "rewind/autodiff/ops.hpp"
#include "rewind/autodiff/parallel.hpp"

using namespace rwd::autodiff;

TEST_CASE("backward computes the gradient of a small expression", "[tape]") {
  Tape tape(DType::f64);
  Parameter w("w", Tensor::from({2.0, -3.0}, Shape::vector(2), DType::f64));
  Var x = tape.input(Tensor::from({0.5, 4.0}, Shape::vector(2), DType::f64), true);
  Var loss = sum(mul(tape.param(w), x) + exp(x));
  tape.backward(loss);
  CHECK(w.grad().get(0) == 0.5);
  CHECK(w.grad().get(1) == 4.0);
  const Tensor gx = tape.grad(x);
  CHECK(gx.get(0) == Approx(2.0 + std::exp(0.5)).epsilon(1e-15));
  CHECK(gx.get(1) == Approx(-3.0 + std::exp(4.0)).epsilon(1e-15));
}

TEST_CASE("stop_gradient blocks the gradient exactly and passes the value through", "[tape][stop_gradient]") {
  Tape tape(DType::f64);
  Parameter w = rwd::test::random_parameter("w", Shape::matrix(3, 3), 7);
  Var h = tanh(tape.param(w));
  Var cut = stop_gradient(h);
  CHECK(!cut.requires_grad());
  const auto hv = h.values<double>();
  const auto cv = cut.values<double>();
  CHECK(std::equal(hv.begin(), hv.end(), cv.begin(), cv.end()));
  // Only the cut path reaches w: the loss does not require a gradient at all.
  Var only_cut = sum(mul(cut, cut));
  CHECK(!only_cut.requires_grad());
  CHECK_THROWS_WITH(tape.backward(only_cut), Catch::Contains("does not require a gradient"));

  // With a second, uncut path, w's gradient is that path's alone, bit for bit.
  Tape reference(DType::f64);
  Var direct = reference.param(w);
  reference.backward(sum(direct));
  const Tensor expected = w.grad();
  w.zero_grad();
  Var both = sum(add(mul(cut, cut), tape.param(w)));
  tape.backward(both);
  for (std::int64_t i = 0; i < expected.numel(); ++i) CHECK(w.grad().get(i) == expected.get(i));
}

TEST_CASE("parameters and their gradients survive a tape clear bit for bit", "[tape][parameter]") {
  Tape tape;
  Parameter w = rwd::test::random_parameter("w", Shape::matrix(4, 4), 3, DType::f32);
  tape.backward(sum(tanh(tape.param(w))));
  const Tensor value = w.value();
  const Tensor grad = w.grad();
  tape.clear();
  // Dirty the arena the parameter's leaf lived in.
  for (int i = 0; i < 100; ++i) (void)exp(tape.input(Tensor(Shape::matrix(16, 16), DType::f32)));
  REQUIRE(std::memcmp(w.value().raw(), value.raw(), value.bytes()) == 0);
  REQUIRE(std::memcmp(w.grad().raw(), grad.raw(), grad.bytes()) == 0);

  SECTION("and keep accumulating until zeroed") {
    tape.clear();
    tape.backward(sum(tanh(tape.param(w))));
    for (std::int64_t i = 0; i < grad.numel(); ++i) CHECK(w.grad().get(i) == Approx(2 * grad.get(i)));
    w.zero_grad();
    for (std::int64_t i = 0; i < grad.numel(); ++i) CHECK(w.grad().get(i) == 0.0);
  }
}

TEST_CASE("a parameter read several times in one window is one leaf and accumulates", "[tape][parameter]") {
  Tape tape(DType::f64);
  Parameter w("w", Tensor::from({3.0}, Shape::scalar(), DType::f64));
  Var a = tape.param(w);
  Var b = tape.param(w);
  CHECK(a.id() == b.id());
  tape.backward(mul(a, b));  // d(w^2)/dw = 2w
  CHECK(w.grad().get(0) == 6.0);
}

TEST_CASE("a 100,000-node chain backpropagates without recursion", "[tape]") {
  Tape tape(DType::f64);
  Parameter w("w", Tensor::from({0.5}, Shape::scalar(), DType::f64));
  Var h = tape.param(w);
  constexpr int steps = 100000;
  for (int i = 0; i < steps; ++i) h = scale(h, 1.0);
  REQUIRE(tape.size() == steps + 1);
  tape.backward(h);
  CHECK(w.grad().get(0) == 1.0);
}

TEST_CASE("carry-over equals an uncut forward pass and has no history", "[tape][carry]") {
  Parameter w = rwd::test::random_parameter("w", Shape::matrix(3, 3), 11);
  const Tensor x0 = rwd::test::random_tensor(Shape::matrix(2, 3), DType::f64, 12);
  auto step = [&](Tape& t, Var h) { return tanh(matmul(h, t.param(w))); };

  Tape whole(DType::f64);
  Var h = whole.input(x0);
  for (int i = 0; i < 6; ++i) h = step(whole, h);
  const Tensor expected = h.value();

  Tape windows(DType::f64);
  Tensor carried = x0;
  for (int window = 0; window < 3; ++window) {
    windows.clear();
    Var hw = windows.input(carried);
    CHECK(!hw.requires_grad());
    for (int i = 0; i < 2; ++i) hw = step(windows, hw);
    windows.backward(sum(hw));  // each window's gradient starts at its own carried-in state
    hw.copy_to(carried);
  }
  for (std::int64_t i = 0; i < expected.numel(); ++i) CHECK(carried.get(i) == expected.get(i));
}

TEST_CASE("NoGradGuard records no backward steps", "[tape]") {
  Tape tape;
  Parameter w = rwd::test::random_parameter("w", Shape::matrix(2, 2), 5, DType::f32);
  {
    NoGradGuard guard;
    CHECK(!grad_enabled());
    Var y = sum(tanh(tape.param(w)));
    CHECK(!y.requires_grad());
  }
  CHECK(grad_enabled());
  // The leaf recorded under the guard is not reused once recording is back on.
  CHECK(sum(tanh(tape.param(w))).requires_grad());
}

TEST_CASE("memory accounting follows the arena", "[tape][memory]") {
  Tape tape;
  const MemoryStats empty = tape.memory();
  CHECK(empty.in_use_bytes == 0);
  Var x = tape.input(Tensor(Shape::matrix(32, 64), DType::f32), true);
  Var y = tanh(x);
  const MemoryStats used = tape.memory();
  CHECK(used.nodes == 2);
  CHECK(used.tensor_bytes >= 2 * 32 * 64 * sizeof(float));
  CHECK(used.node_bytes > 0);
  CHECK(used.in_use_bytes == used.node_bytes + used.tensor_bytes);
  CHECK(used.peak_bytes >= used.in_use_bytes);
  CHECK(used.reserved_bytes >= used.in_use_bytes);
  tape.backward(sum(y));
  const std::size_t peak = tape.memory().peak_bytes;
  CHECK(peak > used.in_use_bytes);  // gradients were allocated
  tape.clear();
  CHECK(tape.memory().in_use_bytes == 0);
  CHECK(tape.memory().peak_bytes == peak);
  tape.reset_peak();
  CHECK(tape.memory().peak_bytes == 0);
}

namespace {
// An embedding, two LSTM layers and a cross-entropy head: every gradient but the head's input's can take
// over the buffer of a value nothing reads again, unless `also_read` records a second reader of each.
struct TwoLayerLstm {
  static constexpr std::int64_t batch = 2, steps = 3, hidden = 3, rows = batch * steps;
  std::vector<Parameter> params;
  TwoLayerLstm() {
    const Shape shapes[] = {Shape::matrix(5, 4),
                            Shape::matrix(4 * hidden, 4),
                            Shape::matrix(4 * hidden, hidden),
                            Shape::vector(4 * hidden),
                            Shape::vector(4 * hidden),
                            Shape::matrix(4 * hidden, hidden),
                            Shape::matrix(4 * hidden, hidden),
                            Shape::vector(4 * hidden),
                            Shape::vector(4 * hidden),
                            Shape::matrix(4, hidden),
                            Shape::vector(4)};
    for (const Shape& s : shapes)
      params.push_back(
          rwd::test::random_parameter("p" + std::to_string(params.size()), s, params.size() + 1));
  }
  struct Recorded {
    Var x, y1, y2, outputs, loss;
  };
  Recorded record(Tape& tape, bool also_read) {
    for (Parameter& p : params) p.zero_grad();
    const std::int32_t tokens[] = {0, 4, 2, 2, 1, 3};
    const std::int32_t targets[] = {3, 0, 1, 2, 0, 3};
    const Var zero = tape.input(Tensor(Shape::matrix(batch, hidden), DType::f64));
    std::vector<Var> v;
    for (Parameter& p : params) v.push_back(tape.param(p));
    Recorded r;
    r.x = gather_rows(v[0], tokens);
    r.y1 = lstm_sequence(r.x, zero, zero, v[1], v[2], v[3], v[4]);
    r.y2 = lstm_sequence(slice_rows(r.y1, 0, rows), zero, zero, v[5], v[6], v[7], v[8]);
    r.outputs = slice_rows(r.y2, 0, rows);
    r.loss = linear_cross_entropy(r.outputs, v[9], v[10], targets);
    if (also_read)
      for (const Var& read : {r.x, r.y1, r.y2}) stop_gradient(read);
    return r;
  }
};
}  // namespace

TEST_CASE("backward reuses values nothing reads again for gradients, bit for bit, and guards them",
          "[tape][memory]") {
  TwoLayerLstm model;
  Tape kept(DType::f64);
  const auto k = model.record(kept, true);
  kept.backward(k.loss);
  std::vector<Tensor> expected;
  for (const Parameter& p : model.params) expected.push_back(p.grad());
  CHECK_NOTHROW(k.outputs.value());  // a second reader keeps every value

  Tape reused(DType::f64);
  const auto r = model.record(reused, false);
  reused.backward(r.loss);
  for (std::size_t i = 0; i < expected.size(); ++i)
    for (std::int64_t j = 0; j < expected[i].numel(); ++j)
      CHECK(model.params[i].grad().get(j) == expected[i].get(j));
  CHECK(reused.memory().peak_bytes < kept.memory().peak_bytes);

  CHECK(r.loss.item() == k.loss.item());
  for (const Var& gone : {r.x, r.y1, r.y2, r.outputs}) {
    CHECK_THROWS_WITH(gone.value(), Catch::Contains("reused for gradients during backward"));
    CHECK_THROWS_WITH(tanh(gone), Catch::Contains("read values before Tape::backward"));
  }
  CHECK(reused.first_nonfinite().empty());
}

TEST_CASE("seeding a sequence's final state takes no gradient buffer beside its outputs", "[tape][memory]") {
  TwoLayerLstm model;
  constexpr std::int64_t batch = TwoLayerLstm::batch, rows = TwoLayerLstm::rows;
  Tensor seed(Shape::matrix(batch, TwoLayerLstm::hidden), DType::f64);
  for (std::int64_t i = 0; i < seed.numel(); ++i) seed.set(i, 0.1 * static_cast<double>(i + 1));
  struct Run {
    std::size_t peak;
    std::vector<Tensor> grads;
  };
  // The loss, and with `seeded` a gradient at the last layer's h_T and c_T, as a checkpointed trainer's
  // reversal before the last has.
  auto run = [&](bool also_read, bool seeded) {
    Tape tape(DType::f64);
    const auto r = model.record(tape, also_read);
    std::vector<Seed> seeds{{r.loss, nullptr}};
    const Var h_last = slice_rows(r.y2, rows - batch, rows), c_last = slice_rows(r.y2, rows, rows + batch);
    if (seeded) seeds.insert(seeds.end(), {{h_last, &seed}, {c_last, &seed}});
    tape.backward(seeds);
    Run out{tape.memory().peak_bytes, {}};
    for (const Parameter& p : model.params) out.grads.push_back(p.grad());
    return out;
  };
  const Run plain = run(false, false), seeded = run(false, true), seeded_kept = run(true, true);
  CHECK(seeded.peak == plain.peak);
  bool differs = false;
  for (std::size_t i = 0; i < seeded.grads.size(); ++i)
    for (std::int64_t j = 0; j < seeded.grads[i].numel(); ++j) {
      CHECK(seeded.grads[i].get(j) == seeded_kept.grads[i].get(j));
      differs |= seeded.grads[i].get(j) != plain.grads[i].get(j);
    }
  CHECK(differs);  // the seeds reached the parameters
}

TEST_CASE("a tape built where a destroyed one lived does not reuse its cached leaves", "[tape][parameter]") {
  Parameter w("w", Tensor::from({2.0}, Shape::scalar(), DType::f64));
  for (int i = 0; i < 3; ++i) {
    Tape tape(DType::f64);  // likely the same address every iteration
    tape.backward(mul(tape.param(w), tape.param(w)));
  }
  CHECK(w.grad().get(0) == 12.0);  // 3 x d(w^2)/dw
}

TEST_CASE("linear_cross_entropy over several row chunks equals softmax_cross_entropy of linear",
          "[tape][memory]") {
  // 1,100 rows: three chunks of the head, the last one partial; x comes from gather_rows, so the fused op
  // writes x's gradient over x chunk by chunk (Recorder::grad_over_value).
  constexpr std::int64_t rows = 1100, in = 5, classes = 7;
  Parameter table = rwd::test::random_parameter("table", Shape::matrix(11, in), 21);
  Parameter w = rwd::test::random_parameter("w", Shape::matrix(classes, in), 22);
  Parameter b = rwd::test::random_parameter("b", Shape::vector(classes), 23);
  std::vector<std::int32_t> tokens(rows), targets(rows);
  for (std::int64_t r = 0; r < rows; ++r) {
    tokens[r] = static_cast<std::int32_t>((r * 7) % 11);
    targets[r] = r % 13 == 0 ? 99 : static_cast<std::int32_t>((r * 5) % classes);  // 99: ignored
  }
  auto run = [&](bool fused) {
    for (Parameter* p : {&table, &w, &b}) p->zero_grad();
    Tape tape(DType::f64);
    const Var x = gather_rows(tape.param(table), tokens);
    std::int64_t correct = 0;
    const CrossEntropyOptions options{.ignore_index = 99, .correct = &correct};
    const Var loss = fused ? linear_cross_entropy(x, tape.param(w), tape.param(b), targets, options)
                           : softmax_cross_entropy(linear(x, tape.param(w), tape.param(b)), targets, options);
    const double value = loss.item();
    tape.backward(loss);
    return std::tuple{value, correct, table.grad(), w.grad(), b.grad()};
  };
  const auto [loss, correct, d_table, d_w, d_b] = run(true);
  const auto [want_loss, want_correct, want_table, want_w, want_b] = run(false);
  CHECK(loss == Approx(want_loss).epsilon(1e-13));
  CHECK(correct == want_correct);
  CHECK(correct > 0);
  for (const auto& [got, want] : {std::pair{d_table, want_table}, {d_w, want_w}, {d_b, want_b}})
    for (std::int64_t i = 0; i < want.numel(); ++i) CHECK(got.get(i) == Approx(want.get(i)).epsilon(1e-12));
}

TEST_CASE("FlushDenormalsGuard flushes denormals on this thread and in the pool's, and restores the mode",
          "[tape][denormals]") {
  volatile float tiny = 1e-40f;  // denormal: below FLT_MIN
  const bool before = flushing_denormals();
  CHECK(tiny * 1.0f != 0.0f);
  // A product whose every term is denormal, split across the pool's threads by rows: each part must flush.
  const Tensor a = Tensor::from(std::vector<double>(512 * 256, 1e-21), Shape::matrix(512, 256), DType::f32);
  const auto product = [&] {
    Tape t(DType::f32);
    NoGradGuard no_grad;
    return matmul(t.input(a), t.input(a), Transpose::no, Transpose::yes).value();
  };
  {
    const FlushDenormalsGuard flush;
    CHECK(flushing_denormals());
    CHECK(tiny * 1.0f == 0.0f);
    const Tensor p = product();
    double largest = 0;
    for (std::int64_t i = 0; i < p.numel(); ++i) largest = std::max(largest, std::abs(p.get(i)));
    CHECK(largest == 0);
    const FlushDenormalsGuard keep(false);  // nested: off again, then back on
    CHECK_FALSE(flushing_denormals());
  }
  CHECK(flushing_denormals() == before);
  CHECK(tiny * 1.0f != 0.0f);
  const Tensor p = product();  // 256 terms of 1e-42: about 2.6e-40, every row
  for (std::int64_t r = 0; r < 512; r += 511) CHECK(p.at(r, 0) == Approx(2.56e-40).epsilon(0.05));
}

TEST_CASE("jvp: the tangent of a small expression, its directions checked, and only before backward",
          "[tape][jvp]") {
  Tape tape(DType::f64);
  Parameter w("w", Tensor::from({0.5, -1.0}, Shape::vector(2), DType::f64));
  const Var x = tape.input(Tensor::from({2.0, 3.0}, Shape::vector(2), DType::f64), true);
  const Var c = tape.input(Tensor::from({1.0, 1.0}, Shape::vector(2), DType::f64));
  const Var y = sum(x * tape.param(w) + stop_gradient(x) * x + c);
  const Tensor along_x = Tensor::from({1.0, 0.0}, Shape::vector(2), DType::f64);
  const Tensor along_w = Tensor::from({0.0, 2.0}, Shape::vector(2), DType::f64);
  // d y = w . dx + x . dw + x . dx (the stop_gradient factor held): 0.5 * 1 + 2 * 1 and 3 * 2.
  const Tangent both[] = {{x, &along_x}, {tape.param(w), &along_w}};
  CHECK(tape.jvp(both, std::span(&y, 1))[0].get(0) == 0.5 + 2.0 + 6.0);
  const Tangent only_x[] = {{x, &along_x}};
  const Var outputs[] = {y, c};
  const std::vector<Tensor> tangents = tape.jvp(only_x, outputs);
  CHECK(tangents[0].get(0) == 2.5);
  CHECK(tangents[1].get(0) == 0.0);  // a leaf without a direction stays

  const Tangent not_leaf[] = {{y, &along_x}};
  CHECK_THROWS_WITH(tape.jvp(not_leaf, outputs), Catch::Contains("is not a leaf"));
  const Tangent constant[] = {{c, &along_x}};
  CHECK_THROWS_WITH(tape.jvp(constant, outputs), Catch::Contains("does not require a gradient"));
  const Tensor wrong = Tensor::from({1.0, 2.0, 3.0}, Shape::vector(3), DType::f64);
  const Tangent mismatched[] = {{x, &wrong}};
  CHECK_THROWS_WITH(tape.jvp(mismatched, outputs),
                    Catch::Contains("the direction for") && Catch::Contains("is [3] f64, not [2] f64"));
  const Tangent twice[] = {{x, &along_x}, {x, &along_x}};
  CHECK_THROWS_WITH(tape.jvp(twice, outputs), Catch::Contains("two directions for"));
  Tape other(DType::f64);
  const Var elsewhere = other.input(along_x, true);
  const Tangent foreign[] = {{elsewhere, &along_x}};
  CHECK_THROWS_WITH(tape.jvp(foreign, outputs), Catch::Contains("is on another tape"));

  tape.backward(y);
  CHECK(tape.grad(x).get(0) == 0.5 + 2.0);  // w + sg(x): the jvp calls left the window as it was
  CHECK_THROWS_WITH(tape.jvp(only_x, outputs), Catch::Contains("call jvp() before backward()"));
}

TEST_CASE(
    "parallel_for covers every item once in ranges of at least min_items, and a split inside a split is one "
    "range",
    "[threads]") {
  for (std::int64_t items : {0, 1, 7, 1000, 4097})
    for (std::int64_t min_items : {1, 100, 5000}) {
      INFO(items << " items, at least " << min_items);
      std::vector<int> seen(static_cast<std::size_t>(items), 0);
      std::vector<std::pair<std::int64_t, std::int64_t>> ranges(static_cast<std::size_t>(items) + 1,
                                                                {-1, -1});
      std::atomic<int> calls{0}, inner_calls{0};
      parallel_for(items, min_items, [&](std::int64_t begin, std::int64_t end) {
        ranges[static_cast<std::size_t>(calls++)] = {begin, end};
        for (std::int64_t i = begin; i < end; ++i) ++seen[static_cast<std::size_t>(i)];
        // Inside a split, another split runs as one range on this thread.
        parallel_for(end - begin, 1, [&](std::int64_t, std::int64_t) { ++inner_calls; });
      });
      for (int s : seen) CHECK(s == 1);
      const int parts = calls.load();
      if (parts > 1) CHECK(inner_calls == parts);
      if (parts > 1)
        for (int p = 0; p < parts; ++p)
          CHECK(ranges[static_cast<std::size_t>(p)].second - ranges[static_cast<std::size_t>(p)].first >=
                min_items);
    }
}
