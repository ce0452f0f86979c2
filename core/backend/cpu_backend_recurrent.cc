// CpuBackend: the recurrent-cell and embedding operations (see backend.h, "Recurrent cells and
// embeddings").
//
// The cell loops run along one row of `hidden` units with __restrict pointers and no branches,
// so that g++ vectorises them. std::exp and std::tanh would stop that (a call per element), so
// the cells use the branch-free exp, sigmoid and tanh below: relative error below 1.6e-7
// (about 1.3 ulp) against float64 for exp on [−87, 87], sigmoid above −80 (further down, where
// the true value is under 1e-35, it stays at about e^−87) and tanh everywhere; far inside the
// 1e-4 of the PyTorch parity tests. NaN gives NaN.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/backend/cpu_backend.h"

namespace psgrid {
namespace {

// The cell loops are compiled for AVX-512 and AVX2 too (the copy for the CPU picked once, at
// load time), the helpers inlined into each copy. The file is compiled without FMA contraction,
// so every copy rounds each operation as the scalar code reads: results are bit-identical.
#if defined(__x86_64__) && defined(__ELF__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define PSGRID_RECURRENT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef PSGRID_RECURRENT_CLONES
#define PSGRID_RECURRENT_CLONES
#endif
#define PSGRID_INLINE [[gnu::always_inline]] inline

// c ? a : b as bit operations: g++ if-converts this where a ?: (or std::min, std::max) next to
// arithmetic that may trap becomes a branch and stops vectorisation.
PSGRID_INLINE float Select(bool c, float a, float b) {
  const int32_t m = -static_cast<int32_t>(c);
  return std::bit_cast<float>((std::bit_cast<int32_t>(a) & m) | (std::bit_cast<int32_t>(b) & ~m));
}

// e^x for x clamped to [−87, 87] (e^±87 is inside the normal floats): x = n·ln2 + r with
// |r| <= ln2/2 (ln2 split in two so that n·ln2_hi is exact), e^r by its Taylor polynomial to
// r⁷ (remainder below 1e-8 relative), 2^n put into the exponent bits.
PSGRID_INLINE float ExpF(float x) {
  x = Select(x < -87.0f, -87.0f, x);  // NaN stays NaN
  x = Select(x > 87.0f, 87.0f, x);
  const float t = x * 1.44269504088896341f;  // x·log2(e)
  // Rounded to the nearest integer.
  const int32_t n = static_cast<int32_t>(t + std::copysign(0.5f, t));
  const float fn = static_cast<float>(n);
  const float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;  // ln2_hi + ln2_lo = ln 2
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float scale = std::bit_cast<float>(static_cast<int32_t>((n + 127) << 23));
  return p * scale;
}

PSGRID_INLINE float SigmoidF(float x) { return 1.0f / (1.0f + ExpF(-x)); }

// tanh x: for |x| < 0.3 its odd Taylor series to x⁹ (remainder below 1e-7 relative), above
// sign(x)·(1 − e)/(1 + e) with e = e^(−2|x|) <= 0.55, so that 1 − e does not cancel.
PSGRID_INLINE float TanhF(float x) {
  const float a = std::fabs(x);
  const float e = ExpF(-2.0f * a);
  const float large = std::copysign((1.0f - e) / (1.0f + e), x);
  const float s = x * x;
  float p = 62.0f / 2835.0f;
  p = p * s - 17.0f / 315.0f;
  p = p * s + 2.0f / 15.0f;
  p = p * s - 1.0f / 3.0f;
  const float small = x + x * (s * p);
  return Select(a < 0.3f, small, large);
}

// One row of `h` units each; kPrev: the previous state is given (else zeros).
template <bool kPrev>
PSGRID_INLINE void LstmRowForward(int64_t h, float* __restrict g, const float* __restrict c_prev,
                                  float* __restrict c, float* __restrict tanh_c,
                                  float* __restrict out) {
  float* __restrict gi = g;
  float* __restrict gf = g + h;
  float* __restrict gg = g + 2 * h;
  float* __restrict go = g + 3 * h;
  for (int64_t j = 0; j < h; ++j) {
    const float i = SigmoidF(gi[j]);
    const float f = SigmoidF(gf[j]);
    const float n = TanhF(gg[j]);
    const float o = SigmoidF(go[j]);
    gi[j] = i;
    gf[j] = f;
    gg[j] = n;
    go[j] = o;
    const float cj = kPrev ? f * c_prev[j] + i * n : i * n;
    c[j] = cj;
    const float t = TanhF(cj);
    tanh_c[j] = t;
    out[j] = o * t;
  }
}

template <bool kPrev, bool kNext, bool kOutPrev>
PSGRID_INLINE void LstmRowBackward(int64_t h, const float* __restrict g,
                                   const float* __restrict c_prev, const float* __restrict tanh_c,
                                   const float* __restrict dh, const float* __restrict dc_next,
                                   float* __restrict dg, float* __restrict dc_prev) {
  for (int64_t j = 0; j < h; ++j) {
    const float i = g[j], f = g[h + j], n = g[2 * h + j], o = g[3 * h + j];
    const float t = tanh_c[j];
    const float d = dh[j];
    const float dc = (kNext ? dc_next[j] : 0.0f) + d * o * (1.0f - t * t);
    dg[j] = dc * n * i * (1.0f - i);
    dg[h + j] = kPrev ? dc * c_prev[j] * f * (1.0f - f) : 0.0f;
    dg[2 * h + j] = dc * i * (1.0f - n * n);
    dg[3 * h + j] = d * t * o * (1.0f - o);
    if (kOutPrev) dc_prev[j] = dc * f;
  }
}

template <bool kPrev>
PSGRID_INLINE void GruRowForward(int64_t h, float* __restrict g, const float* __restrict gh,
                                 const float* __restrict h_prev, float* __restrict out) {
  for (int64_t j = 0; j < h; ++j) {
    const float r = SigmoidF(g[j] + gh[j]);
    const float z = SigmoidF(g[h + j] + gh[h + j]);
    const float n = TanhF(g[2 * h + j] + r * gh[2 * h + j]);
    g[j] = r;
    g[h + j] = z;
    g[2 * h + j] = n;
    out[j] = kPrev ? (1.0f - z) * n + z * h_prev[j] : (1.0f - z) * n;
  }
}

template <bool kPrev, bool kOutPrev>
PSGRID_INLINE void GruRowBackward(int64_t h, const float* __restrict g, const float* __restrict gh,
                                  const float* __restrict h_prev, const float* __restrict dh,
                                  float* __restrict dgx, float* __restrict dgh,
                                  float* __restrict dh_prev) {
  for (int64_t j = 0; j < h; ++j) {
    const float r = g[j], z = g[h + j], n = g[2 * h + j];
    const float d = dh[j];
    const float hp = kPrev ? h_prev[j] : 0.0f;
    const float dn = d * (1.0f - z) * (1.0f - n * n);  // ∂L/∂(gx_n + r⊙gh_n)
    const float dr = dn * gh[2 * h + j] * r * (1.0f - r);
    const float dz = d * (hp - n) * z * (1.0f - z);
    dgx[j] = dr;
    dgx[h + j] = dz;
    dgx[2 * h + j] = dn;
    dgh[j] = dr;
    dgh[h + j] = dz;
    dgh[2 * h + j] = dn * r;
    if (kOutPrev) dh_prev[j] += d * z;
  }
}

// The batch loops over the rows, one copy per ISA; a null pointer picks the row variant.
PSGRID_RECURRENT_CLONES void LstmForwardRows(int64_t batch, int64_t hidden, float* gates,
                                             const float* c_prev, float* c, float* tanh_c,
                                             float* h) {
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t row = b * hidden;
    if (c_prev != nullptr) {
      LstmRowForward<true>(hidden, gates + 4 * row, c_prev + row, c + row, tanh_c + row, h + row);
    } else {
      LstmRowForward<false>(hidden, gates + 4 * row, nullptr, c + row, tanh_c + row, h + row);
    }
  }
}

template <bool kPrev, bool kNext, bool kOutPrev>
PSGRID_INLINE void LstmBackwardRowsOf(int64_t batch, int64_t hidden, const float* gates,
                                      const float* c_prev, const float* tanh_c, const float* dh,
                                      const float* dc_next, float* dgates, float* dc_prev) {
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t row = b * hidden;
    LstmRowBackward<kPrev, kNext, kOutPrev>(hidden, gates + 4 * row, kPrev ? c_prev + row : nullptr,
                                            tanh_c + row, dh + row, kNext ? dc_next + row : nullptr,
                                            dgates + 4 * row, kOutPrev ? dc_prev + row : nullptr);
  }
}

