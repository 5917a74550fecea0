#include "rewind/runtime/online.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "rewind/models/safetensors.hpp"
#include "rewind/trainers/loop.hpp"

namespace rwd::runtime {

using autodiff::DType;
using autodiff::Tensor;

namespace {

constexpr const char* format = "rewind.online";  // the format of an online save, and its version
constexpr const char* format_version = "1";

// The last steps of the stream, by absolute step index, as a dataset of one stream: what record_window reads
// for an update. Step s holds row s's inputs (model units) and row s + 1's targets once they are known; for
// a token model (vocab > 0) token s and token s + 1.
class RingSteps final : public trainers::Dataset {
 public:
  RingSteps(std::int64_t capacity, std::int64_t inputs, std::int64_t outputs, std::int64_t vocab, DType dtype)
      : capacity_(capacity),
        inputs_(inputs),
        outputs_(outputs),
        vocab_(vocab),
        reset_(static_cast<std::size_t>(capacity), 0),
        has_loss_(static_cast<std::size_t>(capacity), 0) {
    if (vocab > 0) {
      tokens_.assign(static_cast<std::size_t>(capacity), 0);
      target_tokens_.assign(static_cast<std::size_t>(capacity), trainers::no_target);
      return;
    }
    for (std::int64_t i = 0; i < capacity; ++i) {
      features_.emplace_back(autodiff::Shape::matrix(1, inputs), dtype);
      targets_.emplace_back(autodiff::Shape::matrix(1, outputs), dtype);
    }
  }
  std::int64_t batch() const override { return 1; }
  std::int64_t steps() const override { return steps_; }
  std::int64_t vocab_size() const override { return vocab_; }
  std::int64_t input_size() const override { return inputs_; }
  std::int64_t output_size() const override { return vocab_ > 0 ? vocab_ : outputs_; }
  trainers::Step step(std::int64_t t) const override {
    if (t < steps_ - capacity_ || t >= steps_)
      throw std::logic_error("online: step " + std::to_string(t) + " has left the ring (steps " +
                             std::to_string(steps_ - capacity_) + " to " + std::to_string(steps_) + ")");
    const std::size_t i = slot(t);
    trainers::Step s;
    if (vocab_ > 0) {
      s.tokens = {&tokens_[i], 1};
      s.target_tokens = {&target_tokens_[i], 1};
    } else {
      s.features = &features_[i];
      s.target_values = &targets_[i];
      s.has_loss = has_loss_[i] != 0;
    }
    if (reset_[i]) s.reset = {&reset_[i], 1};
    return s;
  }

  // Step `steps()`: a row read, its target not known yet.
  void push(std::span<const double> inputs, bool reset) {
    const std::size_t i = slot(steps_++);
    for (std::size_t c = 0; c < inputs.size(); ++c) features_[i].set(static_cast<std::int64_t>(c), inputs[c]);
    reset_[i] = reset ? 1 : 0;
    has_loss_[i] = 0;
  }
  void push_token(std::int32_t token, bool reset) {
    const std::size_t i = slot(steps_++);
    tokens_[i] = token;
    target_tokens_[i] = trainers::no_target;
    reset_[i] = reset ? 1 : 0;
  }
  // The target of step t (the token after it), or no_target when that token starts another sequence.
  void set_target_token(std::int64_t t, std::int32_t target) { target_tokens_[slot(t)] = target; }
  // The target of step t (the row after it), or none when that row starts another sequence.
  void set_target(std::int64_t t, std::span<const double> targets, bool has_loss) {
    const std::size_t i = slot(t);
    for (std::size_t c = 0; c < targets.size(); ++c)
      targets_[i].set(static_cast<std::int64_t>(c), targets[c]);
    has_loss_[i] = has_loss ? 1 : 0;
  }

