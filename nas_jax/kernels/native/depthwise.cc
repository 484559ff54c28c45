// Depthwise convolution kernels for XLA:CPU as XLA FFI custom calls (nas_jax/kernels/native).
//
// Layouts (row-major float32): x (..., N, H, W, C), depthwise kernel (..., KH, KW, 1, C),
// pointwise kernel (..., C, M), outputs (..., N, Ho, Wo, C or M). The leading "..." dims
// are vmap axes (jax.ffi vmap_method "expand_dims"): in each operand every one has the
// output's size or 1 (broadcast here, not materialized).
//
// Depthwise conv, equal to torch Conv2d(C, C, k, stride, padding, dilation, groups=C,
// bias=False) with zero padding:
//   dw(x)[n, o, q, c] = sum_{i, j} x[n, o*s + i*d - p, q*s + j*d - p, c] * w[i, j, c]
// Handlers:
//   NasJaxDepthwiseForward(x, w) -> out; NasJaxDepthwiseInputGrad(ct, w) -> dx;
//   NasJaxDepthwiseKernelGrad(x, ct) -> dw;
//   NasJaxSepForward(x, w, pw) -> pw(dw(relu(x))) (DARTS's ReLU - depthwise - pointwise);
//   NasJaxSepBackward(x, w, pw, ct) -> (dx, dw, dpw).
// Everything runs one image at a time so the intermediates (the depthwise output, its
// cotangent) stay in L1/L2; channels are the contiguous inner loop, in vector blocks of
// 16, 8, 4 and 1 floats (one AVX-512 register at 16). Sums over the batch (the kernel
// gradients) are per-image float sums accumulated in double.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// GCC/Clang vector extensions: V floats in one register (AVX-512 for V = 16 with
// -march=native on such a CPU; split into narrower registers elsewhere). `U` allows
// unaligned loads and stores.
template <int V>
struct Vec {
  typedef float T __attribute__((vector_size(4 * V)));
  typedef float U __attribute__((vector_size(4 * V), aligned(4)));
};
template <int V>
inline typename Vec<V>::T Load(const float* p) {
  return *reinterpret_cast<const typename Vec<V>::U*>(p);
}
template <int V, bool kRelu>
inline typename Vec<V>::T LoadX(const float* p) {
  typename Vec<V>::T v = Load<V>(p);
  if constexpr (kRelu) v = v > 0 ? v : typename Vec<V>::T{};
  return v;
}
template <int V>
inline void Store(float* p, typename Vec<V>::T v) {
  *reinterpret_cast<typename Vec<V>::U*>(p) = v;
}

// Calls fn.template operator()<V>(c0) over channel blocks of 16, then 8, 4 and 1.
template <typename F>
void ForBlocks(int64_t c, F&& fn) {
  int64_t c0 = 0;
  for (; c0 + 16 <= c; c0 += 16) fn.template operator()<16>(c0);
  for (; c0 + 8 <= c; c0 += 8) fn.template operator()<8>(c0);
  for (; c0 + 4 <= c; c0 += 4) fn.template operator()<4>(c0);
  for (; c0 < c; ++c0) fn.template operator()<1>(c0);
}

