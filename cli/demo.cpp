// `rewind demo`: the main job until the trainers land. A character-level tanh RNN written with the public
// autodiff primitives, run on text three ways: one full-BPTT window, the same data in truncated windows with
// the state carried over, and a short truncated-BPTT training run whose loss should fall.
#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.hpp"
#include "parse.hpp"
#include "rewind/autodiff/ops.hpp"
#include "rewind/trainers/data.hpp"
#include "rewind/trainers/optim.hpp"

namespace po = boost::program_options;
using namespace rwd::autodiff;

namespace rwd::cli {
namespace {

struct Corpus {
  std::string vocabulary;
  std::vector<std::int32_t> ids;
};

Corpus read_corpus(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open data file '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  const std::string s = text.str();
  if (s.size() < 2) throw std::runtime_error("data file '" + path + "' has fewer than 2 characters");
  const trainers::CharVocabulary vocabulary = trainers::CharVocabulary::of(s);
  return {vocabulary.symbols, vocabulary.encode(s)};
}

// h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), logits = head(h_t): PyTorch's nn.RNN layout and names.
struct CharRnn {
  std::vector<Parameter> params;

  CharRnn(std::int64_t vocab, std::int64_t hidden, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    const double bound = 1.0 / std::sqrt(static_cast<double>(hidden));
    auto make = [&](const char* name, Shape shape, bool normal) {
      Tensor t(shape, DType::f32);
      std::uniform_real_distribution<double> uniform(-bound, bound);
      std::normal_distribution<double> gauss;
      for (std::int64_t i = 0; i < t.numel(); ++i) t.set(i, normal ? gauss(rng) : uniform(rng));
      params.emplace_back(name, std::move(t));
    };
    make("embedding.weight", Shape::matrix(vocab, hidden), true);
    make("rnn.weight_ih_l0", Shape::matrix(hidden, hidden), false);
    make("rnn.weight_hh_l0", Shape::matrix(hidden, hidden), false);
    make("rnn.bias_ih_l0", Shape::vector(hidden), false);
    make("rnn.bias_hh_l0", Shape::vector(hidden), false);
    make("head.weight", Shape::matrix(vocab, hidden), false);
    make("head.bias", Shape::vector(vocab), false);
  }

  // Records `steps` steps from state h for each of the batch rows; the loss is summed / normalizer.
  Var unroll(Tape& tape, Var& h, const Corpus& data, const std::vector<std::int64_t>& cursor,
             std::int64_t start, std::int64_t steps, double normalizer) {
    const auto batch = static_cast<std::int64_t>(cursor.size());
    std::vector<std::int32_t> inputs(batch), targets(batch);
    Var loss;
    for (std::int64_t t = start; t < start + steps; ++t) {
      for (std::int64_t b = 0; b < batch; ++b) {
        inputs[b] = data.ids[cursor[b] + t];
        targets[b] = data.ids[cursor[b] + t + 1];
      }
      Var x = gather_rows(tape.param(params[0]), inputs);
      Var pre = matmul(x, tape.param(params[1]), Transpose::no, Transpose::yes) + tape.param(params[3]);
      Var recurrent = matmul(h, tape.param(params[2]), Transpose::no, Transpose::yes) + tape.param(params[4]);
      h = tanh(pre + recurrent);
      Var logits = matmul(h, tape.param(params[5]), Transpose::no, Transpose::yes) + tape.param(params[6]);
      Var step_loss = softmax_cross_entropy(logits, targets, {.normalizer = normalizer});
      loss = loss.valid() ? loss + step_loss : step_loss;
    }
    return loss;
  }

