// Trainer semantics against independent references, at 1 and 2 layers: a brute-force TBPTT(k1, k2) that
// builds each update's unroll explicitly from Model::step with stop_gradient at its start (with k1 = k2 = T
// it is full BPTT), and an untruncated forward pass for the carried state, whose per-layer states are
// collected here (not through Model::end, which the trainers use).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "helpers.hpp"
#include "plugin_fixtures.hpp"
#include "rewind/autodiff/ops.hpp"
#include "rewind/trainers/csv.hpp"
#include "rewind/trainers/loop.hpp"
#include "rewind/trainers/schedule.hpp"
#include "trainer_fixtures.hpp"

using namespace rwd;
using autodiff::DType;
using autodiff::Tape;
using autodiff::Tensor;
using autodiff::Var;

using test::forward_states;
using test::layer_values;
using test::random_tokens;

namespace {

models::ModelConfig token_config(int layers = 1) {
  models::ModelConfig c;
  c.vocab_size = 5;
  c.input_size = 3;
  c.hidden_size = 4;
  c.layers = layers;
  c.dtype = DType::f64;
  c.init_range = 0.5;
  return c;
}

std::vector<Tensor> gradients(models::Model& m) {
  std::vector<Tensor> g;
  for (auto* p : m.parameters()) g.push_back(p->grad());
  return g;
}

double max_relative(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::int64_t k = 0; k < a[i].numel(); ++k) {
      const double x = a[i].get(k), y = b[i].get(k);
      worst = std::max(worst, std::abs(x - y) / std::max({std::abs(x), std::abs(y), 1e-12}));
    }
  return worst;
}

// ||a - b|| / ||b|| over all the tensors: how f32 gradients are compared, since a single element near zero
// may differ by much relative to itself.
double relative_difference(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  REQUIRE(a.size() == b.size());
  double difference = 0, norm = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::int64_t k = 0; k < a[i].numel(); ++k) {
      difference += std::pow(a[i].get(k) - b[i].get(k), 2);
      norm += std::pow(b[i].get(k), 2);
    }
  return std::sqrt(difference / norm);
}

struct Reference {
  double loss = 0;
  std::int64_t count = 0;
  std::vector<Tensor> gradients;
};

// The brute-force reference of one TBPTT(k1, k2) update with loss over [first, end): an explicit unroll
// from the forward state at max(0, end - k2), cut with stop_gradient, loss = mean over counted targets.
Reference reference_update(models::Model& model, const trainers::Dataset& data,
                           const std::vector<std::vector<Tensor>>& states, std::int64_t first,
                           std::int64_t end, std::int64_t k2) {
  for (auto* p : model.parameters()) p->zero_grad();
  Tape tape(DType::f64);
  const std::int64_t start = std::max<std::int64_t>(0, end - k2);
  models::ModelState state;
  model.begin(tape, states[static_cast<std::size_t>(start)], state);
  for (auto& layer : state)
    for (Var& v : layer) v = autodiff::stop_gradient(v);
  Reference r;
  for (std::int64_t t = first; t < end; ++t)
    for (std::int32_t target : data.step(t).target_tokens) r.count += target != trainers::no_target;
  Var loss;
  for (std::int64_t t = start; t < end; ++t) {
    const Var y = model.step(tape, data.step(t).tokens, state);
    if (t < first) continue;
    const Var l = autodiff::softmax_cross_entropy(
        y, data.step(t).target_tokens, {.ignore_index = trainers::no_target, .normalizer = double(r.count)});
    loss = loss.valid() ? loss + l : l;
  }
  tape.backward(loss);
  r.loss = loss.item();
  r.gradients = gradients(model);
  return r;
}

}  // namespace

TEST_CASE("full, truncated with k >= T and checkpointed all equal a brute-force full BPTT", "[trainers]") {
  constexpr std::int64_t T = 11;
  for (const char* cell : {"rnn", "gru", "lstm"})
    for (int layers : {1, 2}) {
      auto model = test::make_model(cell, token_config(layers), true);
      const auto data = random_tokens(3, T, 5);
      const Reference reference = reference_update(*model, *data, forward_states(*model, *data), 0, T, T);
      Tape tape(DType::f64);
      auto check = [&](const std::string& name, std::map<std::string, std::string> options) {
        INFO(cell << ", " << layers << " layer(s), " << name << " " << ::Catch::Detail::stringify(options));
        auto trainer = test::builtin_plugins().make_trainer(name, options);
        trainer->begin(*model, *data, tape);
        const trainers::UpdateStats stats = trainer->next(*model, *data, tape);
        CHECK(trainer->done());
        CHECK(stats.loss == Approx(reference.loss).epsilon(1e-12));
        CHECK(stats.loss_count == reference.count);
        CHECK(stats.first_step == 0);
        CHECK(stats.end_step == T);
        CHECK(max_relative(gradients(*model), reference.gradients) <= 1e-10);
        return stats;
      };
      check("full", {});
      check("truncated", {{"k", std::to_string(T)}});
      check("truncated", {{"k", "40"}});
      check("rtrl", {{"k", std::to_string(T)}});  // forward in time, one update over the whole sequence
      // Checkpointed: every segment but the last is run twice (once to keep its end state, once recorded).
      for (std::int64_t segment : {1, 3, 0, 11}) {
        const std::int64_t c =
            segment > 0 ? segment : static_cast<std::int64_t>(std::ceil(std::sqrt(static_cast<double>(T))));
        const std::int64_t last = T - (T + c - 1) / c * c + c;
        const trainers::UpdateStats stats = check("checkpointed", {{"segment", std::to_string(segment)}});
        CHECK(stats.steps_recorded == 2 * T - last);
      }
      // Memory budgets from the least to the whole tape: the plan's steps are run, the kept states and the
      // tape stay within the budget, and below the least the trainer refuses, stating it.
      auto full = test::builtin_plugins().make_trainer("full", {});
      full->begin(*model, *data, tape);
      const trainers::CheckpointCosts costs =
          trainers::measure_checkpoint_costs(*model, *data, tape, full->stored_state());
      const std::int64_t least = trainers::minimum_budget(T, costs),
                         whole = costs.fixed_bytes + T * costs.step_bytes;
      for (std::int64_t budget = least; budget < whole + (whole - least) / 6; budget += (whole - least) / 6) {
        INFO("budget " << budget << " bytes");
        const trainers::UpdateStats stats =
            check("checkpointed", {{"memory_budget", std::to_string(budget)}});
        CHECK(stats.steps_recorded == trainers::optimal_checkpoints(T, costs, budget).forward_steps);
        CHECK(stats.held_bytes <= budget);
      }
      CHECK(check("checkpointed", {{"memory_budget", std::to_string(whole)}}).steps_recorded == T);
      auto trainer = test::builtin_plugins().make_trainer("checkpointed",
                                                          {{"memory_budget", std::to_string(least - 1)}});
      trainer->begin(*model, *data, tape);
      CHECK_THROWS_WITH(trainer->next(*model, *data, tape),
                        Catch::Contains("below the minimum of " + std::to_string(least) + " bytes"));
    }
}

