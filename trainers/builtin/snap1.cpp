// SnAp-1 (Menick, Elsen, Evci, Osindero, Simonyan & Graves 2021): RTRL with the influence M_t = d s_t / d
// theta kept only where a parameter reaches the state in one step. The pattern here is by unit: a parameter
// whose leading index is a multiple of H (row g * H + i of a gate block) keeps its influence on unit i of
// each state tensor, m numbers per element and stream (m = 1 for h, 2 for h and c); any other parameter keeps
// it on its whole layer's state. That is SnAp-1's pattern where each row feeds one unit in a step, and
// sparser where a row reaches other units (a layer norm across units). Each step
//   gradient += dL_t/dtheta + (dL_t/ds_{t-1}) M_{t-1},   M_t = (D_t M_{t-1} + I_t) on the pattern,
// D_t the state Jacobian and I_t the immediate influence. Where D_t is diagonal in units (IndRNN) a one-layer
// cell's parameters lose nothing; otherwise they are biased. A layer's parameters are tracked on that layer's
// state only; the embedding and the head get the gradient of their step alone (exact for the head; the
// embedding reaches every unit in one step, a dense pattern). The built-in GRU and LSTM move M in closed
// form, one pass over it per step; any other cell goes through Tape::jvp, one per parameter element and step
// (RTRL's time, SnAp-1's memory). docs/trainers.md.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "online_gradient.hpp"
#include "rewind/autodiff/inference.hpp"
#include "rewind/autodiff/ops.hpp"
#include "rewind/autodiff/parallel.hpp"
#include "rewind/plugins/plugin.hpp"

namespace rwd::trainers::builtin {
namespace {

using autodiff::Parameter;
using autodiff::Shape;
using autodiff::Tangent;

enum class ClosedForm { none, gru, lstm };

// PyTorch's GRU (3 gate blocks, state h) and LSTM (4 blocks, h and c), as the built-in cells declare them.
ClosedForm closed_form(models::Cell& cell, int layer) {
  const std::vector<Parameter*> p = cell.parameters();
  const std::int64_t hidden = cell.hidden_size(), input = cell.input_size();
  if (p.size() != 4) return ClosedForm::none;
  const char* names[] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
  for (std::size_t i = 0; i < 4; ++i)
    if (p[i]->name() != "rnn." + std::string(names[i]) + "_l" + std::to_string(layer))
      return ClosedForm::none;
  const std::int64_t gates = p[0]->value().shape().rows / hidden;
  if (p[0]->value().shape() != Shape::matrix(gates * hidden, input) ||
      p[1]->value().shape() != Shape::matrix(gates * hidden, hidden) ||
      p[2]->value().shape() != Shape::vector(gates * hidden) ||
      p[3]->value().shape() != Shape::vector(gates * hidden))
    return ClosedForm::none;
  if (gates == 3 && cell.state_size() == 1) return ClosedForm::gru;
  if (gates == 4 && cell.state_size() == 2) return ClosedForm::lstm;
  return ClosedForm::none;
}

// A cell parameter whose influence is carried, in stored_[influence]: [B, pattern * numel], row b holding,
// for each of the pattern's state elements in turn, that element's influence from every parameter element.
struct Carried {
  Parameter* parameter = nullptr;
  int layer = 0;
  std::int64_t width = 1;  // parameter elements per leading index: a matrix's columns, 1 for a vector
  bool by_unit = true;  // leading index % H is the one unit it reaches; else it reaches all its layer's state
  std::int64_t pattern = 0;
  std::size_t influence = 0;

