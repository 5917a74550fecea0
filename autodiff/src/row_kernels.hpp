// Row kernels: the pointwise part of one recurrent step for one batch row, shared by the whole-window ops
// (ops_sequence.cpp) and the one-step fused ops (ops_fused.cpp).
#pragma once

#include <cstdint>

#include "kernels.hpp"

namespace rwd::autodiff::kernels {

// Each gate block gets its own pointer and none overlap; __restrict says so, without which GCC leaves these
// loops scalar (too many pointer pairs to check at run time). A restarting row passes a row of zeros as its
// previous state.

// Pre-activations i, f, g, o in place to activations; then c = f c_prev + i g and h = o tanh(c).
template <class T>
void lstm_forward_row(std::int64_t h, T* __restrict i, T* __restrict f, T* __restrict g, T* __restrict o,
                      const T* __restrict c_prev, T* __restrict c, T* __restrict h_out) {
  for (std::int64_t j = 0; j < h; ++j) i[j] = kernels::sigmoid(i[j]);
  for (std::int64_t j = 0; j < h; ++j) f[j] = kernels::sigmoid(f[j]);
  for (std::int64_t j = 0; j < h; ++j) g[j] = kernels::tanh(g[j]);
  for (std::int64_t j = 0; j < h; ++j) o[j] = kernels::sigmoid(o[j]);
  for (std::int64_t j = 0; j < h; ++j) {
    c[j] = f[j] * c_prev[j] + i[j] * g[j];
    h_out[j] = o[j] * kernels::tanh(c[j]);
  }
}

// Activations i, f, g, o in place to their pre-activation gradients, from dy (the output's gradient), dh and
// dc (the recurrent ones, dc becoming dc_prev); h_t = o tanh(c) is rebuilt into h_out on the way.
template <class T>
void lstm_backward_row(std::int64_t h, T* __restrict i, T* __restrict f, T* __restrict g, T* __restrict o,
                       const T* __restrict c, const T* __restrict c_prev, const T* __restrict dy,
                       const T* __restrict dh, T* __restrict dc, T* __restrict h_out) {
  for (std::int64_t j = 0; j < h; ++j) {
    const T tc = kernels::tanh(c[j]);
    h_out[j] = o[j] * tc;
    const T dhj = dy[j] + dh[j];
    const T dcj = dc[j] + dhj * o[j] * (T(1) - tc * tc);
    const T ij = i[j], fj = f[j], gj = g[j], oj = o[j];
    i[j] = dcj * gj * ij * (T(1) - ij);
    f[j] = dcj * c_prev[j] * fj * (T(1) - fj);
    g[j] = dcj * ij * (T(1) - gj * gj);
    o[j] = dhj * tc * oj * (T(1) - oj);
    dc[j] = dcj * fj;
  }
}

// r, z from their input projections plus gh's; n = tanh(x_n + r gh_n); h = (1 - z) n + z h_prev. Backward
// also reads gh_n: the callers that record keep it.
template <class T>
void gru_forward_row(std::int64_t h, T* __restrict r, T* __restrict z, T* __restrict n,
                     const T* __restrict gh_r, const T* __restrict gh_z, const T* __restrict gh_n,
                     const T* __restrict h_prev, T* __restrict h_out) {
  for (std::int64_t j = 0; j < h; ++j) r[j] = kernels::sigmoid(r[j] + gh_r[j]);
  for (std::int64_t j = 0; j < h; ++j) z[j] = kernels::sigmoid(z[j] + gh_z[j]);
  for (std::int64_t j = 0; j < h; ++j) {
    n[j] = kernels::tanh(n[j] + r[j] * gh_n[j]);
    h_out[j] = (T(1) - z[j]) * n[j] + z[j] * h_prev[j];
  }
}

// r, z, n, gh_n in place to d_r, d_z, d_n and d_n r; the same d_r, d_z, d_n r into dgh_* (the hidden side's
// gate gradients); dh becomes the part of dh_prev that does not go through W_hh.
template <class T>
void gru_backward_row(std::int64_t h, T* __restrict r, T* __restrict z, T* __restrict n, T* __restrict gh_n,
                      T* __restrict dgh_r, T* __restrict dgh_z, T* __restrict dgh_n,
                      const T* __restrict h_prev, const T* __restrict dy, T* __restrict dh) {
  for (std::int64_t j = 0; j < h; ++j) {
    const T rj = r[j], zj = z[j], nj = n[j];
    const T dhj = dy[j] + dh[j];
    const T d_n = dhj * (T(1) - zj) * (T(1) - nj * nj);
    const T d_z = dhj * (h_prev[j] - nj) * zj * (T(1) - zj);
    const T d_r = d_n * gh_n[j] * rj * (T(1) - rj);
    r[j] = dgh_r[j] = d_r;
    z[j] = dgh_z[j] = d_z;
    n[j] = d_n;
    gh_n[j] = dgh_n[j] = d_n * rj;
    dh[j] = dhj * zj;
  }
}

// Forward mode for one row: from the activations i, f, g, o, the new c and c_prev, the pre-activations'
// tangent tp = [ti | tf | tg | to] (4H) and c_prev's tangent (null: zero), the tangents of c and h.
template <class T>
void lstm_tangent_row(std::int64_t h, const T* i, const T* f, const T* g, const T* o, const T* c,
                      const T* c_prev, const T* tp, const T* tc_prev, T* tc, T* th) {
  for (std::int64_t j = 0; j < h; ++j) {
    const T ti = i[j] * (T(1) - i[j]) * tp[j], tf = f[j] * (T(1) - f[j]) * tp[h + j];
    const T tg = (T(1) - g[j] * g[j]) * tp[2 * h + j], to = o[j] * (T(1) - o[j]) * tp[3 * h + j];
    const T tanh_c = kernels::tanh(c[j]);
    tc[j] = tf * c_prev[j] + (tc_prev != nullptr ? f[j] * tc_prev[j] : T(0)) + ti * g[j] + i[j] * tg;
    th[j] = to * tanh_c + o[j] * (T(1) - tanh_c * tanh_c) * tc[j];
  }
}

// Forward mode for one row: from the activations r, z, n, gh_n and h_prev, the projections' tangents tgi
// and tgh ([r | z | n], 3H each) and h_prev's (null: zero), the tangent of h.
template <class T>
void gru_tangent_row(std::int64_t h, const T* r, const T* z, const T* n, const T* gh_n, const T* h_prev,
                     const T* tgi, const T* tgh, const T* th_prev, T* th) {
  for (std::int64_t j = 0; j < h; ++j) {
    const T tr = r[j] * (T(1) - r[j]) * (tgi[j] + tgh[j]);
    const T tz = z[j] * (T(1) - z[j]) * (tgi[h + j] + tgh[h + j]);
    const T tn = (T(1) - n[j] * n[j]) * (tgi[2 * h + j] + tr * gh_n[j] + r[j] * tgh[2 * h + j]);
    th[j] = (T(1) - z[j]) * tn + tz * (h_prev[j] - n[j]) + (th_prev != nullptr ? z[j] * th_prev[j] : T(0));
  }
}

}  // namespace rwd::autodiff::kernels