int64_t CeilDiv(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
int64_t FloorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

struct Range {
  int64_t lo, hi;
};
// The outputs o in [0, out) whose source o*s + off lies in [0, in): contiguous.
Range TapRange(int64_t out, int64_t in, int64_t off, int64_t s) {
  int64_t lo = std::max<int64_t>(0, CeilDiv(-off, s));
  int64_t hi = std::min<int64_t>(out, FloorDiv(in - 1 - off, s) + 1);
  return {lo, std::max(lo, hi)};
}

// One image's conv geometry: (h, w, c) -> (ho, wo, c), kernel kh x kw.
struct Conv {
  int64_t h, w, c, kh, kw, ho, wo, s, p, d;
};

// The output columns whose kw taps all lie inside the image: [lo, hi), lo <= wo.
Range InteriorColumns(const Conv& g, int64_t kw) {
  const Range a = TapRange(g.wo, g.w, -g.p, g.s);
  const Range b = TapRange(g.wo, g.w, (kw - 1) * g.d - g.p, g.s);
  const int64_t lo = std::min(std::max(a.lo, b.lo), g.wo);
  return {lo, std::max(lo, std::min(a.hi, b.hi))};
}

// out_row[q * ldo + c0 : +V] = dw(x)[o, q, c0 : +V] for one output row o of one image
// (x read through ReLU if kRelu). Columns whose taps are all inside the image go four at
// a time (four independent FMA chains).
template <int V, bool kRelu>
void DepthwiseRow(const float* __restrict x, const float* __restrict w,
                  float* __restrict out_row, int64_t ldo, const Conv& g, int64_t c0,
                  int64_t o) {
  using T = typename Vec<V>::T;
  const int64_t C = g.c, sc = g.s * C;
  const auto [lo, hi] = InteriorColumns(g, g.kw);
  int64_t i0 = 0, i1 = g.kh;  // row taps inside the image: contiguous
  while (i0 < g.kh && o * g.s + i0 * g.d - g.p < 0) ++i0;
  while (i1 > i0 && o * g.s + (i1 - 1) * g.d - g.p >= g.h) --i1;
  auto pixel = [&](int64_t q) {
    T acc = {};
    for (int64_t i = i0; i < i1; ++i) {
      const float* xr = x + (o * g.s + i * g.d - g.p) * g.w * C + c0;
      for (int64_t j = 0; j < g.kw; ++j) {
        int64_t col = q * g.s + j * g.d - g.p;
        if (col < 0 || col >= g.w) continue;
        acc += LoadX<V, kRelu>(xr + col * C) * Load<V>(w + (i * g.kw + j) * C + c0);
      }
    }
    Store<V>(out_row + q * ldo + c0, acc);
  };
  for (int64_t q = 0; q < lo; ++q) pixel(q);
  int64_t q = lo;
  for (; q + 4 <= hi; q += 4) {
    T a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int64_t i = i0; i < i1; ++i) {
      const float* xr = x + ((o * g.s + i * g.d - g.p) * g.w + q * g.s - g.p) * C + c0;
      const float* wr = w + i * g.kw * C + c0;
      for (int64_t j = 0; j < g.kw; ++j) {
        const T wv = Load<V>(wr + j * C);
        const float* p = xr + j * g.d * C;
        a0 += LoadX<V, kRelu>(p) * wv;
        a1 += LoadX<V, kRelu>(p + sc) * wv;
        a2 += LoadX<V, kRelu>(p + 2 * sc) * wv;
        a3 += LoadX<V, kRelu>(p + 3 * sc) * wv;
      }
    }
    float* ob = out_row + q * ldo + c0;
    Store<V>(ob, a0);
    Store<V>(ob + ldo, a1);
    Store<V>(ob + 2 * ldo, a2);
    Store<V>(ob + 3 * ldo, a3);
  }
  for (; q < g.wo; ++q) pixel(q);
}

// dw(x) of one image into out (ho, wo, c).
template <bool kRelu>
void Depthwise(const float* x, const float* w, float* out, const Conv& g) {
  for (int64_t o = 0; o < g.ho; ++o)
    ForBlocks(g.c, [&]<int V>(int64_t c0) {
      DepthwiseRow<V, kRelu>(x, w, out + o * g.wo * g.c, g.c, g, c0, o);
    });
}