PSGRID_RECURRENT_CLONES void LstmBackwardRows(int64_t batch, int64_t hidden, const float* gates,
                                              const float* c_prev, const float* tanh_c,
                                              const float* dh, const float* dc_next, float* dgates,
                                              float* dc_prev) {
  const int variant = (c_prev != nullptr) * 4 + (dc_next != nullptr) * 2 + (dc_prev != nullptr);
#define PSGRID_LSTM_CASE(v, p, n, o)                                                       \
  case v:                                                                                  \
    LstmBackwardRowsOf<p, n, o>(batch, hidden, gates, c_prev, tanh_c, dh, dc_next, dgates, \
                                dc_prev);                                                  \
    break;
  switch (variant) {
    PSGRID_LSTM_CASE(0, false, false, false)
    PSGRID_LSTM_CASE(1, false, false, true)
    PSGRID_LSTM_CASE(2, false, true, false)
    PSGRID_LSTM_CASE(3, false, true, true)
    PSGRID_LSTM_CASE(4, true, false, false)
    PSGRID_LSTM_CASE(5, true, false, true)
    PSGRID_LSTM_CASE(6, true, true, false)
    PSGRID_LSTM_CASE(7, true, true, true)
  }
#undef PSGRID_LSTM_CASE
}

PSGRID_RECURRENT_CLONES void GruForwardRows(int64_t batch, int64_t hidden, float* gates,
                                            const float* hproj, const float* h_prev, float* h) {
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t row = b * hidden;
    if (h_prev != nullptr) {
      GruRowForward<true>(hidden, gates + 3 * row, hproj + 3 * row, h_prev + row, h + row);
    } else {
      GruRowForward<false>(hidden, gates + 3 * row, hproj + 3 * row, nullptr, h + row);
    }
  }
}