  void zero_grad() {
    for (Parameter& p : params) p.zero_grad();
  }
  std::vector<Tensor> gradients() const {
    std::vector<Tensor> g;
    for (const Parameter& p : params) g.push_back(p.grad());
    return g;
  }
};

double norm(const Tensor& t) {
  double s = 0;
  for (std::int64_t i = 0; i < t.numel(); ++i) s += t.get(i) * t.get(i);
  return std::sqrt(s);
}

std::string mib(std::size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

void print_memory(const char* label, const MemoryStats& m) {
  std::printf("  %-34s nodes %7zu | records %s | tensors %s | peak %s | reserved %s\n", label, m.nodes,
              mib(m.node_bytes).c_str(), mib(m.tensor_bytes).c_str(), mib(m.peak_bytes).c_str(),
              mib(m.reserved_bytes).c_str());
}

// Part 3: what a trainer does, written out: windows of k steps, the state carried between them, SGD.
struct DemoTraining {
  std::int64_t updates = 0, k = 0;
  double lr = 0, clip = 0;
};
void train_truncated(CharRnn& model, Tape& tape, const Corpus& data, const std::vector<std::int64_t>& cursor,
                     const DemoTraining& run, const Tensor& h0) {
  const std::int64_t updates = run.updates, k = run.k, batch = h0.shape().rows;
  const auto stream_length = static_cast<std::int64_t>(data.ids.size()) / batch;
  std::printf("\n3. Training %lld truncated-BPTT updates (k = %lld, SGD lr %.2f, clip %.2f)\n",
              static_cast<long long>(updates), static_cast<long long>(k), run.lr, run.clip);
  Tensor carried = h0;
  std::int64_t position = 0;
  double running = 0;
  std::vector<Parameter*> parameters;
  for (Parameter& p : model.params) parameters.push_back(&p);
  trainers::Optimizer sgd({.kind = "sgd", .lr = run.lr});
  const auto began = std::chrono::steady_clock::now();
  for (std::int64_t u = 1; u <= updates; ++u) {
    if (position + k + 1 > stream_length) position = 0, carried = h0;
    model.zero_grad();
    tape.clear();
    Var hw = tape.input(carried);
    const Var loss = model.unroll(tape, hw, data, cursor, position, k, static_cast<double>(batch * k));
    tape.backward(loss);
    hw.copy_to(carried);
    position += k;
    trainers::clip_grad_norm(parameters, run.clip);
    sgd.step(parameters);
    running = u == 1 ? loss.item() : 0.9 * running + 0.1 * loss.item();
    if (u == 1 || u % 50 == 0 || u == updates)
      std::printf("  update %5lld  loss %.4f (smoothed %.4f)\n", static_cast<long long>(u), loss.item(),
                  running);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  std::printf("  %.0f time steps x batch per second\n", static_cast<double>(updates * k * batch) / seconds);
}

}  // namespace

int run_demo(int argc, const char* const* argv) {
  std::string data_path = REWIND_DEFAULT_DATA;
  std::int64_t hidden = 64, batch = 16, steps = 200, k = 25, updates = 300;
  double lr = 1.0, clip = 1.0;
  std::uint64_t seed = 1;
  po::options_description options("rewind demo options");
  options.add_options()("help,h", "show this help")("data", po::value(&data_path)->default_value(data_path),
                                                    "text file, read as characters")(
      "hidden", po::value(&hidden)->default_value(hidden), "hidden size")(
      "batch", po::value(&batch)->default_value(batch), "parallel streams")(
      "steps", po::value(&steps)->default_value(steps), "time steps of the full-BPTT window")(
      "k", po::value(&k)->default_value(k), "truncation window")(
      "updates", po::value(&updates)->default_value(updates), "truncated-BPTT training updates")(
      "lr", po::value(&lr)->default_value(lr), "SGD learning rate")(
      "clip", po::value(&clip)->default_value(clip), "gradient-norm clip")(
      "seed", po::value(&seed)->default_value(seed), "initialisation seed");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, options, vm, "usage: rewind demo [options]")) return 0;
  if (hidden < 1 || batch < 1 || steps < 1 || k < 1 || updates < 0)
    throw std::invalid_argument("--hidden, --batch, --steps and --k must be positive");

  const Corpus data = read_corpus(data_path);
  const auto vocab = static_cast<std::int64_t>(data.vocabulary.size());
  const auto stream_length = static_cast<std::int64_t>(data.ids.size()) / batch;
  if (stream_length < steps + 1)
    throw std::invalid_argument("data file '" + data_path + "' is too short for " + std::to_string(batch) +
                                " streams of " + std::to_string(steps) + " steps");
  std::vector<std::int64_t> cursor(batch);
  for (std::int64_t b = 0; b < batch; ++b) cursor[b] = b * stream_length;
  std::printf("rewind demo: %s, %zu characters, vocabulary %lld, tanh RNN hidden %lld, batch %lld\n\n",
              data_path.c_str(), data.ids.size(), static_cast<long long>(vocab),
              static_cast<long long>(hidden), static_cast<long long>(batch));

  CharRnn model(vocab, hidden, seed);
  Tape tape;
  const Tensor h0(Shape::matrix(batch, hidden), DType::f32);
  const double normalizer = static_cast<double>(batch * steps);

  std::printf("1. Full BPTT over %lld steps: one tape, one backward\n", static_cast<long long>(steps));
  Var h = tape.input(h0);
  const Var full_loss = model.unroll(tape, h, data, cursor, 0, steps, normalizer);
  print_memory("tape after forward", tape.memory());
  tape.backward(full_loss);
  print_memory("tape after backward", tape.memory());
  const std::vector<Tensor> full_grad = model.gradients();
  std::printf("  loss %.4f (ln %lld = %.4f)\n", full_loss.item(), static_cast<long long>(vocab),
              std::log(double(vocab)));
  for (const Parameter& p : model.params)
    std::printf("    |grad %-18s| = %.6f\n", p.name().c_str(), norm(p.grad()));

  std::printf("\n2. Truncated BPTT, windows of %lld steps, state carried over with copy_to + input\n",
              static_cast<long long>(k));
  model.zero_grad();
  tape.clear();
  tape.reset_peak();
  Tensor carried = h0;
  for (std::int64_t start = 0; start < steps; start += k) {
    tape.clear();
    Var hw = tape.input(carried);
    tape.backward(model.unroll(tape, hw, data, cursor, start, std::min(k, steps - start), normalizer));
    hw.copy_to(carried);
  }
  print_memory("tape peak over all windows", tape.memory());
  double dot = 0, nf = 0, nt = 0;
  for (std::size_t i = 0; i < full_grad.size(); ++i)
    for (std::int64_t j = 0; j < full_grad[i].numel(); ++j) {
      const double a = full_grad[i].get(j), b = model.params[i].grad().get(j);
      dot += a * b, nf += a * a, nt += b * b;
    }
  std::printf("  cosine(truncated gradient, full gradient) = %.4f: truncation's bias, measured\n",
              dot / std::sqrt(nf * nt));

  train_truncated(model, tape, data, cursor, {.updates = updates, .k = k, .lr = lr, .clip = clip}, h0);
  print_memory("tape peak while training", tape.memory());
  return 0;
}

}  // namespace rwd::cli