// acc[i, j, :] += sum_{o, q} x[o*s + i*d - p, q*s + j*d - p, :] * ct[o, q, :] for one
// image (x through ReLU if kRelu), one tap at a time over its valid output ranges: the
// general form, for kernel widths without a `KernelGradRows` instance.
template <bool kRelu>
void KernelGradTaps(const float* __restrict x, const float* __restrict ct, float* __restrict acc,
                const Conv& g) {
  ForBlocks(g.c, [&]<int V>(int64_t c0) {
    using T = typename Vec<V>::T;
    const int64_t C = g.c, sc = g.s * C;
    for (int64_t i = 0; i < g.kh; ++i) {
      const Range ro = TapRange(g.ho, g.h, i * g.d - g.p, g.s);
      for (int64_t j = 0; j < g.kw; ++j) {
        const Range rq = TapRange(g.wo, g.w, j * g.d - g.p, g.s);
        T a0 = {}, a1 = {}, a2 = {}, a3 = {};
        for (int64_t o = ro.lo; o < ro.hi; ++o) {
          const float* xr = x + ((o * g.s + i * g.d - g.p) * g.w + j * g.d - g.p) * C + c0;
          const float* cr = ct + o * g.wo * C + c0;
          int64_t q = rq.lo;
          for (; q + 4 <= rq.hi; q += 4) {
            a0 += LoadX<V, kRelu>(xr + q * sc) * Load<V>(cr + q * C);
            a1 += LoadX<V, kRelu>(xr + (q + 1) * sc) * Load<V>(cr + (q + 1) * C);
            a2 += LoadX<V, kRelu>(xr + (q + 2) * sc) * Load<V>(cr + (q + 2) * C);
            a3 += LoadX<V, kRelu>(xr + (q + 3) * sc) * Load<V>(cr + (q + 3) * C);
          }
          for (; q < rq.hi; ++q) a0 += LoadX<V, kRelu>(xr + q * sc) * Load<V>(cr + q * C);
        }
        float* ab = acc + (i * g.kw + j) * C + c0;
        Store<V>(ab, Load<V>(ab) + ((a0 + a1) + (a2 + a3)));
      }
    }
  });
}

// KernelGrad for kernel width KW: per output row o and kernel row i, the KW column taps
// sum over the row's interior columns in 2*KW register accumulators (each ct vector
// loaded once for all KW taps); border columns check each tap.
template <bool kRelu, int KW>
void KernelGradRows(const float* __restrict x, const float* __restrict ct,
                    float* __restrict acc, const Conv& g) {
  ForBlocks(g.c, [&]<int V>(int64_t c0) {
    using T = typename Vec<V>::T;
    const int64_t C = g.c, sc = g.s * C, dc = g.d * C;
    const auto [lo, hi] = InteriorColumns(g, KW);
    for (int64_t i = 0; i < g.kh; ++i) {
      const Range ro = TapRange(g.ho, g.h, i * g.d - g.p, g.s);
      T s0[KW] = {}, s1[KW] = {};
      float* arow = acc + i * KW * C + c0;
      for (int64_t o = ro.lo; o < ro.hi; ++o) {
        const float* xr = x + (o * g.s + i * g.d - g.p) * g.w * C + c0;
        const float* cr = ct + o * g.wo * C + c0;
        auto border = [&](int64_t q) {
          const T cv = Load<V>(cr + q * C);
          for (int j = 0; j < KW; ++j) {
            int64_t col = q * g.s + j * g.d - g.p;
            if (col >= 0 && col < g.w) s0[j] += LoadX<V, kRelu>(xr + col * C) * cv;
          }
        };
        for (int64_t q = 0; q < lo; ++q) border(q);
        int64_t q = lo;
        for (; q + 2 <= hi; q += 2) {
          const T c0v = Load<V>(cr + q * C), c1v = Load<V>(cr + (q + 1) * C);
          const float* p0 = xr + (q * g.s - g.p) * C;
#pragma GCC unroll 8
          for (int j = 0; j < KW; ++j) {
            s0[j] += LoadX<V, kRelu>(p0 + j * dc) * c0v;
            s1[j] += LoadX<V, kRelu>(p0 + sc + j * dc) * c1v;
          }
        }
        for (; q < g.wo; ++q) border(q);
      }
      for (int j = 0; j < KW; ++j) Store<V>(arow + j * C, Load<V>(arow + j * C) + s0[j] + s1[j]);
    }
  });
}