  // For a save: the slots as two tensors and a flag string, and back.
  void put(std::vector<std::pair<std::string, const Tensor*>>& tensors,
           std::map<std::string, std::string>& meta, std::vector<Tensor>& keep) const {
    meta["rewind.online.steps"] = std::to_string(steps_);
    std::string flags;
    for (std::size_t i = 0; i < reset_.size(); ++i)
      flags += static_cast<char>('0' + reset_[i] + 2 * has_loss_[i]);
    meta["rewind.online.ring_flags"] = flags;
    if (vocab_ > 0) {  // ids as doubles: exact below 2^53
      for (const auto& [name, ids] : {std::pair{"online.ring.tokens", &tokens_},
                                      std::pair{"online.ring.target_tokens", &target_tokens_}}) {
        keep.emplace_back(autodiff::Shape::vector(capacity_), DType::f64);
        for (std::int64_t i = 0; i < capacity_; ++i) keep.back().set(i, (*ids)[static_cast<std::size_t>(i)]);
        tensors.emplace_back(name, &keep.back());
      }
      return;
    }
    keep.emplace_back(autodiff::Shape::matrix(capacity_, inputs_), features_[0].dtype());
    keep.emplace_back(autodiff::Shape::matrix(capacity_, outputs_), targets_[0].dtype());
    for (std::int64_t i = 0; i < capacity_; ++i) {
      const auto at = static_cast<std::size_t>(i);
      std::memcpy(static_cast<char*>(keep[keep.size() - 2].raw()) + features_[at].bytes() * at,
                  features_[at].raw(), features_[at].bytes());
      std::memcpy(static_cast<char*>(keep.back().raw()) + targets_[at].bytes() * at, targets_[at].raw(),
                  targets_[at].bytes());
    }
    tensors.emplace_back("online.ring.inputs", &keep[keep.size() - 2]);
    tensors.emplace_back("online.ring.targets", &keep.back());
  }
  void get(const models::TensorMap& tensors, const std::map<std::string, std::string>& meta) {
    const std::string& flags = meta.at("rewind.online.ring_flags");
    if (flags.size() != reset_.size()) throw std::invalid_argument("the saved ring does not fit k1 and k2");
    for (std::size_t i = 0; i < reset_.size(); ++i) {
      reset_[i] = static_cast<std::uint8_t>((flags[i] - '0') & 1);
      has_loss_[i] = static_cast<std::uint8_t>(((flags[i] - '0') >> 1) & 1);
    }
    steps_ = std::stoll(meta.at("rewind.online.steps"));
    if (vocab_ > 0) {
      for (const auto& [name, ids] : {std::pair{"online.ring.tokens", &tokens_},
                                      std::pair{"online.ring.target_tokens", &target_tokens_}}) {
        const Tensor& saved = tensors.at(name);
        if (saved.shape() != autodiff::Shape::vector(capacity_))
          throw std::invalid_argument("the saved ring of tokens does not fit k1 and k2");
        for (std::int64_t i = 0; i < capacity_; ++i) {
          const double id = saved.get(i);
          if (id != trainers::no_target && !(id >= 0 && id < static_cast<double>(vocab_)))
            throw std::invalid_argument("the saved ring holds token " + std::to_string(id) +
                                        ", outside the vocabulary of " + std::to_string(vocab_));
          (*ids)[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(id);
        }
      }
      return;
    }
    const Tensor& in = tensors.at("online.ring.inputs");
    const Tensor& out = tensors.at("online.ring.targets");
    if (in.shape() != autodiff::Shape::matrix(capacity_, inputs_) ||
        out.shape() != autodiff::Shape::matrix(capacity_, outputs_) || in.dtype() != features_[0].dtype())
      throw std::invalid_argument("the saved ring of rows does not fit the model and k1, k2");
    for (std::int64_t i = 0; i < capacity_; ++i) {
      const auto at = static_cast<std::size_t>(i);
      std::memcpy(features_[at].raw(), static_cast<const char*>(in.raw()) + features_[at].bytes() * at,
                  features_[at].bytes());
      std::memcpy(targets_[at].raw(), static_cast<const char*>(out.raw()) + targets_[at].bytes() * at,
                  targets_[at].bytes());
    }
  }

 private:
  std::size_t slot(std::int64_t t) const { return static_cast<std::size_t>(t % capacity_); }
  std::int64_t capacity_, inputs_, outputs_, vocab_, steps_ = 0;
  std::vector<Tensor> features_, targets_;
  std::vector<std::int32_t> tokens_, target_tokens_;
  std::vector<std::uint8_t> reset_, has_loss_;
};

}  // namespace

struct OnlineLearner::Impl {
  Impl(Predictor p, const OnlineOptions& o, const trainers::OptimizerConfig& optimizer_config)
      : predictor(std::move(p)),
        options(o),
        optimizer(optimizer_config),
        ring(o.k1 + o.k2 + 1, static_cast<std::int64_t>(predictor.inputs().size()),
             static_cast<std::int64_t>(predictor.targets().size()),
             predictor.series() ? 0 : predictor.config().token_count(), predictor.model().config().dtype),
        tape(predictor.model().config().dtype) {
    if (predictor.series() && !predictor.next_step())
      throw std::invalid_argument(
          "rewind online learns models of the next row (--targets), not of the same row");
    if (o.k1 < 1 || o.k2 < o.k1)
      throw std::invalid_argument("online: need 1 <= k1 <= k2, got k1 = " + std::to_string(o.k1) +
                                  ", k2 = " + std::to_string(o.k2));
    stored = predictor.model().initial_state(1);
    target_z.resize(predictor.targets().size());
    params = predictor.model().parameters();
    // The run as it learns here, saved with it: a resume rebuilds the same optimizer and window.
    run = predictor.config();
    run.optimizer = optimizer_config;
    run.trainer = "truncated";
    run.trainer_options = {{"k1", std::to_string(o.k1)}, {"k2", std::to_string(o.k2)}};
    run.clip = o.clip;
    run.batch = 1;
  }