PSGRID_RECURRENT_CLONES void GruBackwardRows(int64_t batch, int64_t hidden, const float* gates,
                                             const float* hproj, const float* h_prev,
                                             const float* dh, float* dgx, float* dgh,
                                             float* dh_prev) {
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t row = b * hidden;
    const float* g = gates + 3 * row;
    const float* gh = hproj + 3 * row;
    if (h_prev == nullptr) {
      GruRowBackward<false, false>(hidden, g, gh, nullptr, dh + row, dgx + 3 * row, dgh + 3 * row,
                                   nullptr);
    } else if (dh_prev == nullptr) {
      GruRowBackward<true, false>(hidden, g, gh, h_prev + row, dh + row, dgx + 3 * row,
                                  dgh + 3 * row, nullptr);
    } else {
      GruRowBackward<true, true>(hidden, g, gh, h_prev + row, dh + row, dgx + 3 * row,
                                 dgh + 3 * row, dh_prev + row);
    }
  }
}

// The id at `v` when it is an integer in [0, vocab), else −1. A NaN fails every comparison.
inline int64_t ValidId(float v, int64_t vocab) {
  if (!(v >= 0.0f && v < 9.0e15f) || v != std::floor(v)) return -1;
  const int64_t id = static_cast<int64_t>(v);
  return id < vocab ? id : -1;
}

}  // namespace

void CpuBackend::SwapLeadingDims(int64_t d0, int64_t d1, int64_t inner, const float* src,
                                 float* dst) {
  const size_t bytes = static_cast<size_t>(inner) * sizeof(float);
  for (int64_t i = 0; i < d0; ++i) {
    for (int64_t j = 0; j < d1; ++j) {
      std::memcpy(dst + (j * d0 + i) * inner, src + (i * d1 + j) * inner, bytes);
    }
  }
}

void CpuBackend::FillZeros(int64_t n, float* y) { std::fill(y, y + n, 0.0f); }

void CpuBackend::LstmCellForward(int64_t batch, int64_t hidden, float* gates, const float* c_prev,
                                 float* c, float* tanh_c, float* h) {
  LstmForwardRows(batch, hidden, gates, c_prev, c, tanh_c, h);
}

void CpuBackend::LstmCellBackward(int64_t batch, int64_t hidden, const float* gates,
                                  const float* c_prev, const float* tanh_c, const float* dh,
                                  const float* dc_next, float* dgates, float* dc_prev) {
  LstmBackwardRows(batch, hidden, gates, c_prev, tanh_c, dh, dc_next, dgates, dc_prev);
}

void CpuBackend::GruCellForward(int64_t batch, int64_t hidden, float* gates, const float* hproj,
                                const float* h_prev, float* h) {
  GruForwardRows(batch, hidden, gates, hproj, h_prev, h);
}

void CpuBackend::GruCellBackward(int64_t batch, int64_t hidden, const float* gates,
                                 const float* hproj, const float* h_prev, const float* dh,
                                 float* dgx, float* dgh, float* dh_prev) {
  GruBackwardRows(batch, hidden, gates, hproj, h_prev, dh, dgx, dgh, dh_prev);
}

int64_t CpuBackend::EmbeddingForward(int64_t n, int64_t vocab, int64_t dim, const float* ids,
                                     const float* weight, float* y) {
  int64_t first_bad = -1;
  const size_t bytes = static_cast<size_t>(dim) * sizeof(float);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ValidId(ids[i], vocab);
    if (id < 0) {
      if (first_bad < 0) first_bad = i;
      std::fill(y + i * dim, y + (i + 1) * dim, 0.0f);
    } else {
      std::memcpy(y + i * dim, weight + id * dim, bytes);
    }
  }
  return first_bad;
}

void CpuBackend::EmbeddingBackward(int64_t n, int64_t vocab, int64_t dim, const float* ids,
                                   const float* dy, float* dweight) {
  std::fill(dweight, dweight + vocab * dim, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ValidId(ids[i], vocab);
    if (id < 0) continue;
    float* __restrict row = dweight + id * dim;
    const float* __restrict d = dy + i * dim;
    for (int64_t j = 0; j < dim; ++j) row[j] += d[j];
  }
}

}  // namespace psgrid