template <bool kRelu>
void KernelGrad(const float* x, const float* ct, float* acc, const Conv& g) {
  switch (g.kw) {
    case 1: return KernelGradRows<kRelu, 1>(x, ct, acc, g);
    case 3: return KernelGradRows<kRelu, 3>(x, ct, acc, g);
    case 5: return KernelGradRows<kRelu, 5>(x, ct, acc, g);
    case 7: return KernelGradRows<kRelu, 7>(x, ct, acc, g);
    default: return KernelGradTaps<kRelu>(x, ct, acc, g);
  }
}

// The input gradient of dw for one image: dx (h, w, c) from ct (ho, wo, c). At stride 1
// it is the depthwise conv of ct with the flipped kernel (`wf`, filled here) and padding
// (k-1)*d - p, a gather writing each dx element once; otherwise a scatter per tap.
void InputGrad(const float* __restrict ct, const float* __restrict w, float* __restrict dx,
               const Conv& g, std::vector<float>& wf) {
  const int64_t C = g.c;
  if (g.s == 1 && (g.kh - 1) * g.d >= g.p && (g.kw - 1) * g.d >= g.p) {
    wf.resize(g.kh * g.kw * C);
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j)
        std::memcpy(&wf[(i * g.kw + j) * C], w + ((g.kh - 1 - i) * g.kw + g.kw - 1 - j) * C,
                    C * sizeof(float));
    const Conv t = {g.ho, g.wo, C, g.kh, g.kw, g.h, g.w, 1, (g.kh - 1) * g.d - g.p, g.d};
    Depthwise<false>(ct, wf.data(), dx, t);
    return;
  }
  std::fill(dx, dx + g.h * g.w * C, 0.f);
  ForBlocks(C, [&]<int V>(int64_t c0) {
    using T = typename Vec<V>::T;
    const int64_t sc = g.s * C;
    for (int64_t i = 0; i < g.kh; ++i) {
      const Range ro = TapRange(g.ho, g.h, i * g.d - g.p, g.s);
      for (int64_t j = 0; j < g.kw; ++j) {
        const Range rq = TapRange(g.wo, g.w, j * g.d - g.p, g.s);
        const T wv = Load<V>(w + (i * g.kw + j) * C + c0);
        for (int64_t o = ro.lo; o < ro.hi; ++o) {
          float* dr = dx + ((o * g.s + i * g.d - g.p) * g.w + j * g.d - g.p) * C + c0;
          const float* cr = ct + o * g.wo * C + c0;
          for (int64_t q = rq.lo; q < rq.hi; ++q)
            Store<V>(dr + q * sc, Load<V>(dr + q * sc) + Load<V>(cr + q * C) * wv);
        }
      }
    }
  });
}

// out[q, :] = sum_k a[q, k] * b[k, :] for q in [0, rows): a (rows, K) with row stride
// lda, b (K, M) row-major, out (rows, M) with row stride ldo. Eight rows at a time.
void MatMul(const float* __restrict a, int64_t lda, int64_t rows, int64_t K,
            const float* __restrict b, int64_t M, float* __restrict out, int64_t ldo) {
  ForBlocks(M, [&]<int V>(int64_t m0) {
    using T = typename Vec<V>::T;
    int64_t q = 0;
    for (; q + 8 <= rows; q += 8) {
      T acc[8] = {};
      for (int64_t k = 0; k < K; ++k) {
        const T bv = Load<V>(b + k * M + m0);
#pragma GCC unroll 8
        for (int r = 0; r < 8; ++r) acc[r] += a[(q + r) * lda + k] * bv;
      }
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) Store<V>(out + (q + r) * ldo + m0, acc[r]);
    }
    for (; q < rows; ++q) {
      T acc = {};
      for (int64_t k = 0; k < K; ++k) acc += a[q * lda + k] * Load<V>(b + k * M + m0);
      Store<V>(out + q * ldo + m0, acc);
    }
  });
}