  // Pattern element s of parameter element e: (state tensor of its layer, column).
  std::pair<std::size_t, std::int64_t> at(std::int64_t e, std::int64_t s, std::int64_t hidden) const {
    if (by_unit) return {static_cast<std::size_t>(s), (e / width) % hidden};
    return {static_cast<std::size_t>(s / hidden), s % hidden};
  }
};

// One closed-form pass over a gate-block parameter of unit rows (rows R = gates * H, W elements each): adds
// the step's direct gradient delta (x) input and q . M to its gradient, then M <- A M + coefficient * input.
// M has `Units` numbers per element (the state tensors), coefficient [B, Units, R], A [B, H, Units, Units],
// q [B, Units, H] (dL_t / ds_{t-1}), delta [B, R] (dL_t / d pre-activation), input [B, W] or none (a bias:
// input 1). Without a loss at this step q and delta are null.
// Rows [first, end) only: parts of the rows run on rewind's threads, each row's arithmetic the same.
template <class T, int Units>
void carry(T* influence, T* grad, std::int64_t batch, std::int64_t rows, std::int64_t width,
           std::int64_t hidden, const T* input, const T* coefficient, const T* jacobian, const T* q,
           const T* delta, std::int64_t first, std::int64_t end) {
  const T one = 1;
  const std::int64_t block = rows * width;
  for (std::int64_t b = 0; b < batch; ++b) {
    const T* in = input ? input + b * width : &one;
    for (std::int64_t r = first; r < end; ++r) {
      const std::int64_t i = r % hidden, base = r * width;
      const T* A = jacobian + (b * hidden + i) * Units * Units;
      // One unit's numbers in registers and restrict pointers, so that the loop over the row vectorises.
      T* __restrict m0 = influence + b * Units * block + base;
      T* __restrict m1 = m0 + (Units > 1 ? block : 0);
      T* __restrict g = grad + base;
      const T* __restrict x = in;
      const T c0 = coefficient[b * Units * rows + r], a00 = A[0];
      const T q0 = q ? q[b * Units * hidden + i] : T(0), d = delta ? delta[b * rows + r] : T(0);
      if constexpr (Units == 1) {
        for (std::int64_t j = 0; j < width; ++j) {
          const T h = m0[j];
          g[j] += d * x[j] + q0 * h;
          m0[j] = a00 * h + c0 * x[j];
        }
      } else {
        const T c1 = coefficient[(b * Units + 1) * rows + r], a01 = A[1], a10 = A[2], a11 = A[3];
        const T q1 = q ? q[(b * Units + 1) * hidden + i] : T(0);
        for (std::int64_t j = 0; j < width; ++j) {
          const T h = m0[j], c = m1[j];
          g[j] += d * x[j] + q0 * h + q1 * c;
          m0[j] = a00 * h + a01 * c + c0 * x[j];
          m1[j] = a10 * h + a11 * c + c1 * x[j];
        }
      }
    }
  }
}

// One layer's step of a built-in GRU or LSTM, recomputed without a tape: its input, the state it read (zero
// on restarting rows), the activated gates and the new state.
struct GatedStep {
  Tensor x, h, c, gates, hidden_side, h_next, c_next;
};

class Snap1 final : public OnlineGradientTrainer {
 public:
  explicit Snap1(const TrainerSpec& spec)
      : OnlineGradientTrainer("snap1", spec.options.integer("k"), true),
        closed_form_allowed_(spec.options.boolean("closed_form")) {}

  void begin(Model& model, const Dataset& data, Tape& tape) override {
    if (model.config().dropout > 0 && autodiff::training())
      throw std::invalid_argument(
          "trainer 'snap1': the model has dropout, which its influence does not follow; train it with "
          "dropout 0");
    Trainer::begin(model, data, tape);
    states_ = stored_.size();
    steps_to_check_ = 2;  // the first step (its immediate influence) and the second (carried as well)
    const int layers = model.config().layers;
    first_state_.assign(1, 0);
    closed_ = closed_form_allowed_ ? closed_form(model.cell(0), 0) : ClosedForm::none;
    carried_.clear();
    for (int l = 0; l < layers; ++l) {
      models::Cell& cell = model.cell(l);
      first_state_.push_back(first_state_.back() + static_cast<std::size_t>(cell.state_size()));
      if (closed_form(cell, l) != closed_) closed_ = ClosedForm::none;
      for (Parameter* p : cell.parameters()) {
        const Shape s = p->value().shape();
        const std::int64_t leading = s.rank == 2 ? s.rows : s.cols, hidden = cell.hidden_size();
        Carried c{
            .parameter = p, .layer = l, .width = s.rank == 2 ? s.cols : 1, .by_unit = leading % hidden == 0};
        c.pattern = cell.state_size() * (c.by_unit ? 1 : hidden);
        const std::int64_t bytes =
            static_cast<std::int64_t>(autodiff::size_of(tape.dtype())) * data.batch() * c.pattern * s.numel();
        // A checkpoint gathers each stored tensor across ranks in one MPI message, counted in an int.
        if (bytes > std::numeric_limits<int>::max())
          throw std::invalid_argument("trainer 'snap1': the influence on " + p->name() + " needs " +
                                      std::to_string(bytes) +
                                      " bytes, more than a checkpoint can hold (2 GiB)");
        c.influence = stored_.size();
        stored_.emplace_back(Shape::matrix(data.batch(), c.pattern * s.numel()), tape.dtype());
        carried_.push_back(c);
      }
    }
  }