TEST_CASE("RTRL: online updates at fixed parameters sum to full BPTT's gradient, and its memory is bounded",
          "[trainers][rtrl]") {
  constexpr std::int64_t T = 10;
  const auto data = random_tokens(3, T, 4);
  for (const char* cell : {"rnn", "gru", "lstm"})
    for (bool fused : {true, false}) {
      INFO(cell << (fused ? "" : " (primitives)"));
      auto model = test::make_model(cell, token_config(2), fused);
      Tape tape(DType::f64);
      auto full = test::builtin_plugins().make_trainer("full", {});
      full->begin(*model, *data, tape);
      const trainers::UpdateStats whole = full->next(*model, *data, tape);
      const std::vector<Tensor> reference = gradients(*model);
      // Updates every 3 steps, no optimizer step between them: each update's gradient is the mean over its
      // targets, so weighted by their count they add up to the whole sequence's.
      auto rtrl = test::builtin_plugins().make_trainer("rtrl", {{"k", "3"}});
      rtrl->begin(*model, *data, tape);
      std::vector<Tensor> summed = gradients(*model);
      for (Tensor& g : summed) g = Tensor(g.shape(), g.dtype());
      double loss = 0;
      std::int64_t correct = 0;
      while (!rtrl->done()) {
        const trainers::UpdateStats stats = rtrl->next(*model, *data, tape);
        const double weight = static_cast<double>(stats.loss_count) / static_cast<double>(whole.loss_count);
        loss += stats.loss * weight;
        correct += stats.correct;
        const std::vector<Tensor> g = gradients(*model);
        for (std::size_t i = 0; i < g.size(); ++i)
          for (std::int64_t e = 0; e < g[i].numel(); ++e)
            summed[i].set(e, summed[i].get(e) + weight * g[i].get(e));
      }
      CHECK(loss == Approx(whole.loss).epsilon(1e-12));
      CHECK(correct == whole.correct);
      CHECK(max_relative(summed, reference) <= 1e-10);
      // UORO reads its loss at the same states: the same loss and predictions, whatever its estimate.
      auto uoro = test::builtin_plugins().make_trainer("uoro", {{"k", "3"}});
      uoro->begin(*model, *data, tape);
      double uoro_loss = 0;
      std::int64_t uoro_correct = 0;
      while (!uoro->done()) {
        const trainers::UpdateStats stats = uoro->next(*model, *data, tape);
        uoro_loss +=
            stats.loss * static_cast<double>(stats.loss_count) / static_cast<double>(whole.loss_count);
        uoro_correct += stats.correct;
      }
      CHECK(uoro_loss == Approx(whole.loss).epsilon(1e-12));
      CHECK(uoro_correct == whole.correct);
    }
  auto model = test::make_model("lstm", token_config(), true);
  Tape tape(DType::f64);
  auto small = test::builtin_plugins().make_trainer("rtrl", {{"memory_budget", "10kB"}});
  CHECK_THROWS_WITH(small->begin(*model, *data, tape), Catch::Contains("the influence matrices need") &&
                                                           Catch::Contains("above the memory budget"));
}

namespace {

// A recurrence diagonal in units, two state tensors: unit i of the new state reads unit i of the old only.
//   c' = sigmoid(a_f) c + tanh(a_g + s u h),   h' = tanh(c') sigmoid(a_o + v c),   a = x W^T + b
// The scalar s reaches every unit: SnAp-1 keeps its influence on the whole state.
class DiagonalCell final : public models::Cell {
 public:
  explicit DiagonalCell(const models::CellSpec& s)
      : input_(s.input_size),
        hidden_(s.hidden_size),
        w_(s.name("weight_ih"),
           s.initializer->uniform(autodiff::Shape::matrix(3 * hidden_, input_), s.dtype, 0.5)),
        b_(s.name("bias_ih"), s.initializer->uniform(autodiff::Shape::vector(3 * hidden_), s.dtype, 0.5)),
        u_(s.name("u"), s.initializer->uniform(autodiff::Shape::vector(hidden_), s.dtype, 0.9)),
        v_(s.name("v"), s.initializer->uniform(autodiff::Shape::vector(hidden_), s.dtype, 0.9)),
        s_(s.name("s"), s.initializer->uniform(autodiff::Shape::matrix(1, 1), s.dtype, 0.9)) {}
  std::int64_t input_size() const override { return input_; }
  std::int64_t hidden_size() const override { return hidden_; }
  int state_size() const override { return 2; }
  std::vector<autodiff::Parameter*> parameters() override { return {&w_, &b_, &u_, &v_, &s_}; }
  models::State step(Tape& t, const Var& x, const models::State& s) override {
    const Var a = autodiff::linear(x, t.param(w_), t.param(b_));
    auto gate = [&](int k) { return autodiff::slice_cols(a, k * hidden_, (k + 1) * hidden_); };
    const Var c =
        autodiff::sigmoid(gate(0)) * s[1] + autodiff::tanh(gate(1) + t.param(s_) * t.param(u_) * s[0]);
    return {autodiff::tanh(c) * autodiff::sigmoid(gate(2) + t.param(v_) * s[1]), c};
  }