// acc[k, :] += sum_q a[q, k] * c[q, :] over q in [0, rows): a (rows, K), c (rows, M),
// both row-major and dense; acc (K, M). Four rows of acc at a time.
void MatMulAtB(const float* __restrict a, int64_t K, const float* __restrict c, int64_t M,
               int64_t rows, float* __restrict acc) {
  ForBlocks(M, [&]<int V>(int64_t m0) {
    using T = typename Vec<V>::T;
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
      T s0 = {}, s1 = {}, s2 = {}, s3 = {};
      for (int64_t q = 0; q < rows; ++q) {
        const T cv = Load<V>(c + q * M + m0);
        const float* ar = a + q * K + k;
        s0 += ar[0] * cv;
        s1 += ar[1] * cv;
        s2 += ar[2] * cv;
        s3 += ar[3] * cv;
      }
      float* o = acc + k * M + m0;
      Store<V>(o, Load<V>(o) + s0);
      Store<V>(o + M, Load<V>(o + M) + s1);
      Store<V>(o + 2 * M, Load<V>(o + 2 * M) + s2);
      Store<V>(o + 3 * M, Load<V>(o + 3 * M) + s3);
    }
    for (; k < K; ++k) {
      T s = {};
      for (int64_t q = 0; q < rows; ++q) s += a[q * K + k] * Load<V>(c + q * M + m0);
      Store<V>(acc + k * M + m0, Load<V>(acc + k * M + m0) + s);
    }
  });
}

// ---------------------------------------------------------------------------------------
// Operand checks and the vmap axes.

// Each operand's leading dims (those before its `trailing` core dims) against the
// output's; an operand's offset for flat output lead index b is sum(index * stride).
struct Lead {
  std::vector<int64_t> out;
  std::vector<std::vector<int64_t>> strides;  // per operand, in units of its core block
  int64_t count = 1;

  int64_t Offset(int which, int64_t flat) const {
    int64_t off = 0;
    for (int64_t a = int64_t(out.size()) - 1; a >= 0; --a) {
      off += (flat % out[a]) * strides[which][a];
      flat /= out[a];
    }
    return off;
  }
};

struct Operand {
  ffi::Span<const int64_t> dims;
  int64_t trailing;
};

ffi::Error MakeLead(const std::vector<Operand>& ops, Operand result, Lead* lead) {
  const int64_t r = int64_t(result.dims.size()) - result.trailing;
  if (r < 0) return ffi::Error::InvalidArgument("nas_jax native: result rank too small");
  lead->out.assign(result.dims.begin(), result.dims.begin() + r);
  for (int64_t s : lead->out) lead->count *= s;
  for (const Operand& op : ops) {
    if (int64_t(op.dims.size()) - op.trailing != r)
      return ffi::Error::InvalidArgument("nas_jax native: operands have different vmap ranks");
    std::vector<int64_t> strides(r);
    int64_t stride = 1;
    for (int64_t a = r - 1; a >= 0; --a) {
      if (op.dims[a] != 1 && op.dims[a] != lead->out[a])
        return ffi::Error::InvalidArgument("nas_jax native: vmap dims do not broadcast");
      strides[a] = op.dims[a] == 1 ? 0 : stride;
      stride *= op.dims[a];
    }
    lead->strides.push_back(std::move(strides));
  }
  return ffi::Error::Success();
}

// The last `n` dims of `d`.
std::vector<int64_t> Core(ffi::Span<const int64_t> d, size_t n) {
  return std::vector<int64_t>(d.end() - n, d.end());
}