 private:
  void step(Model& model, const Dataset& data, Tape& tape, std::int64_t t, UpdateStats& stats,
            std::vector<double>& /*gradient: summed in the parameters' own*/) override {
    if (closed_ == ClosedForm::none) return generic_step(model, data, tape, t, stats);
    if (tape.dtype() == autodiff::DType::f32) return closed_step<float>(model, data, tape, t, stats);
    closed_step<double>(model, data, tape, t, stats);
  }

  // Step t recorded on the tape from the stored state, whose tensors are leaves.
  struct Recorded {
    std::vector<Var> leaves, outputs;
    WindowResult result;
    std::vector<Tensor> next;  // the new state's values
  };
  Recorded record(Model& model, const Dataset& data, Tape& tape, std::int64_t t, double normalizer) const {
    tape.clear();
    ModelState state;
    model.begin(tape,
                std::vector<Tensor>(stored_.begin(), stored_.begin() + static_cast<std::ptrdiff_t>(states_)),
                state, true);
    Recorded r;
    r.leaves = flatten(state);
    r.result = record_window(model, tape, data, state,
                             {.begin = t, .end = t + 1, .loss_begin = t, .normalizer = normalizer});
    r.outputs = flatten(state);
    r.next.resize(states_);
    model.end(state, r.next);  // before backward, which may write gradients over values
    return r;
  }

  // Any cell: the step on the tape, the influence moved by Tape::jvp (before backward: a tape takes no jvp
  // after it), then the step's backward for its direct gradient and q = dL_t / ds_{t-1}.
  void generic_step(Model& model, const Dataset& data, Tape& tape, std::int64_t t, UpdateStats& stats) {
    Recorded r = record(model, data, tape, t, static_cast<double>(stats.loss_count));
    std::vector<Tensor> moved;
    for (const Carried& c : carried_) moved.push_back(propagate(model, tape, c, r.leaves, r.outputs));
    if (r.result.loss.valid()) {
      tape.backward(r.result.loss);
      std::vector<Tensor> q;
      for (const Var& leaf : r.leaves) q.push_back(tape.grad(leaf));
      for (const Carried& c : carried_) add_carried_gradient(model, c, q);
      stats.loss += r.result.loss.item();
      stats.correct += r.result.correct;
    }
    for (std::size_t i = 0; i < carried_.size(); ++i) stored_[carried_[i].influence] = std::move(moved[i]);
    std::move(r.next.begin(), r.next.end(), stored_.begin());
  }

  // The built-in GRU or LSTM, with no tape but the head's: each layer's step recomputed (autodiff::infer),
  // the loss and dL_t / dh of the last layer from the head, then layer by layer from the top the step's
  // backward in closed form (the pre-activations' gradient delta, dL_t / ds_{t-1} and the layer input's
  // gradient) and one pass per parameter that adds delta (x) input + q . M_{t-1} to its gradient and moves M.
  // The first two steps after begin() (a pass, or a resume) are checked on a few elements of each parameter
  // against the generic path, before their gradient is used: a cell with the built-in layout and another step
  // (the zoo's zoneout GRU) is refused, not mistrained.
  template <class T>
  void closed_step(Model& model, const Dataset& data, Tape& tape, std::int64_t t, UpdateStats& stats) {
    std::vector<Tensor> expected;
    const bool check = steps_to_check_ > 0;
    if (check) --steps_to_check_;
    if (check) {
      Recorded r = record(model, data, tape, t, static_cast<double>(stats.loss_count));
      for (const Carried& c : carried_)
        expected.push_back(propagate(model, tape, c, r.leaves, r.outputs, check_stride(c)));
    }
    const Step s = data.step(t);
    const int layers = model.config().layers;
    std::vector<GatedStep> steps(static_cast<std::size_t>(layers));
    std::vector<Tensor> next;
    Tensor input = first_input(model, s);
    for (int l = 0; l < layers; ++l) {
      GatedStep& g = steps[static_cast<std::size_t>(l)];
      forward<T>(model, l, std::move(input), s.reset, g);
      next.push_back(g.h_next);
      if (closed_ == ClosedForm::lstm) next.push_back(g.c_next);
      input = g.h_next;
    }
    // The head's loss on the new state: its gradient at the last layer's h.
    tape.clear();
    ModelState state;
    model.begin(tape, next, state, true);
    WindowResult r;
    record_loss(model, tape, data, model.cell(layers - 1).output(state.back()), t, t + 1, t,
                static_cast<double>(stats.loss_count), r);
    Tensor dh;  // dL_t / dh' of the layer at hand; empty when step t carries no loss
    if (r.loss.valid()) {
      tape.backward(r.loss);
      dh = tape.grad(state.back()[0]);
      stats.loss += r.loss.item();
      stats.correct += r.correct;
    }
    for (int l = layers - 1; l >= 0; --l) dh = pass<T>(model, l, steps[static_cast<std::size_t>(l)], dh, s);
    std::copy(next.begin(), next.end(), stored_.begin());
    if (check) {
      for (std::size_t i = 0; i < carried_.size(); ++i) check_closed_form(carried_[i], expected[i]);
    }
  }