 private:
  std::int64_t input_, hidden_;
  autodiff::Parameter w_, b_, u_, v_, s_;
};

// The built-in GRU's parameter layout with another step: snap1's closed form must not take it for a GRU.
class NotAGru final : public models::Cell {
 public:
  explicit NotAGru(const models::CellSpec& s)
      : input_(s.input_size),
        hidden_(s.hidden_size),
        w_ih_(s.name("weight_ih"),
              s.initializer->uniform(autodiff::Shape::matrix(3 * hidden_, input_), s.dtype, 0.5)),
        w_hh_(s.name("weight_hh"),
              s.initializer->uniform(autodiff::Shape::matrix(3 * hidden_, hidden_), s.dtype, 0.5)),
        b_ih_(s.name("bias_ih"), s.initializer->uniform(autodiff::Shape::vector(3 * hidden_), s.dtype, 0.5)),
        b_hh_(s.name("bias_hh"), s.initializer->uniform(autodiff::Shape::vector(3 * hidden_), s.dtype, 0.5)) {
  }
  std::int64_t input_size() const override { return input_; }
  std::int64_t hidden_size() const override { return hidden_; }
  std::vector<autodiff::Parameter*> parameters() override { return {&w_ih_, &w_hh_, &b_ih_, &b_hh_}; }
  models::State step(Tape& t, const Var& x, const models::State& s) override {
    const Var a = autodiff::linear(x, t.param(w_ih_), t.param(b_ih_)) +
                  autodiff::linear(s[0], t.param(w_hh_), t.param(b_hh_));
    return {autodiff::tanh(autodiff::slice_cols(a, 0, hidden_))};
  }

 private:
  std::int64_t input_, hidden_;
  autodiff::Parameter w_ih_, w_hh_, b_ih_, b_hh_;
};

// Random features and targets with a restart: 3 inputs, 2 outputs.
std::unique_ptr<trainers::SeriesData> random_series(std::int64_t batch, std::int64_t steps,
                                                    std::uint64_t seed) {
  auto data = std::make_unique<trainers::SeriesData>(batch, steps, 3, 2);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  for (std::int64_t t = 0; t < steps; ++t) {  // f32, as datasets hold them whatever the model's dtype
    for (std::int64_t e = 0; e < batch * 3; ++e) data->features(t).set(e, u(rng));
    for (std::int64_t e = 0; e < batch * 2; ++e) data->targets(t).set(e, u(rng));
  }
  data->set_reset(steps / 2, batch - 1);
  return data;
}

// Every update's gradient of an online trainer at fixed parameters.
std::vector<std::vector<Tensor>> online_gradients(models::Model& model, const trainers::Dataset& data,
                                                  const std::string& trainer,
                                                  std::map<std::string, std::string> options) {
  Tape tape(model.config().dtype);
  auto online = test::builtin_plugins().make_trainer(trainer, options);
  online->begin(model, data, tape);
  std::vector<std::vector<Tensor>> out;
  while (!online->done()) {
    online->next(model, data, tape);
    out.push_back(gradients(model));
  }
  return out;
}

void check_equal_updates(const std::vector<std::vector<Tensor>>& a, const std::vector<std::vector<Tensor>>& b,
                         double tolerance = 1e-12) {
  REQUIRE(a.size() == b.size());
  for (std::size_t u = 0; u < a.size(); ++u) {
    INFO("update " << u);
    CHECK(relative_difference(a[u], b[u]) <= tolerance);
  }
}

}  // namespace

TEST_CASE("SnAp-1: where the state Jacobian is diagonal in units it is RTRL", "[trainers][snap1]") {
  models::ModelConfig config;
  config.input_size = 3;
  config.hidden_size = 4;
  config.output_size = 2;
  config.dtype = DType::f64;
  models::Model model(config, [](const models::CellSpec& s) { return std::make_unique<DiagonalCell>(s); });
  const auto data = random_series(3, 9, 5);
  const auto snap1 = online_gradients(model, *data, "snap1", {{"k", "2"}});
  check_equal_updates(snap1, online_gradients(model, *data, "rtrl", {{"k", "2"}}));
  // Not a tautology: the influence carried across updates is what makes these equal.
  const auto truncated = online_gradients(model, *data, "truncated", {{"k", "2"}});
  CHECK(relative_difference(snap1.back(), truncated.back()) > 1e-3);
}

TEST_CASE("SnAp-1: a cell with the GRU's parameters but another step is refused by the closed form",
          "[trainers][snap1]") {
  models::ModelConfig config = token_config();
  models::Model model(config, [](const models::CellSpec& s) { return std::make_unique<NotAGru>(s); });
  const auto data = random_tokens(3, 6, 2);
  CHECK_THROWS_WITH(
      online_gradients(model, *data, "snap1", {}),
      Catch::Contains("layer 0's cell has the built-in GRU's or LSTM's parameters, but its step "
                      "is not theirs") &&
          Catch::Contains("closed_form=false"));
  CHECK(online_gradients(model, *data, "snap1", {{"closed_form", "false"}}).size() == 6);
}

TEST_CASE("SnAp-1: the closed form for the built-in GRU and LSTM is the generic path through Tape::jvp",
          "[trainers][snap1]") {
  auto tokens = random_tokens(3, 8, 6);
  tokens->set_reset(4, 1);
  const auto series = random_series(3, 8, 7);
  for (const char* cell : {"gru", "lstm"})
    for (bool fused : {true, false})
      for (int layers : {1, 2}) {
        INFO(cell << (fused ? "" : " (primitives)") << ", " << layers << " layer(s)");
        auto model = test::make_model(cell, token_config(layers), fused);
        check_equal_updates(
            online_gradients(*model, *tokens, "snap1", {{"k", "3"}}),
            online_gradients(*model, *tokens, "snap1", {{"k", "3"}, {"closed_form", "false"}}));
        models::ModelConfig config = token_config(layers);
        config.vocab_size = 0;
        config.output_size = 2;
        auto regression = test::make_model(cell, config, fused);
        check_equal_updates(
            online_gradients(*regression, *series, "snap1", {{"k", "2"}}),
            online_gradients(*regression, *series, "snap1", {{"k", "2"}, {"closed_form", "false"}}));
      }
}