// Geometry from x (N, H, W, C), the depthwise kernel (KH, KW, 1, C) and the conv output
// (N, Ho, Wo, C'); C' = C unless the output is the pointwise one.
ffi::Error ReadConv(ffi::Span<const int64_t> x, ffi::Span<const int64_t> k,
                    ffi::Span<const int64_t> out, int64_t s, int64_t p, int64_t d, Conv* g,
                    int64_t* n) {
  if (x.size() < 4 || k.size() < 4 || out.size() < 4)
    return ffi::Error::InvalidArgument("nas_jax native: expected rank-4 operands");
  auto X = Core(x, 4), K = Core(k, 4), O = Core(out, 4);
  *n = X[0];
  *g = {X[1], X[2], X[3], K[0], K[1], O[1], O[2], s, p, d};
  if (K[2] != 1 || K[3] != X[3] || O[0] != X[0])
    return ffi::Error::InvalidArgument("nas_jax native: kernel (KH, KW, 1, C) and shapes disagree");
  if (s < 1 || d < 1 || g->ho != FloorDiv(g->h + 2 * p - d * (g->kh - 1) - 1, s) + 1 ||
      g->wo != FloorDiv(g->w + 2 * p - d * (g->kw - 1) - 1, s) + 1)
    return ffi::Error::InvalidArgument("nas_jax native: output size disagrees with the conv");
  return ffi::Error::Success();
}

using F32 = ffi::Buffer<ffi::F32>;
using R32 = ffi::ResultBuffer<ffi::F32>;

#define NAS_JAX_CHECK(expr)              \
  if (ffi::Error e = (expr); e.failure()) \
    return e;

// ---------------------------------------------------------------------------------------
// Handlers.

ffi::Error ForwardImpl(F32 x, F32 w, R32 out, int64_t s, int64_t p, int64_t d) {
  Conv g;
  int64_t n;
  NAS_JAX_CHECK(ReadConv(x.dimensions(), w.dimensions(), out->dimensions(), s, p, d, &g, &n));
  Lead lead;
  NAS_JAX_CHECK(MakeLead({{x.dimensions(), 4}, {w.dimensions(), 4}}, {out->dimensions(), 4}, &lead));
  const int64_t xi = g.h * g.w * g.c, oi = g.ho * g.wo * g.c, ws = g.kh * g.kw * g.c;
  for (int64_t b = 0; b < lead.count; ++b) {
    const float* xb = x.typed_data() + lead.Offset(0, b) * n * xi;
    const float* wb = w.typed_data() + lead.Offset(1, b) * ws;
    float* ob = out->typed_data() + b * n * oi;
    for (int64_t m = 0; m < n; ++m) Depthwise<false>(xb + m * xi, wb, ob + m * oi, g);
  }
  return ffi::Error::Success();
}

ffi::Error InputGradImpl(F32 ct, F32 w, R32 dx, int64_t s, int64_t p, int64_t d) {
  Conv g;
  int64_t n;
  NAS_JAX_CHECK(ReadConv(dx->dimensions(), w.dimensions(), ct.dimensions(), s, p, d, &g, &n));
  Lead lead;
  NAS_JAX_CHECK(MakeLead({{ct.dimensions(), 4}, {w.dimensions(), 4}}, {dx->dimensions(), 4}, &lead));
  const int64_t xi = g.h * g.w * g.c, oi = g.ho * g.wo * g.c, ws = g.kh * g.kw * g.c;
  std::vector<float> wf;
  for (int64_t b = 0; b < lead.count; ++b) {
    const float* cb = ct.typed_data() + lead.Offset(0, b) * n * oi;
    const float* wb = w.typed_data() + lead.Offset(1, b) * ws;
    float* db = dx->typed_data() + b * n * xi;
    for (int64_t m = 0; m < n; ++m) InputGrad(cb + m * oi, wb, db + m * xi, g, wf);
  }
  return ffi::Error::Success();
}

// Per-image float sums of the kernel gradient, accumulated across the batch in double.
struct BatchSum {
  std::vector<float> image;
  std::vector<double> total;
  explicit BatchSum(int64_t size) : image(size), total(size) {}
  void StartBatch() { std::fill(total.begin(), total.end(), 0.0); }
  float* StartImage() {
    std::fill(image.begin(), image.end(), 0.f);
    return image.data();
  }
  void EndImage() {
    for (size_t t = 0; t < image.size(); ++t) total[t] += image[t];
  }
  void Write(float* out) const {
    for (size_t t = 0; t < total.size(); ++t) out[t] = float(total[t]);
  }
};