  // Layer l's step from input x and its stored state; restarting rows read a zero state and influence.
  template <class T>
  void forward(Model& model, int l, Tensor x, std::span<const std::uint8_t> reset, GatedStep& g) {
    const std::vector<Parameter*> p = model.cell(l).parameters();
    const std::size_t first = first_state_[static_cast<std::size_t>(l)];
    const std::int64_t hidden = model.cell(l).hidden_size(), batch = x.shape().rows;
    const bool lstm = closed_ == ClosedForm::lstm;
    g.x = std::move(x);
    g.h = stored_[first];
    if (lstm) g.c = stored_[first + 1];
    for (std::int64_t b = 0; b < batch; ++b)
      if (!reset.empty() && reset[static_cast<std::size_t>(b)]) {
        std::fill_n(g.h.data<T>() + b * hidden, hidden, T(0));
        if (lstm) std::fill_n(g.c.data<T>() + b * hidden, hidden, T(0));
        for (const Carried& c : carried_)
          if (c.layer == l) {
            Tensor& m = stored_[c.influence];
            std::fill_n(m.data<T>() + b * m.shape().cols, m.shape().cols, T(0));
          }
      }
    autodiff::infer::linear(g.x, p[0]->value(), p[2]->value(), g.gates);
    autodiff::infer::linear(g.h, p[1]->value(), p[3]->value(), g.hidden_side);
    if (lstm) {
      autodiff::infer::lstm_pointwise(g.gates, g.hidden_side, g.c, g.h_next, g.c_next);
    } else {
      autodiff::infer::gru_pointwise(g.gates, g.hidden_side, g.h, g.h_next);
    }
  }