TEST_CASE("SnAp-1: the closed form in f32, with tied weights and with its pass split over threads",
          "[trainers][snap1]") {
  auto tokens = random_tokens(2, 6, 9);
  tokens->set_reset(3, 0);
  for (const char* cell : {"gru", "lstm"}) {
    INFO(cell);
    models::ModelConfig f32 = token_config(2);
    f32.dtype = DType::f32;
    auto model = test::make_model(cell, f32, true);
    check_equal_updates(online_gradients(*model, *tokens, "snap1", {{"k", "3"}}),
                        online_gradients(*model, *tokens, "snap1", {{"k", "3"}, {"closed_form", "false"}}),
                        1e-5);
    models::ModelConfig tied = token_config();
    tied.input_size = tied.hidden_size;
    tied.tie_weights = true;
    auto tied_model = test::make_model(cell, tied, true);
    check_equal_updates(
        online_gradients(*tied_model, *tokens, "snap1", {{"k", "3"}}),
        online_gradients(*tied_model, *tokens, "snap1", {{"k", "3"}, {"closed_form", "false"}}));
  }
  // Hidden 64 at batch 2: W_hh's 256 rows of 64 split into two parts of rows wherever there are two threads.
  models::ModelConfig wide = token_config();
  wide.hidden_size = 64;
  auto model = test::make_model("lstm", wide, true);
  const auto short_tokens = random_tokens(2, 2, 10);
  check_equal_updates(
      online_gradients(*model, *short_tokens, "snap1", {{"k", "2"}}),
      online_gradients(*model, *short_tokens, "snap1", {{"k", "2"}, {"closed_form", "false"}}));
}

TEST_CASE("SnAp-1 refuses a token outside the vocabulary, naming it", "[trainers][snap1]") {
  auto tokens = random_tokens(2, 5, 11);
  tokens->input(3, 1) = 5;  // after the steps checked against the generic path, whose gather_rows refuses it
  auto model = test::make_model("lstm", token_config(), true);
  CHECK_THROWS_WITH(online_gradients(*model, *tokens, "snap1", {}),
                    Catch::Contains("token 5 of stream 1 is outside the vocabulary of 5"));
}

TEST_CASE("SnAp-1: biased on a dense LSTM, and strongly correlated with the full gradient early in training",
          "[trainers][snap1]") {
  models::ModelConfig config;
  config.input_size = 3;
  config.hidden_size = 16;
  config.output_size = 2;
  config.dtype = DType::f64;
  auto model = test::make_model("lstm", config, true);
  const auto data = random_series(4, 24, 8);
  const std::vector<Tensor> full = online_gradients(*model, *data, "full", {}).front();
  const std::vector<Tensor> snap1 = online_gradients(*model, *data, "snap1", {{"k", "24"}}).front();
  // Over the cell's parameters: the head's gradient is exact and would dominate.
  double dot = 0, a = 0, b = 0;
  for (std::size_t i = 0; i < full.size(); ++i)
    for (std::int64_t e = 0; e < full[i].numel() && model->parameters()[i]->name().starts_with("rnn."); ++e) {
      dot += full[i].get(e) * snap1[i].get(e);
      a += full[i].get(e) * full[i].get(e);
      b += snap1[i].get(e) * snap1[i].get(e);
    }
  const double cosine = dot / std::sqrt(a * b);
  INFO("cosine " << cosine << ", relative error " << relative_difference(snap1, full));
  CHECK(cosine > 0.9);
  CHECK(relative_difference(snap1, full) > 1e-6);
}

TEST_CASE("in f64 a memory budget's gradient is bitwise full BPTT's", "[trainers]") {
  // Over 512 rows (the head's chunks), with sequence restarts and a regression head in the second data set.
  const auto tokens = random_tokens(16, 48, 9);
  std::string csv = "a,b,start\n";
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-1, 1);
  for (int row = 0; row < 8 * 41; ++row)
    csv += std::to_string(u(rng)) + "," + std::to_string(u(rng)) + "," + (row % 37 == 5 ? "1" : "0") + "\n";
  const test::TempDir dir;
  const auto series = trainers::csv_streams(trainers::CsvTable::read(dir.write("series.csv", csv)),
                                            {.targets = {"b"}, .reset_column = "start"}, 0, 8 * 41, 8);
  Tape tape(DType::f64);
  for (const trainers::Dataset* data : {static_cast<const trainers::Dataset*>(tokens.get()),
                                        static_cast<const trainers::Dataset*>(series.get())})
    for (const auto& [cell, layers, fused] :
         {std::tuple{"rnn", 1, true},
          {"gru", 1, true},
          {"lstm", 1, true},
          {"gru", 2, true},
          {"lstm", 2, true},
          // Primitive cells, one op per step, that read each state tensor in one op (docs/tape.md).
          {"rnn", 2, false},
          {"lstm", 2, false}}) {
      models::ModelConfig config = token_config(layers);
      config.hidden_size = 8;
      if (data == series.get()) {
        config.vocab_size = 0;
        config.input_size = data->input_size();
        config.output_size = data->output_size();
      }
      auto model = test::make_model(cell, config, fused);
      auto gradient = [&](const std::string& name, std::map<std::string, std::string> options) {
        auto trainer = test::builtin_plugins().make_trainer(name, options);
        trainer->begin(*model, *data, tape);
        trainer->next(*model, *data, tape);
        return gradients(*model);
      };
      const std::vector<Tensor> full = gradient("full", {});
      auto sizing = test::builtin_plugins().make_trainer("full", {});
      sizing->begin(*model, *data, tape);
      const trainers::CheckpointCosts costs =
          trainers::measure_checkpoint_costs(*model, *data, tape, sizing->stored_state());
      const std::int64_t T = data->steps(), least = trainers::minimum_budget(T, costs),
                         whole = trainers::full_tape_bytes(T, costs);
      for (std::int64_t budget = least; budget < whole; budget += (whole - least) / 5) {
        INFO(cell << (fused ? "" : " (primitives)") << ", " << layers << " layer(s), "
                  << (data == series.get() ? "series" : "tokens") << ", budget " << budget << " of " << least
                  << " to " << whole);
        const std::vector<Tensor> planned =
            gradient("checkpointed", {{"memory_budget", std::to_string(budget)}});
        for (std::size_t i = 0; i < full.size(); ++i) {
          INFO(model->parameters()[i]->name());
          CHECK(std::memcmp(planned[i].raw(), full[i].raw(), full[i].bytes()) == 0);
        }
      }
    }
}

