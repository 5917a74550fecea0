// Inference without a tape: the forward arithmetic of the fused ops (ops.hpp) on tensors the caller owns, bit
// for bit what the recorded ops compute, with no node, no gradient and, once the outputs have their shapes,
// no allocation. A trained model's step at serving time is a few of these (models::Cell::infer): at batch 1
// the tape's bookkeeping costs as much as the arithmetic.
#pragma once

#include "rewind/autodiff/export.hpp"
#include "rewind/autodiff/tensor.hpp"

namespace rwd::autodiff::infer {

// As linear(): y = x w^T + b for x [B, K], w [N, K], b [N]; y becomes [B, N].
REWIND_AUTODIFF_EXPORT void linear(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y);
// As matmul() without transposes: y = a b for a [M, K], b [K, N]; y becomes [M, N]. The product is the op's
// own kernel choice for a B that is not a parameter (in f32 one row of a reads b in place, a row at a time),
// so it suits a few rows times a weight: SnAp-1's closed-form backward through W_hh and W_ih.
REWIND_AUTODIFF_EXPORT void matmul(const Tensor& a, const Tensor& b, Tensor& y);
// As rnn_pointwise(): h = tanh(a + b) for a and b of one shape; h may be a or b.
REWIND_AUTODIFF_EXPORT void rnn_pointwise(const Tensor& a, const Tensor& b, Tensor& h);
// As lstm_pointwise(): gi and gh [B, 4H] (gate order i, f, g, o), c_prev [B, H] -> h and c [B, H]. gi is
// overwritten with the activated gates; c must be another tensor than c_prev.
REWIND_AUTODIFF_EXPORT void lstm_pointwise(Tensor& gi, const Tensor& gh, const Tensor& c_prev, Tensor& h,
                                           Tensor& c);
// As gru_pointwise(): gi and gh [B, 3H] (r, z, n), h_prev [B, H] -> h [B, H]. gi is overwritten; h must be
// another tensor than h_prev.
REWIND_AUTODIFF_EXPORT void gru_pointwise(Tensor& gi, const Tensor& gh, const Tensor& h_prev, Tensor& h);

}  // namespace rwd::autodiff::infer