  // Layer l's backward and influence pass, from dh = dL_t / dh' (its new h; c' is read by no loss of step t).
  // Returns dL_t / dx for the layer below (x is its new h), after adding the embedding's rows at layer 0.
  template <class T>
  Tensor pass(Model& model, int l, const GatedStep& g, const Tensor& dh, const Step& s) {
    models::Cell& cell = model.cell(l);
    const bool lstm = closed_ == ClosedForm::lstm;
    const int units = lstm ? 2 : 1;
    const std::vector<Parameter*> p = cell.parameters();
    const std::int64_t hidden = cell.hidden_size(), rows = p[0]->value().shape().rows,
                       batch = g.x.shape().rows;
    // d state_i / d pre-activation for the input side's rows and the hidden side's (they differ for the
    // GRU's n gate, where r scales the hidden side), and D_t's block per unit.
    Tensor from_input(Shape::matrix(batch, units * rows), g.h.dtype()),
        from_hidden(from_input.shape(), g.h.dtype());
    Tensor jacobian(Shape::matrix(batch, hidden * units * units), g.h.dtype());
    const T* w_hh = p[1]->value().data<T>();
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t i = 0; i < hidden; ++i) {
        const T* gate = g.gates.data<T>() + b * rows + i;  // gate k of unit i at gate[k * hidden]
        T* ci = from_input.data<T>() + b * units * rows + i;
        T* ch = from_hidden.data<T>() + b * units * rows + i;
        T* A = jacobian.data<T>() + (b * hidden + i) * units * units;
        const T h_prev = g.h.data<T>()[b * hidden + i];
        if (lstm) {
          const T in = gate[0], f = gate[hidden], cell_in = gate[2 * hidden], o = gate[3 * hidden];
          const T c_prev = g.c.data<T>()[b * hidden + i], tc = std::tanh(g.c_next.data<T>()[b * hidden + i]);
          const T dh_dc = o * (1 - tc * tc);
          // d c' / d a and d h' / d a per gate: h's rows first, then c's (offset rows).
          const T dc[4] = {cell_in * in * (1 - in), c_prev * f * (1 - f), in * (1 - cell_in * cell_in), 0};
          const T dh_da[4] = {dh_dc * dc[0], dh_dc * dc[1], dh_dc * dc[2], tc * o * (1 - o)};
          T dh_dh = 0, dc_dh = 0;
          for (int k = 0; k < 4; ++k) {
            ci[k * hidden] = ch[k * hidden] = dh_da[k];
            ci[rows + k * hidden] = ch[rows + k * hidden] = dc[k];
            const T w = w_hh[(k * hidden + i) * hidden + i];
            dh_dh += dh_da[k] * w;
            dc_dh += dc[k] * w;
          }
          A[0] = dh_dh;
          A[1] = dh_dc * f;
          A[2] = dc_dh;
          A[3] = f;
        } else {
          const T reset_gate = gate[0], z = gate[hidden], n = gate[2 * hidden];
          const T hidden_n = g.hidden_side.data<T>()[b * rows + 2 * hidden + i];  // W_hn h + b_hn
          const T dn = (1 - z) * (1 - n * n);
          const T d[3] = {dn * hidden_n * reset_gate * (1 - reset_gate), (h_prev - n) * z * (1 - z), dn};
          T dh_dh = z;
          for (int k = 0; k < 3; ++k) {
            ci[k * hidden] = d[k];
            ch[k * hidden] = k == 2 ? d[k] * reset_gate : d[k];
            dh_dh += ch[k * hidden] * w_hh[(k * hidden + i) * hidden + i];
          }
          A[0] = dh_dh;
        }
      }
    // The step's backward: delta = dh (.) d h' / d a per side, q = dL_t / ds_{t-1} (through W_hh and the
    // elementwise paths: z h for the GRU, c' for the LSTM), dx = delta_ih W_ih.
    Tensor delta_input, delta_hidden, q, dx;
    if (dh.numel() > 0) {
      delta_input = Tensor(Shape::matrix(batch, rows), dh.dtype());
      delta_hidden = Tensor(delta_input.shape(), dh.dtype());
      for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t r = 0; r < rows; ++r) {
          const T grad_h = dh.data<T>()[b * hidden + r % hidden];
          delta_input.data<T>()[b * rows + r] = grad_h * from_input.data<T>()[b * units * rows + r];
          delta_hidden.data<T>()[b * rows + r] = grad_h * from_hidden.data<T>()[b * units * rows + r];
        }
      const Tensor through_w_hh = product(delta_hidden, *p[1]);
      q = Tensor(Shape::matrix(batch, units * hidden), dh.dtype());
      for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t i = 0; i < hidden; ++i) {
          const T grad_h = dh.data<T>()[b * hidden + i],
                  *A = jacobian.data<T>() + (b * hidden + i) * units * units;
          const bool restarted = !s.reset.empty() && s.reset[static_cast<std::size_t>(b)];
          T* qb = q.data<T>() + b * units * hidden + i;
          qb[0] = restarted ? T(0)
                            : through_w_hh.data<T>()[b * hidden + i] +
                                  (lstm ? T(0) : grad_h * g.gates.data<T>()[b * rows + hidden + i]);
          if (lstm) qb[hidden] = restarted ? T(0) : grad_h * A[1];
        }
      if (l > 0 || model.uses_tokens()) dx = product(delta_input, *p[0]);
    }
    const Tensor* inputs[4] = {&g.x, &g.h, nullptr, nullptr};
    const Tensor* coefficients[4] = {&from_input, &from_hidden, &from_input, &from_hidden};
    const Tensor* deltas[4] = {&delta_input, &delta_hidden, &delta_input, &delta_hidden};
    const Carried* carried = &*std::find_if(carried_.begin(), carried_.end(),
                                            [&](const Carried& k) { return k.parameter == p[0]; });
    for (int k = 0; k < 4; ++k) {
      T* m = stored_[carried[k].influence].data<T>();
      T* grad = p[static_cast<std::size_t>(k)]->grad().template data<T>();
      const T* in = inputs[k] ? inputs[k]->data<T>() : nullptr;
      const T* q_data = q.numel() > 0 ? q.data<T>() : nullptr;
      const T* delta = deltas[k]->numel() > 0 ? deltas[k]->data<T>() : nullptr;
      const T* coefficient = coefficients[k]->data<T>();
      const std::int64_t width = carried[k].width;
      // The pass is bound by memory: split over the threads by rows once each part has 2^14 elements.
      autodiff::parallel_for(rows, std::max<std::int64_t>(1, (std::int64_t{1} << 14) / (width * batch)),
                             [&](std::int64_t first, std::int64_t end) {
                               if (lstm) {
                                 carry<T, 2>(m, grad, batch, rows, width, hidden, in, coefficient,
                                             jacobian.data<T>(), q_data, delta, first, end);
                               } else {
                                 carry<T, 1>(m, grad, batch, rows, width, hidden, in, coefficient,
                                             jacobian.data<T>(), q_data, delta, first, end);
                               }
                             });
    }
    if (l > 0 || dx.numel() == 0) return dx;
    Tensor& table = model.parameter("embedding.weight").grad();  // the rows the step read
    const std::int64_t width = table.shape().cols;
    for (std::int64_t b = 0; b < batch; ++b) {
      T* row = table.data<T>() + static_cast<std::int64_t>(s.tokens[static_cast<std::size_t>(b)]) * width;
      for (std::int64_t j = 0; j < width; ++j) row[j] += dx.data<T>()[b * width + j];
    }
    return {};
  }

  // a [B, R] times w's value [R, C].
  static Tensor product(const Tensor& a, const Parameter& w) {
    Tensor y;
    autodiff::infer::matmul(a, w.value(), y);
    return y;
  }

  static std::int64_t check_stride(const Carried& c) {
    return std::max<std::int64_t>(1, c.parameter->value().numel() / 4);
  }

  void check_closed_form(const Carried& c, const Tensor& expected) const {
    const Tensor& got = stored_[c.influence];
    const std::int64_t numel = c.parameter->value().numel(), cols = got.shape().cols;
    // The generic path's products round to bf16 under MatmulPrecision::bf16; the closed form's do not.
    const double tolerance = got.dtype() == autodiff::DType::f64                               ? 1e-9
                             : autodiff::matmul_precision() == autodiff::MatmulPrecision::bf16 ? 3e-2
                                                                                               : 1e-3;
    for (std::int64_t b = 0; b < got.shape().rows; ++b)
      for (std::int64_t s = 0; s < c.pattern; ++s)
        for (std::int64_t e = 0; e < numel; e += check_stride(c)) {
          const double want = expected.get(b * cols + s * numel + e),
                       have = got.get(b * cols + s * numel + e);
          if (!(std::abs(have - want) <= tolerance * (1 + std::abs(want))))
            throw std::invalid_argument(
                "trainer 'snap1': layer " + std::to_string(c.layer) +
                "'s cell has the built-in GRU's or LSTM's parameters, but its step is not theirs: the closed "
                "form's influence on " +
                c.parameter->name() + " element " + std::to_string(e) + " is " + std::to_string(have) +
                ", Tape::jvp's " + std::to_string(want) +
                "; train it with --trainer-option closed_form=false");
        }
  }

  // c's influence one step on: for each parameter element (every stride-th), the state of its layer moved
  // along M_{t-1} and the parameter along its one-hot direction (Tape::jvp), kept on the pattern.
  Tensor propagate(Model& model, Tape& tape, const Carried& c, const std::vector<Var>& leaves,
                   const std::vector<Var>& outputs, std::int64_t stride = 1) const {
    const std::size_t first = first_state_[static_cast<std::size_t>(c.layer)],
                      count = first_state_[static_cast<std::size_t>(c.layer) + 1] - first;
    const std::int64_t hidden = model.cell(c.layer).hidden_size(), numel = c.parameter->value().numel();
    const Tensor& influence = stored_[c.influence];
    const std::int64_t batch = influence.shape().rows;
    Tensor moved(influence.shape(), influence.dtype());
    std::vector<Tensor> directions;
    std::vector<Tangent> tangents;
    directions.reserve(count);
    for (std::size_t a = 0; a < count; ++a) {
      directions.emplace_back(leaves[first + a].shape(), tape.dtype());
      tangents.push_back({leaves[first + a], &directions[a]});
    }
    Tensor one_hot(c.parameter->value().shape(), tape.dtype());
    tangents.push_back({tape.param(*c.parameter), &one_hot});
    const std::vector<Var> layer_outputs(outputs.begin() + static_cast<std::ptrdiff_t>(first),
                                         outputs.begin() + static_cast<std::ptrdiff_t>(first + count));
    for (std::int64_t e = 0; e < numel; e += stride) {
      one_hot.set(e, 1.0);
      for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t s = 0; s < c.pattern; ++s) {
          const auto [a, column] = c.at(e, s, hidden);
          directions[a].set(b * hidden + column, influence.get(b * influence.shape().cols + s * numel + e));
        }
      const std::vector<Tensor> out = tape.jvp(tangents, layer_outputs);
      for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t s = 0; s < c.pattern; ++s) {
          const auto [a, column] = c.at(e, s, hidden);
          moved.set(b * moved.shape().cols + s * numel + e, out[a].get(b * hidden + column));
          directions[a].set(b * hidden + column, 0.0);
        }
      one_hot.set(e, 0.0);
    }
    return moved;
  }

  // (dL_t / ds_{t-1}) M_{t-1} into c's gradient, q the state's gradients of every layer.
  void add_carried_gradient(Model& model, const Carried& c, const std::vector<Tensor>& q) const {
    const std::size_t first = first_state_[static_cast<std::size_t>(c.layer)];
    const std::int64_t hidden = model.cell(c.layer).hidden_size(), numel = c.parameter->value().numel();
    const Tensor& influence = stored_[c.influence];
    Tensor& grad = c.parameter->grad();
    for (std::int64_t e = 0; e < numel; ++e) {
      double sum = 0;
      for (std::int64_t b = 0; b < influence.shape().rows; ++b)
        for (std::int64_t s = 0; s < c.pattern; ++s) {
          const auto [a, column] = c.at(e, s, hidden);
          sum += q[first + a].get(b * hidden + column) *
                 influence.get(b * influence.shape().cols + s * numel + e);
        }
      grad.set(e, grad.get(e) + sum);
    }
  }

  // What the first layer reads at step t: the embedding's rows of the tokens, or the features.
  static Tensor first_input(Model& model, const Step& s) {
    if (!model.uses_tokens()) return s.features->to(model.config().dtype);  // datasets hold f32 features
    const Tensor& table = model.parameter("embedding.weight").value();
    const std::int64_t batch = static_cast<std::int64_t>(s.tokens.size()), width = table.shape().cols;
    Tensor x(Shape::matrix(batch, width), table.dtype());
    const std::size_t bytes = autodiff::size_of(table.dtype()) * static_cast<std::size_t>(width);
    for (std::int64_t b = 0; b < batch; ++b) {
      const std::int32_t token = s.tokens[static_cast<std::size_t>(b)];
      if (token < 0 || token >= table.shape().rows)
        throw std::invalid_argument("trainer 'snap1': token " + std::to_string(token) + " of stream " +
                                    std::to_string(b) + " is outside the vocabulary of " +
                                    std::to_string(table.shape().rows));
      std::memcpy(static_cast<char*>(x.raw()) + bytes * static_cast<std::size_t>(b),
                  static_cast<const char*>(table.raw()) + bytes * static_cast<std::size_t>(token), bytes);
    }
    return x;
  }

  bool closed_form_allowed_;
  ClosedForm closed_ = ClosedForm::none;  // every layer's cell, or none: the generic path
  int steps_to_check_ = 0;                // closed-form steps still checked against the generic path
  std::size_t states_ = 0;
  std::vector<std::size_t> first_state_;  // layer l's state tensors are stored_[first_state_[l]...[l + 1])
  std::vector<Carried> carried_;          // the cells' parameters in order
};

std::unique_ptr<Trainer> create(const TrainerSpec& spec) {
  return std::make_unique<Snap1>(spec);
}

constexpr models::OptionSpec options[] = {
    steps_between_updates,
    {"closed_form", models::OptionType::boolean, "true",
     "move the built-in GRU's and LSTM's influence in closed form; false runs the generic path through "
     "Tape::jvp (any cell)"}};

}  // namespace

extern const plugins::Descriptor snap1_descriptor = plugins::trainer_descriptor(
    "snap1", "SnAp-1: RTRL with the influence kept where a parameter reaches the state in one step", options,
    create);

}  // namespace rwd::trainers::builtin

REWIND_PLUGIN(rwd::trainers::builtin::snap1_descriptor)