TEST_CASE("checkpointed within a memory budget: f32 gradients as full BPTT's, and dropout refused",
          "[trainers]") {
  models::ModelConfig config = token_config();
  config.hidden_size = 16;
  config.dtype = DType::f32;
  auto model = test::make_model("lstm", config, true);
  const auto data = random_tokens(4, 60, 5);
  Tape tape(DType::f32);
  std::int64_t recorded = 0;
  auto gradient = [&](const std::string& name, std::map<std::string, std::string> options) {
    auto trainer = test::builtin_plugins().make_trainer(name, options);
    trainer->begin(*model, *data, tape);
    recorded = trainer->next(*model, *data, tape).steps_recorded;
    return gradients(*model);
  };
  const std::vector<Tensor> full = gradient("full", {});
  for (const char* budget : {"25%", "50%", "80%"}) {
    INFO("budget " << budget);
    CHECK(relative_difference(gradient("checkpointed", {{"memory_budget", budget}}), full) <= 1e-6);
    CHECK(recorded > 60);
  }
  // Targets at the last steps only (recall:L): the costs are measured with the head over every step, as a
  // reversal with a target in it records, so the plan stays within the budget.
  auto sparse = random_tokens(4, 60, 5);
  for (std::int64_t t = 0; t < 55; ++t)
    for (std::int64_t b = 0; b < 4; ++b) sparse->target(t, b) = trainers::no_target;
  for (const char* budget : {"25%", "50%"}) {
    INFO("targets at the end, budget " << budget);
    auto full_trainer = test::builtin_plugins().make_trainer("full", {});
    full_trainer->begin(*model, *sparse, tape);
    full_trainer->next(*model, *sparse, tape);
    const std::vector<Tensor> reference = gradients(*model);
    auto trainer = test::builtin_plugins().make_trainer("checkpointed", {{"memory_budget", budget}});
    trainer->begin(*model, *sparse, tape);
    const trainers::CheckpointCosts costs =
        trainers::measure_checkpoint_costs(*model, *sparse, tape, trainer->stored_state());
    const trainers::UpdateStats stats = trainer->next(*model, *sparse, tape);
    CHECK(relative_difference(gradients(*model), reference) <= 1e-6);
    CHECK(stats.held_bytes <= trainers::parse_budget(budget, trainers::full_tape_bytes(60, costs)));
  }

  // One trainer on a pass of another length plans again: the gradient is still full BPTT's there.
  auto trainer_for_two = test::builtin_plugins().make_trainer("checkpointed", {{"memory_budget", "60%"}});
  for (std::int64_t T : {60, 23}) {
    INFO("T = " << T);
    const auto pass = random_tokens(4, T, 5);
    auto full_trainer = test::builtin_plugins().make_trainer("full", {});
    full_trainer->begin(*model, *pass, tape);
    full_trainer->next(*model, *pass, tape);
    const std::vector<Tensor> reference = gradients(*model);
    trainer_for_two->begin(*model, *pass, tape);
    CHECK(trainer_for_two->next(*model, *pass, tape).steps_recorded > T);
    CHECK(relative_difference(gradients(*model), reference) <= 1e-6);
  }

  // A state large beside the tape's alignment slack, and many budgets: the carried gradient, held beside
  // reversals and advances alike, must be in the plan's memory.
  {
    models::ModelConfig wide = config;
    wide.hidden_size = 64;
    auto big = test::make_model("lstm", wide, true);
    const auto rows = random_tokens(16, 40, 5);
    auto full_trainer = test::builtin_plugins().make_trainer("full", {});
    full_trainer->begin(*big, *rows, tape);
    const trainers::CheckpointCosts costs =
        trainers::measure_checkpoint_costs(*big, *rows, tape, full_trainer->stored_state());
    const std::int64_t least = trainers::minimum_budget(40, costs),
                       whole = trainers::full_tape_bytes(40, costs);
    for (std::int64_t budget = least; budget < whole; budget += (whole - least) / 40) {
      INFO("hidden 64, batch 16, budget " << budget << " of " << least << " to " << whole);
      auto trainer =
          test::builtin_plugins().make_trainer("checkpointed", {{"memory_budget", std::to_string(budget)}});
      trainer->begin(*big, *rows, tape);
      CHECK(trainer->next(*big, *rows, tape).held_bytes <= budget);
    }
  }

  config.dropout = 0.1;
  auto dropped = test::make_model("lstm", config, true);
  auto trainer = test::builtin_plugins().make_trainer("checkpointed", {{"memory_budget", "50%"}});
  trainer->begin(*dropped, *data, tape);
  CHECK_THROWS_WITH(trainer->next(*dropped, *data, tape), Catch::Contains("draws random numbers"));
}

TEST_CASE("truncated(k1, k2) equals a brute-force unroll per update", "[trainers]") {
  for (int layers : {1, 2}) {
    auto model = test::make_model("gru", token_config(layers), true);
    const auto data = random_tokens(2, 10, 9);
    const auto states = forward_states(*model, *data);
    const std::pair<int, int> windows[] = {{1, 1}, {3, 3}, {4, 4}, {2, 5}, {3, 7}, {4, 12}};
    for (auto [k1, k2] : windows) {
      INFO(layers << " layer(s), k1 = " << k1 << ", k2 = " << k2);
      Tape tape(DType::f64);
      auto trainer = test::builtin_plugins().make_trainer(
          "truncated", {{"k1", std::to_string(k1)}, {"k2", std::to_string(k2)}});
      trainer->begin(*model, *data, tape);
      int updates = 0;
      while (!trainer->done()) {
        const trainers::UpdateStats s = trainer->next(*model, *data, tape);
        const auto got = gradients(*model);
        CHECK(s.first_step == updates * k1);
        CHECK(s.end_step == std::min<std::int64_t>((updates + 1) * k1, 10));
        CHECK(s.steps_recorded == s.end_step - std::max<std::int64_t>(0, s.end_step - k2));
        const Reference want = reference_update(*model, *data, states, s.first_step, s.end_step, k2);
        CHECK(s.loss == Approx(want.loss).epsilon(1e-12));
        CHECK(s.loss_count == want.count);
        CHECK(max_relative(got, want.gradients) <= 1e-10);
        ++updates;
      }
      CHECK(updates == (10 + k1 - 1) / k1);
    }
  }
}