  Predictor predictor;
  OnlineOptions options;
  trainers::Optimizer optimizer;
  OnlineCounts counts;
  RingSteps ring;
  autodiff::Tape tape;
  std::int64_t position = 0, stored_step = 0, consecutive_skips = 0;
  std::vector<Tensor> stored, next_state;  // the state where the next update's unroll starts
  std::vector<double> target_z;
  models::ModelState state;
  std::vector<autodiff::Parameter*> params;  // the model's, fixed: listed once
  RunConfig run;
  trainers::WindowBuffers buffers;

  // One truncated update over steps [start, end), its loss over [position, end); the state at the step where
  // the next update (ending next_k1 steps later) unrolls from is kept on the way.
  void update(std::int64_t start, std::int64_t end, std::int64_t next_k1) {
    const std::int64_t next_start = std::clamp<std::int64_t>(end + next_k1 - options.k2, start, end);
    if (stored_step != start)
      throw std::logic_error("online: the stored state is for step " + std::to_string(stored_step) +
                             ", the update starts at " + std::to_string(start));
    const autodiff::FlushDenormalsGuard denormals(run.flush_denormals);  // as rewind train learns
    const autodiff::MatmulPrecisionGuard products(run.matmul_precision());
    models::Model& model = predictor.model();
    for (autodiff::Parameter* p : params) p->zero_grad();
    tape.clear();
    tape.random_key().seed = model.config().seed;
    tape.random_key().update = static_cast<std::uint64_t>(optimizer.updates());
    model.begin(tape, stored, state);
    const trainers::WindowResult w = trainers::record_window(model, tape, ring, state,
                                                             {.begin = start,
                                                              .end = end,
                                                              .loss_begin = position,
                                                              .save_step = next_start,
                                                              .saved = &next_state,
                                                              .buffers = &buffers});
    if (w.loss.valid() && w.loss.requires_grad()) tape.backward(w.loss);
    stored.swap(next_state);
    stored_step = next_start;
    position = end;
    if (w.count == 0) return;  // no target in the window: nothing to learn (as the training loop)
    const double loss = w.loss.item();
    const double norm = trainers::clip_grad_norm(params, options.clip > 0 ? options.clip : INFINITY);
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      ++counts.skipped;
      if (++consecutive_skips > options.max_nonfinite_skips)
        throw trainers::NonFiniteError("online: " + std::to_string(consecutive_skips) +
                                       " non-finite updates in a row (loss " + std::to_string(loss) +
                                       "), at row " + std::to_string(counts.rows));
      return;
    }
    consecutive_skips = 0;
    optimizer.step(params);
    counts.last_loss = loss;
    ++counts.updates;
  }
};

OnlineLearner::OnlineLearner(Predictor predictor, const OnlineOptions& options,
                             const trainers::OptimizerConfig& optimizer)
    : impl_(std::make_unique<Impl>(std::move(predictor), options, optimizer)) {}
OnlineLearner::OnlineLearner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnlineLearner::~OnlineLearner() = default;
OnlineLearner::OnlineLearner(OnlineLearner&&) noexcept = default;
OnlineLearner& OnlineLearner::operator=(OnlineLearner&&) noexcept = default;

void OnlineLearner::continue_optimizer(const std::string& checkpoint_file) {
  Impl& m = *impl_;
  std::map<std::string, std::string> meta;
  const models::TensorMap tensors = models::load_safetensors(checkpoint_file, &meta);
  if (!meta.count("rewind.updates"))
    throw std::invalid_argument("'" + checkpoint_file + "' is not a training checkpoint (no rewind.updates)");
  for (auto& [name, t] : m.optimizer.state(m.params)) {
    const auto it = tensors.find(name);
    if (it == tensors.end() || it->second.shape() != t->shape() || it->second.dtype() != t->dtype())
      throw std::invalid_argument("'" + checkpoint_file + "' holds no optimizer state '" + name +
                                  "' of this model (another optimizer or model?)");
    std::memcpy(t->raw(), it->second.raw(), t->bytes());
  }
  m.optimizer.set_updates(std::stoll(meta.at("rewind.updates")));
}

Predictor& OnlineLearner::predictor() {
  return impl_->predictor;
}
const Predictor& OnlineLearner::predictor() const {
  return impl_->predictor;
}
const OnlineOptions& OnlineLearner::options() const {
  return impl_->options;
}
void OnlineLearner::freeze() {
  impl_->options.learn = false;
}
const OnlineCounts& OnlineLearner::counts() const {
  return impl_->counts;
}

std::span<const double> OnlineLearner::step(std::span<const double> inputs, std::span<const double> targets,
                                            bool starts_sequence) {
  const std::span<const double> predicted = observe(inputs, targets, starts_sequence);
  learn();
  return predicted;
}

std::span<const double> OnlineLearner::observe(std::span<const double> inputs,
                                               std::span<const double> targets, bool starts_sequence) {
  Impl& m = *impl_;
  Predictor& p = m.predictor;
  if (!p.series())
    throw std::invalid_argument("OnlineLearner::observe: '" + p.file() + "' reads tokens (observe_token)");
  const std::size_t n_out = p.targets().size();
  if (targets.size() != n_out)
    throw std::invalid_argument("online: " + std::to_string(targets.size()) + " target values for the " +
                                std::to_string(n_out) + " targets of the model");
  // This row's targets in model units, from the row before: the answer to the last prediction.
  const Predictor::Snapshot& before = p.snapshot();
  for (std::size_t j = 0; j < n_out; ++j) {
    const bool previous = before.started && !starts_sequence;
    m.target_z[j] = p.config().transform.forward(p.target_scale(j), targets[j],
                                                 previous ? before.last_targets[j] : targets[j]);
  }
  // Predict first (test), with the parameters as they are; learn() then trains on the row.
  const std::span<const double> predicted = p.predict(inputs, targets, starts_sequence);
  const std::int64_t row = m.counts.rows++;
  if (!m.options.learn) return predicted;  // frozen: nothing is recorded for updates that will not come
  if (row > 0) m.ring.set_target(row - 1, m.target_z, !starts_sequence);
  m.ring.push(p.model_inputs(), starts_sequence);
  return predicted;
}

std::span<const double> OnlineLearner::step_token(std::int32_t token, bool starts_sequence) {
  const std::span<const double> predicted = observe_token(token, starts_sequence);
  learn();
  return predicted;
}

std::span<const double> OnlineLearner::observe_token(std::int32_t token, bool starts_sequence) {
  Impl& m = *impl_;
  Predictor& p = m.predictor;
  if (p.series())
    throw std::invalid_argument("OnlineLearner::observe_token: '" + p.file() +
                                "' is a time series model (observe)");
  const std::span<const double> predicted = p.predict_token(token, starts_sequence);
  const std::int64_t step = m.counts.rows++;
  if (!m.options.learn) return predicted;
  // This token answers the last prediction: the target of the step before, unless a sequence starts here.
  if (step > 0) m.ring.set_target_token(step - 1, starts_sequence ? trainers::no_target : token);
  m.ring.push_token(token, starts_sequence);
  return predicted;
}

bool OnlineLearner::learn() {
  Impl& m = *impl_;
  // Step s's target is row s + 1: the steps up to rows - 2 can be learnt from.
  if (!m.options.learn || m.counts.rows - 1 - m.position < m.options.k1) return false;
  const std::int64_t end = m.position + m.options.k1;
  m.update(std::max<std::int64_t>(0, end - m.options.k2), end, m.options.k1);
  return true;
}

void OnlineLearner::save(const std::string& dir, const std::map<std::string, std::string>& metadata) {
  Impl& m = *impl_;
  std::filesystem::create_directories(dir);
  models::Model& model = m.predictor.model();
  std::vector<std::pair<std::string, const Tensor*>> tensors = models::parameter_tensors(model);
  for (const auto& [name, t] : m.optimizer.state(model.parameters())) tensors.emplace_back(name, t);
  const Predictor::Snapshot& now = m.predictor.snapshot();
  for (std::size_t i = 0; i < m.stored.size(); ++i)
    tensors.emplace_back("online.stored." + std::to_string(i), &m.stored[i]);
  for (std::size_t i = 0; i < now.state.size(); ++i)
    tensors.emplace_back("online.predict." + std::to_string(i), &now.state[i]);
  std::vector<Tensor> keep;
  keep.reserve(4);
  std::map<std::string, std::string> meta = metadata;
  m.ring.put(tensors, meta, keep);
  // The last row read, in the data's units (doubles, as read): what the next row's changes are taken from.
  const auto row_of = [&](const std::vector<double>& v) {
    keep.emplace_back(
        autodiff::Shape::matrix(1, static_cast<std::int64_t>(std::max<std::size_t>(v.size(), 1))),
        DType::f64);
    for (std::size_t i = 0; i < v.size(); ++i) keep.back().set(static_cast<std::int64_t>(i), v[i]);
    return &keep.back();
  };
  tensors.emplace_back("online.last_inputs", row_of(now.last_inputs));
  tensors.emplace_back("online.last_targets", row_of(now.last_targets));
  meta["rewind.run"] = m.run.to_json();
  meta["rewind.checkpoint"] = std::string(format) + "." + format_version;  // parameters are not all it holds
  meta[format] = nlohmann::json{{"k1", m.options.k1},
                                {"k2", m.options.k2},
                                {"learn", m.options.learn},
                                {"clip", m.options.clip},
                                {"max_nonfinite_skips", m.options.max_nonfinite_skips},
                                {"rows", m.counts.rows},
                                {"updates", m.counts.updates},
                                {"skipped", m.counts.skipped},
                                {"position", m.position},
                                {"stored_step", m.stored_step},
                                {"consecutive_skips", m.consecutive_skips},
                                {"started", now.started},
                                {"optimizer_updates", m.optimizer.updates()}}
                     .dump();
  for (const auto& [key, value] : m.optimizer.schedule_state()) meta[key] = value;
  models::save_safetensors(std::filesystem::path(dir) / state_file, tensors, meta);
  std::map<std::string, std::string> model_meta = metadata;
  model_meta["rewind.run"] = meta["rewind.run"];
  models::save_parameters(std::filesystem::path(dir) / "model.safetensors", model, model_meta);
}

OnlineLearner OnlineLearner::resume(const std::string& saved, const PluginSearch& plugins) {
  const std::string file =
      std::filesystem::is_directory(saved) ? (std::filesystem::path(saved) / state_file).string() : saved;
  std::map<std::string, std::string> meta;
  const models::TensorMap tensors = models::load_safetensors(file, &meta);
  if (!meta.count(format))
    throw std::invalid_argument("'" + file + "' is not a save of rewind online (no '" + std::string(format) +
                                "' in its metadata)");
  try {
    const nlohmann::json j = nlohmann::json::parse(meta.at(format));
    Predictor predictor(file, plugins);
    const OnlineOptions options{j.at("k1"), j.at("k2"), j.at("learn"), j.at("clip"),
                                j.at("max_nonfinite_skips")};
    const trainers::OptimizerConfig optimizer = predictor.config().optimizer;
    auto impl = std::make_unique<Impl>(std::move(predictor), options, optimizer);
    Impl& m = *impl;
    models::Model& model = m.predictor.model();
    for (auto& [name, t] : m.optimizer.state(model.parameters())) {
      const Tensor& saved = tensors.at(name);
      if (saved.shape() != t->shape() || saved.dtype() != t->dtype())
        throw std::invalid_argument("optimizer state '" + name + "' does not fit the model");
      std::memcpy(t->raw(), saved.raw(), t->bytes());
    }
    m.optimizer.set_updates(j.at("optimizer_updates"));
    m.optimizer.restore_schedule_state(meta);
    for (std::size_t i = 0; i < m.stored.size(); ++i)
      m.stored[i] = tensors.at("online.stored." + std::to_string(i));
    Predictor::Snapshot now = m.predictor.snapshot();  // a copy, filled in and handed back
    for (std::size_t i = 0; i < now.state.size(); ++i)
      now.state[i] = tensors.at("online.predict." + std::to_string(i));
    const auto row = [&](const char* name, std::size_t n) {
      const Tensor& t = tensors.at(name);
      std::vector<double> v(n);
      for (std::size_t i = 0; i < n; ++i) v[i] = t.get(static_cast<std::int64_t>(i));
      return v;
    };
    now.started = j.at("started");
    if (now.started) {
      now.last_inputs = row("online.last_inputs", m.predictor.inputs().size());
      now.last_targets = row("online.last_targets", m.predictor.targets().size());
    }
    m.predictor.restore(now);
    m.ring.get(tensors, meta);
    m.counts = {j.at("rows"), j.at("updates"), j.at("skipped"), 0};
    m.position = j.at("position"), m.stored_step = j.at("stored_step"),
    m.consecutive_skips = j.at("consecutive_skips");
    return OnlineLearner(std::move(impl));
  } catch (const std::exception& e) {
    throw std::runtime_error("online save '" + file + "': " + e.what());
  }
}

std::size_t LatencyHistogram::bucket(std::uint64_t ns) {
  if (ns < exact) return ns;
  // [2^(6 + e), 2^(7 + e)) in 64 steps of 2^e: the top 7 bits of ns name the bucket.
  const int e = static_cast<int>(std::bit_width(ns)) - 7;
  if (e > octaves) return exact + per_octave * octaves - 1;
  return static_cast<std::size_t>(exact + (e - 1) * per_octave) +
         static_cast<std::size_t>((ns >> e) - per_octave);
}

double LatencyHistogram::value(std::size_t b) {
  if (b < exact) return static_cast<double>(b);
  const auto e = static_cast<int>((b - exact) / per_octave) + 1;
  const auto top = static_cast<double>((b - exact) % per_octave + per_octave);
  return std::ldexp(top + 0.5, e);
}

void LatencyHistogram::add(double seconds) {
  const double ns = std::max(0.0, seconds * 1e9);
  ++counts_[bucket(ns < 0x1p63 ? static_cast<std::uint64_t>(ns) : std::uint64_t{1} << 63)];
  ++count_;
  max_ = std::max(max_, seconds);
}

Latency LatencyHistogram::summary() const {
  Latency l;
  l.count = count_;
  if (count_ == 0) return l;
  // The k-th smallest of the times, k = q (count - 1) rounded, as nth_element would pick it.
  const auto at = [&](double q) {
    const auto k = static_cast<std::int64_t>(q * static_cast<double>(count_ - 1) + 0.5);
    std::int64_t seen = 0;
    for (std::size_t b = 0; b < counts_.size(); ++b)
      if ((seen += counts_[b]) > k) return std::min(value(b) / 1e3, 1e6 * max_);
    return 1e6 * max_;
  };
  l.p50 = at(0.50), l.p99 = at(0.99), l.max = 1e6 * max_;
  return l;
}

void LatencyHistogram::clear() {
  counts_.fill(0);
  count_ = 0, max_ = 0;
}

void PrequentialScore::Sums::clear() {
  std::ranges::fill(squared, 0.0), std::ranges::fill(absolute, 0.0), std::ranges::fill(count, 0);
}

std::vector<ColumnErrors> PrequentialScore::Sums::errors(const std::vector<std::string>& targets) const {
  std::vector<ColumnErrors> out;
  for (std::size_t j = 0; j < targets.size(); ++j) {
    ColumnErrors e{.column = targets[j], .count = count[j]};
    if (count[j] > 0) {
      const auto n = static_cast<double>(count[j]);
      e.mse = squared[j] / n, e.rmse = std::sqrt(e.mse), e.mae = absolute[j] / n;
    }
    out.push_back(e);
  }
  return out;
}

PrequentialScore::PrequentialScore(std::vector<std::string> targets, std::int64_t interval_rows)
    : targets_(std::move(targets)), interval_rows_(std::max<std::int64_t>(interval_rows, 1)) {
  for (Sums* s : {&interval_, &total_}) {
    s->squared.assign(targets_.size(), 0.0), s->absolute.assign(targets_.size(), 0.0);
    s->count.assign(targets_.size(), 0);
  }
}

void PrequentialScore::score(std::span<const double> predicted, std::span<const double> actual) {
  for (Sums* s : {&interval_, &total_})
    for (std::size_t j = 0; j < targets_.size(); ++j) {
      const double e = predicted[j] - actual[j];
      s->squared[j] += e * e, s->absolute[j] += std::abs(e), ++s->count[j];
    }
}

void PrequentialScore::score_token(std::span<const double> predicted, std::int32_t actual) {
  if (actual < 0 || static_cast<std::size_t>(actual) >= predicted.size())
    throw std::invalid_argument("PrequentialScore::score_token: token " + std::to_string(actual) +
                                " for a prediction over " + std::to_string(predicted.size()) + " tokens");
  const auto best = std::ranges::max_element(predicted) - predicted.begin();
  // A probability that underflowed to 0 costs 690 nats, not an infinite mean for the rest of the stream.
  const double nats = -std::log(std::max(predicted[static_cast<std::size_t>(actual)], 1e-300));
  for (TokenSums* t : {&interval_tokens_, &total_tokens_})
    ++t->count, t->nats += nats, t->correct += best == actual;
}

PrequentialScore::TokenScores PrequentialScore::TokenSums::scores() const {
  if (count == 0) return {};
  const auto n = static_cast<double>(count);
  return {count, nats / n, static_cast<double>(correct) / n};
}

PrequentialScore::TokenScores PrequentialScore::total_tokens() const {
  return total_tokens_.scores();
}

void PrequentialScore::time(double predict_seconds, double learn_seconds, bool learned, double loss) {
  ++rows_;
  predict_.add(predict_seconds);
  if (learned) ++updates_, learn_.add(learn_seconds), loss_sum_ += loss;
}

PrequentialScore::Interval PrequentialScore::take() {
  Interval i;
  i.rows = rows_, i.updates = updates_;
  i.columns = interval_.errors(targets_);
  i.tokens = interval_tokens_.scores();
  interval_tokens_ = {};
  i.mean_loss = updates_ > 0 ? loss_sum_ / static_cast<double>(updates_) : 0;
  i.predict = predict_.summary(), i.learn = learn_.summary();
  rows_ = updates_ = 0, loss_sum_ = 0;
  interval_.clear(), predict_.clear(), learn_.clear();
  return i;
}

std::vector<ColumnErrors> PrequentialScore::total() const {
  return total_.errors(targets_);
}

}  // namespace rwd::runtime