ffi::Error KernelGradImpl(F32 x, F32 ct, R32 dw, int64_t s, int64_t p, int64_t d) {
  Conv g;
  int64_t n;
  NAS_JAX_CHECK(ReadConv(x.dimensions(), dw->dimensions(), ct.dimensions(), s, p, d, &g, &n));
  Lead lead;
  NAS_JAX_CHECK(MakeLead({{x.dimensions(), 4}, {ct.dimensions(), 4}}, {dw->dimensions(), 4}, &lead));
  const int64_t xi = g.h * g.w * g.c, oi = g.ho * g.wo * g.c, ws = g.kh * g.kw * g.c;
  BatchSum sum(ws);
  for (int64_t b = 0; b < lead.count; ++b) {
    const float* xb = x.typed_data() + lead.Offset(0, b) * n * xi;
    const float* cb = ct.typed_data() + lead.Offset(1, b) * n * oi;
    sum.StartBatch();
    for (int64_t m = 0; m < n; ++m) {
      KernelGrad<false>(xb + m * xi, cb + m * oi, sum.StartImage(), g);
      sum.EndImage();
    }
    sum.Write(dw->typed_data() + b * ws);
  }
  return ffi::Error::Success();
}

// The pointwise kernel pw (C, M) against x (N, H, W, C) and the output (N, Ho, Wo, M).
ffi::Error ReadSep(ffi::Span<const int64_t> x, ffi::Span<const int64_t> w,
                   ffi::Span<const int64_t> pw, ffi::Span<const int64_t> out, int64_t s,
                   int64_t p, int64_t d, Conv* g, int64_t* n, int64_t* m) {
  if (pw.size() < 2 || out.size() < 4 || x.size() < 4)
    return ffi::Error::InvalidArgument("nas_jax native: sep expects pw (C, M), out rank 4");
  auto P = Core(pw, 2), X = Core(x, 4), O = Core(out, 4);
  *m = P[1];
  if (P[0] != X[3] || O[3] != P[1])
    return ffi::Error::InvalidArgument("nas_jax native: pointwise kernel and shapes disagree");
  // Check the depthwise part against an output with x's channels.
  std::vector<int64_t> dw_out = {O[0], O[1], O[2], X[3]};
  return ReadConv(x, w, ffi::Span<const int64_t>(dw_out.data(), 4), s, p, d, g, n);
}

ffi::Error SepForwardImpl(F32 x, F32 w, F32 pw, R32 out, int64_t s, int64_t p, int64_t d) {
  Conv g;
  int64_t n, M;
  NAS_JAX_CHECK(ReadSep(x.dimensions(), w.dimensions(), pw.dimensions(), out->dimensions(), s,
                        p, d, &g, &n, &M));
  Lead lead;
  NAS_JAX_CHECK(MakeLead({{x.dimensions(), 4}, {w.dimensions(), 4}, {pw.dimensions(), 2}},
                         {out->dimensions(), 4}, &lead));
  const int64_t C = g.c, xi = g.h * g.w * C, oi = g.ho * g.wo * M, ws = g.kh * g.kw * C;
  std::vector<float> row(g.wo * C);
  for (int64_t b = 0; b < lead.count; ++b) {
    const float* xb = x.typed_data() + lead.Offset(0, b) * n * xi;
    const float* wb = w.typed_data() + lead.Offset(1, b) * ws;
    const float* pb = pw.typed_data() + lead.Offset(2, b) * C * M;
    float* ob = out->typed_data() + b * n * oi;
    for (int64_t m = 0; m < n; ++m)
      for (int64_t o = 0; o < g.ho; ++o) {
        // One row of dw(relu(x)) in L1, then its pointwise product.
        ForBlocks(C, [&]<int V>(int64_t c0) {
          DepthwiseRow<V, true>(xb + m * xi, wb, row.data(), C, g, c0, o);
        });
        MatMul(row.data(), C, g.wo, C, pb, M, ob + m * oi + o * g.wo * M, M);
      }
  }
  return ffi::Error::Success();
}