TEST_CASE("with fixed parameters the carried state equals one untruncated forward pass", "[trainers]") {
  for (const char* cell : {"lstm", "gru"})
    for (int layers : {1, 2}) {
      auto model = test::make_model(cell, token_config(layers), true);
      const auto data = random_tokens(2, 13, 4);
      const auto states = forward_states(*model, *data);
      Tape tape(DType::f64);
      auto trainer = test::builtin_plugins().make_trainer("truncated", {{"k", "4"}});
      trainer->begin(*model, *data, tape);
      while (!trainer->done()) {
        trainer->next(*model, *data, tape);
        INFO(cell << ", " << layers << " layer(s), position " << trainer->position());
        const auto& expected = states[static_cast<std::size_t>(trainer->stored_step())];
        // k1 = k2: the state is carried from where the update ended, unless the next update is the shorter
        // last one, whose unroll reaches k2 steps back from the end of the data.
        if (trainer->position() + 4 <= 13 || trainer->done())
          REQUIRE(trainer->stored_step() == trainer->position());
        else
          REQUIRE(trainer->stored_step() == 13 - 4);
        REQUIRE(trainer->stored_state().size() == expected.size());
        for (std::size_t i = 0; i < expected.size(); ++i)
          for (std::int64_t k = 0; k < expected[i].numel(); ++k)
            CHECK(trainer->stored_state()[i].get(k) == Approx(expected[i].get(k)).epsilon(1e-13));
      }
    }
}

TEST_CASE("a reset restarts exactly the rows it marks and blocks their gradient", "[trainers]") {
  auto model = test::make_model("gru", token_config(), true);
  auto data = random_tokens(2, 8, 3);
  data->set_reset(5, 1);  // row 1 starts a new sequence at step 5
  const auto plain = random_tokens(2, 8, 3);
  // Row 1 from step 5 on, run alone from a zero state.
  auto tail = std::make_unique<trainers::TokenData>(2, 3, 5);
  for (std::int64_t t = 0; t < 3; ++t)
    for (std::int64_t b = 0; b < 2; ++b) tail->input(t, b) = data->input(t + 5, 1);
  Tape tape(DType::f64);
  auto trainer = test::builtin_plugins().make_trainer("truncated", {{"k", "8"}});
  trainer->begin(*model, *data, tape);
  trainer->next(*model, *data, tape);
  const auto unreset = forward_states(*model, *plain);
  const auto fresh = forward_states(*model, *tail);
  const std::vector<Tensor>& final_state = trainer->stored_state();
  const std::int64_t h = model->config().hidden_size;
  for (std::int64_t j = 0; j < h; ++j) {
    CHECK(final_state[0].at(0, j) == Approx(unreset[8][0].at(0, j)).epsilon(1e-14));  // row 0 untouched
    CHECK(final_state[0].at(1, j) == Approx(fresh[3][0].at(0, j)).epsilon(1e-14));    // row 1 restarted
  }

  // The gradient of a loss after the reset does not depend on row 1's inputs before it.
  auto only_after = [&](std::int32_t early_input) {
    auto d = random_tokens(2, 8, 3);
    d->set_reset(5, 1);
    for (std::int64_t t = 0; t < 8; ++t) d->target(t, 0) = d->target(t, 1) = trainers::no_target;
    d->target(7, 1) = 2;
    for (std::int64_t t = 0; t < 5; ++t) d->input(t, 1) = early_input;
    auto full = test::builtin_plugins().make_trainer("full");
    full->begin(*model, *d, tape);
    full->next(*model, *d, tape);
    return gradients(*model);
  };
  const auto a = only_after(0), b = only_after(4);
  CHECK(max_relative(a, b) == 0);
}

TEST_CASE("tape memory: truncated is flat in T, full grows linearly, checkpointed is a fraction",
          "[trainers][memory][serial]") {
  models::ModelConfig c;
  c.vocab_size = 5;
  c.hidden_size = 8;
  c.input_size = 4;
  auto model = test::make_model("lstm", c, true);
  auto peak = [&](const std::string& name, std::map<std::string, std::string> options, std::int64_t steps) {
    const auto data = random_tokens(2, steps, 1);
    Tape tape;
    auto trainer = test::builtin_plugins().make_trainer(name, options);
    trainer->begin(*model, *data, tape);
    std::size_t highest = 0;
    while (!trainer->done()) highest = std::max(highest, trainer->next(*model, *data, tape).tape.peak_bytes);
    return static_cast<double>(highest);
  };
  const double short_run = peak("truncated", {{"k", "20"}}, 1000);
  const double long_run = peak("truncated", {{"k", "20"}}, 100000);
  CHECK(long_run / short_run == Approx(1.0).margin(0.01));
  const double full_1k = peak("full", {}, 1000), full_2k = peak("full", {}, 2000);
  CHECK(full_2k / full_1k == Approx(2.0).margin(0.05));
  const double full_10k = peak("full", {}, 10000);
  const double checkpointed_10k = peak("checkpointed", {}, 10000);
  INFO("full " << full_10k << " B, checkpointed " << checkpointed_10k << " B");
  CHECK(checkpointed_10k < 0.1 * full_10k);
}

TEST_CASE("trainer options and data are checked", "[trainers]") {
  CHECK_THROWS_WITH(test::builtin_plugins().make_trainer("truncated", {{"k1", "5"}, {"k2", "3"}}),
                    Catch::Contains("need 1 <= k1 <= k2, got k1 = 5, k2 = 3"));
  CHECK_THROWS_WITH(test::builtin_plugins().make_trainer("truncated", {{"k", "x"}}),
                    Catch::Contains("trainer 'truncated': option 'k' expects a integer, got 'x'"));
  auto model = test::make_model("rnn", token_config(), true);
  trainers::TokenData wrong(2, 4, 7);
  Tape tape(DType::f64);
  CHECK_THROWS_WITH(test::builtin_plugins().make_trainer("full")->begin(*model, wrong, tape),
                    Catch::Contains("the data has a vocabulary of 7, the model 5"));
}

// The trade-off, shown: on recall:20 only a k2 that spans the sequence lets the loss at its end reach the
// first symbol. L = 20, 4 symbols, batch 32, LSTM hidden 32 with forget bias 3, Adam lr 1e-2, fixed seeds;
// a fresh sample of 10 sequences per row every pass. Accuracy is on the recalled symbol over the last 200
// of 2,000 updates.
TEST_CASE("on recall:20, TBPTT(5, 25) learns the first symbol and TBPTT(5, 5) cannot",
          "[trainers][recall][serial]") {
  auto accuracy = [](int k1, int k2) {
    models::ModelConfig c;
    c.vocab_size = 4;
    c.input_size = 4;
    c.hidden_size = 32;
    auto model = test::make_model("lstm", c, true, {{"forget_bias", "3"}});
    auto trainer = test::builtin_plugins().make_trainer(
        "truncated", {{"k1", std::to_string(k1)}, {"k2", std::to_string(k2)}});
    trainers::Optimizer adam({.kind = "adam", .lr = 1e-2});
    std::unique_ptr<trainers::TokenData> data;
    std::int64_t data_pass = -1;
    trainers::Loop loop(*model, *trainer, adam,
                        [&](std::int64_t pass) -> const trainers::Dataset& {
                          if (pass != data_pass) data = trainers::recall_task(20, 4, 32, 10, 1000 + pass);
                          data_pass = pass;
                          return *data;
                        },
                        {.max_updates = 2000});
    std::int64_t correct = 0, count = 0;
    loop.run([&](const trainers::UpdateReport& r) {
      if (r.update > 1800) correct += r.stats.correct, count += r.stats.loss_count;
      return true;
    });
    REQUIRE(count > 0);
    return static_cast<double>(correct) / static_cast<double>(count);
  };
  const double short_history = accuracy(5, 5);
  const double long_history = accuracy(5, 25);
  INFO("TBPTT(5, 5): " << short_history << ", TBPTT(5, 25): " << long_history << " (chance 0.25)");
  // Above chance is possible without learning to store: forget bias 3 keeps some of the first symbol in c,
  // and 2,000 updates can learn to read it out; learning to write it needs the gradient of k2 > L.
  CHECK(short_history < 0.6);
  CHECK(long_history > 0.95);
}

TEST_CASE("the loop stops on a non-finite loss and names the update and the parameter", "[trainers]") {
  auto model = test::make_model("rnn", token_config(), true);
  model->parameter("rnn.weight_hh_l0").value().set(3, std::nan(""));
  const auto data = random_tokens(2, 6, 1);
  auto trainer = test::builtin_plugins().make_trainer("truncated", {{"k", "3"}});
  trainers::Optimizer sgd({.kind = "sgd", .lr = 0.1});
  trainers::Loop loop(*model, *trainer, sgd, [&](std::int64_t) -> const trainers::Dataset& { return *data; },
                      {});
  CHECK_THROWS_WITH(
      loop.run([](const trainers::UpdateReport&) { return true; }),
      Catch::Contains(
          "update 1 (steps 0 to 3 of pass 0): the loss is nan; parameter 'rnn.weight_hh_l0' holds a "
          "non-finite value; first non-finite value on the tape: parameter [4, 4] "
          "'rnn.weight_hh_l0'"));
}

TEST_CASE("plain SGD with lr 1 moves each parameter by minus its gradient", "[trainers]") {
  auto model = test::make_model("gru", token_config(), true);
  const auto data = random_tokens(2, 6, 2);
  auto trainer = test::builtin_plugins().make_trainer("full");
  Tape tape(DType::f64);
  trainer->begin(*model, *data, tape);
  trainer->next(*model, *data, tape);
  std::vector<Tensor> before;
  for (auto* p : model->parameters()) before.push_back(p->value());
  trainers::Optimizer({.kind = "sgd", .lr = 1.0}).step(model->parameters());
  for (std::size_t i = 0; i < before.size(); ++i)
    for (std::int64_t k = 0; k < before[i].numel(); ++k)
      CHECK(model->parameters()[i]->value().get(k) ==
            before[i].get(k) - model->parameters()[i]->grad().get(k));
}

TEST_CASE("CSV time series: next-step targets, explicit targets, resets and sequence boundaries",
          "[trainers][csv]") {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("rewind_series_" + std::to_string(::getpid()) + ".csv"))
          .string();
  std::ofstream(path) << "a, b,start\n1,10,1\n2,20,0\n3,30,0\n4,40,1\n5,50,0\n6,60,0\n7,70,0\n";
  const trainers::CsvTable table = trainers::CsvTable::read(path);
  CHECK(table.columns == std::vector<std::string>{"a", "b", "start"});
  CHECK(table.rows() == 7);

  // Next-step prediction of b from a and b, one stream: 6 steps; row 3 starts a sequence.
  auto next = trainers::csv_streams(table, {.targets = {"b"}, .reset_column = "start"}, 0, 7, 1);
  REQUIRE(next->steps() == 6);
  CHECK(next->input_size() == 2);
  CHECK(next->output_size() == 1);
  CHECK(next->step(1).features->get(0) == 2.0);
  CHECK(next->step(1).target_values->get(0) == 30.0);
  CHECK(next->step(3).reset.size() == 1);      // the state restarts at row 3
  CHECK(next->step(2).loss_rows.size() == 1);  // row 2's "next value" belongs to the next sequence
  CHECK(next->step(2).loss_rows[0] == 0);
  CHECK(trainers::count_targets(*next, 0, 6) == 5);

  // Explicit targets: b of the same row, not an input; two streams of 3 steps.
  auto same = trainers::csv_streams(table, {.target_columns = {"b"}, .reset_column = "start"}, 0, 7, 2);
  CHECK(same->steps() == 3);
  CHECK(same->input_size() == 1);
  CHECK(same->step(0).target_values->get(1) == 40.0);  // stream 1 starts at row 3

  CHECK_THROWS_WITH(table.column("c"), Catch::Contains("no column 'c' (columns: a, b, start)"));
  std::ofstream(path) << "a,b\n1,2\n3,x\n";
  CHECK_THROWS_WITH(trainers::series_frame(trainers::CsvTable::read(path), {}),
                    Catch::Contains("line 3, column 'b': 'x' is not a finite number"));
  std::ofstream(path) << "a,b\n1,2,3\n";
  CHECK_THROWS_WITH(trainers::CsvTable::read(path), Catch::Contains("line 2: 3 values for 2 columns"));
  std::filesystem::remove(path);
}