ffi::Error SepBackwardImpl(F32 x, F32 w, F32 pw, F32 ct, R32 dx, R32 dw, R32 dpw, int64_t s,
                           int64_t p, int64_t d) {
  Conv g;
  int64_t n, M;
  NAS_JAX_CHECK(ReadSep(x.dimensions(), w.dimensions(), pw.dimensions(), ct.dimensions(), s, p,
                        d, &g, &n, &M));
  Lead lead;
  NAS_JAX_CHECK(MakeLead(
      {{x.dimensions(), 4}, {w.dimensions(), 4}, {pw.dimensions(), 2}, {ct.dimensions(), 4}},
      {dx->dimensions(), 4}, &lead));
  const int64_t C = g.c, xi = g.h * g.w * C, ti = g.ho * g.wo * C, oi = g.ho * g.wo * M;
  const int64_t ws = g.kh * g.kw * C, pix = g.ho * g.wo;
  std::vector<float> t(ti), dt(ti), pwt(M * C), wf;
  BatchSum sum_w(ws), sum_pw(C * M);
  for (int64_t b = 0; b < lead.count; ++b) {
    const float* xb = x.typed_data() + lead.Offset(0, b) * n * xi;
    const float* wb = w.typed_data() + lead.Offset(1, b) * ws;
    const float* pb = pw.typed_data() + lead.Offset(2, b) * C * M;
    const float* cb = ct.typed_data() + lead.Offset(3, b) * n * oi;
    float* db = dx->typed_data() + b * n * xi;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t k = 0; k < M; ++k) pwt[k * C + c] = pb[c * M + k];
    sum_w.StartBatch();
    sum_pw.StartBatch();
    for (int64_t m = 0; m < n; ++m) {
      const float* xm = xb + m * xi;
      const float* cm = cb + m * oi;
      float* dxm = db + m * xi;
      Depthwise<true>(xm, wb, t.data(), g);                 // t = dw(relu(x)), recomputed
      MatMulAtB(t.data(), C, cm, M, pix, sum_pw.StartImage());  // dpw += t^T ct
      sum_pw.EndImage();
      MatMul(cm, M, pix, M, pwt.data(), C, dt.data(), C);   // dt = ct pw^T
      KernelGrad<true>(xm, dt.data(), sum_w.StartImage(), g);  // dw += relu(x) (*) dt
      sum_w.EndImage();
      InputGrad(dt.data(), wb, dxm, g, wf);                 // dx = dw^T(dt) * (x > 0)
      for (int64_t e = 0; e < xi; ++e) dxm[e] = xm[e] > 0 ? dxm[e] : 0.f;
    }
    sum_w.Write(dw->typed_data() + b * ws);
    sum_pw.Write(dpw->typed_data() + b * C * M);
  }
  return ffi::Error::Success();
}

}  // namespace

#define NAS_JAX_ATTRS .Attr<int64_t>("stride").Attr<int64_t>("padding").Attr<int64_t>("dilation")

XLA_FFI_DEFINE_HANDLER_SYMBOL(NasJaxDepthwiseForward, ForwardImpl,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>() NAS_JAX_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(NasJaxDepthwiseInputGrad, InputGradImpl,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>() NAS_JAX_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(NasJaxDepthwiseKernelGrad, KernelGradImpl,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>() NAS_JAX_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(NasJaxSepForward, SepForwardImpl,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Arg<F32>().Ret<F32>()
                                  NAS_JAX_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(NasJaxSepBackward, SepBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Arg<F32>()
                                  .Ret<F32>()
                                  .Ret<F32>()
                                  .Ret<F32>() NAS_JAX_ATTRS);