TEST_CASE("each loop update is the scheduled rate times the clipped full gradient", "[trainers]") {
  const auto data = random_tokens(2, 6, 8);
  for (double clip : {0.0, 1e-2}) {
    INFO("clip " << clip);
    auto model = test::make_model("gru", token_config(2), true);
    auto reference_model = test::make_model("gru", token_config(2), true);
    auto trainer = test::builtin_plugins().make_trainer("full");
    const double lr = 0.5, gamma = 0.1;
    trainers::Optimizer sgd({.kind = "sgd", .lr = lr, .step_every = 2, .gamma = gamma});
    trainers::Loop loop(*model, *trainer, sgd,
                        [&](std::int64_t) -> const trainers::Dataset& { return *data; },
                        {.clip = clip, .max_updates = 4});
    std::vector<Tensor> before;
    for (auto* p : model->parameters()) before.push_back(p->value());
    int updates = 0;
    loop.run([&](const trainers::UpdateReport& r) {
      ++updates;
      // The gradient at the parameters before this update, from a second model given those values.
      for (std::size_t i = 0; i < before.size(); ++i) reference_model->parameters()[i]->value() = before[i];
      const Reference g =
          reference_update(*reference_model, *data, forward_states(*reference_model, *data), 0, 6, 6);
      double squares = 0;
      for (const Tensor& t : g.gradients)
        for (std::int64_t k = 0; k < t.numel(); ++k) squares += t.get(k) * t.get(k);
      const double norm = std::sqrt(squares);
      const double scale = clip > 0 ? std::min(1.0, clip / norm) : 1.0;
      if (clip > 0) REQUIRE(norm > clip);  // clipping is active
      const double rate = lr * std::pow(gamma, (updates - 1) / 2);
      CHECK(r.update == updates);
      CHECK(r.lr == Approx(rate).epsilon(1e-15));
      CHECK(r.grad_norm == Approx(norm).epsilon(1e-10));
      CHECK(r.stats.loss == Approx(g.loss).epsilon(1e-12));
      for (std::size_t i = 0; i < before.size(); ++i)
        for (std::int64_t k = 0; k < before[i].numel(); ++k)
          CHECK(model->parameters()[i]->value().get(k) ==
                Approx(before[i].get(k) - rate * scale * g.gradients[i].get(k)).epsilon(1e-10).margin(1e-12));
      before.clear();
      for (auto* p : model->parameters()) before.push_back(p->value());
      return true;
    });
    CHECK(updates == 4);
  }
}

TEST_CASE("gradient accumulation: one update from several windows, their gradients weighted by their targets",
          "[trainers][accumulate]") {
  // 9 steps, truncated(3): three windows a pass. Accumulating 2: the first update is windows [0, 3) and [3,
  // 6) at the same parameters; the second is the pass's last window alone (a shorter group).
  const auto data = random_tokens(2, 9, 5);
  auto model = test::make_model("lstm", token_config(2), true);
  auto reference_model = test::make_model("lstm", token_config(2), true);
  auto trainer = test::builtin_plugins().make_trainer("truncated", {{"k", "3"}});
  const double lr = 0.3;
  trainers::Optimizer sgd({.kind = "sgd", .lr = lr});
  trainers::Loop loop(*model, *trainer, sgd, [&](std::int64_t) -> const trainers::Dataset& { return *data; },
                      {.accumulate = 2, .max_passes = 1});
  std::vector<Tensor> before;
  for (auto* p : model->parameters()) before.push_back(p->value());
  int updates = 0;
  loop.run([&](const trainers::UpdateReport& r) {
    ++updates;
    if (updates == 1) {
      // The reference: both windows' brute-force gradients at the initial parameters, each the mean over its
      // own targets, combined into the mean over all of them.
      for (std::size_t i = 0; i < before.size(); ++i) reference_model->parameters()[i]->value() = before[i];
      const auto states = forward_states(*reference_model, *data);
      const Reference a = reference_update(*reference_model, *data, states, 0, 3, 3);
      const Reference b = reference_update(*reference_model, *data, states, 3, 6, 3);
      const double n = static_cast<double>(a.count + b.count);
      CHECK(r.stats.loss_count == a.count + b.count);
      CHECK(r.stats.loss == Approx((a.count * a.loss + b.count * b.loss) / n).epsilon(1e-12));
      CHECK(r.stats.first_step == 0);
      CHECK(r.stats.end_step == 6);
      for (std::size_t i = 0; i < before.size(); ++i)
        for (std::int64_t k = 0; k < before[i].numel(); ++k) {
          const double g = (a.count * a.gradients[i].get(k) + b.count * b.gradients[i].get(k)) / n;
          CHECK(model->parameters()[i]->value().get(k) ==
                Approx(before[i].get(k) - lr * g).epsilon(1e-10).margin(1e-12));
        }
    } else {
      CHECK(r.stats.first_step == 6);
      CHECK(r.stats.end_step == 9);
    }
    return true;
  });
  CHECK(updates == 2);
  CHECK_THROWS_WITH(
      trainers::Loop(*model, *trainer, sgd, [&](std::int64_t) -> const trainers::Dataset& { return *data; },
                     {.accumulate = 0}),
      Catch::Contains("accumulate: windows per update must be >= 1"));
}
