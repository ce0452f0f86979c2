// CpuBackend's whole convolutions through oneDNN (Debian's libdnnl, the library PyTorch's CPU
// convolutions use), built when oneDNN is found (core/CMakeLists.txt); without it, and with
// CpuBackendOptions::onednn_convolutions off, the Backend defaults (Im2Col + Gemm per sample)
// run instead.
//
// oneDNN's fastest kernels want blocked layouts (e.g. 16 channels interleaved for AVX-512):
// each primitive is created with the layouts left to oneDNN, and the NCHW/OIHW tensors of the
// rest of psgrid are reordered into and out of them around each call. Primitives, reorders and
// the blocked buffers are made once per convolution shape (JIT compilation is slow) and kept.
// oneDNN runs on OpenMP threads: as many as OpenBLAS uses (SetBlasThreads), set before each call.
#include <memory>

#include "core/backend/cpu_backend.h"

#if PSGRID_WITH_DNNL
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#endif

namespace psgrid {

#if PSGRID_WITH_DNNL
namespace {

using Tag = dnnl::memory::format_tag;
using DataType = dnnl::memory::data_type;

// A tensor in psgrid's layout wrapped around a caller's pointer, and the same tensor in the
// layout a primitive wants (the same memory object when the two agree), with the reorders
// between them.
struct Operand {
  Operand() = default;
  Operand(const dnnl::memory::desc& plain, const dnnl::memory::desc& wanted,
          const dnnl::engine& engine)
      : user(plain, engine, DNNL_MEMORY_NONE) {
    if (wanted != plain) {
      internal = dnnl::memory(wanted, engine);
      to_internal = dnnl::reorder(user, internal);
      to_user = dnnl::reorder(internal, user);
    } else {
      internal = user;
    }
  }
  bool reordered() const { return static_cast<bool>(to_internal); }
  // Points the user memory at p and, when the layouts differ, copies it into the internal one.
  void In(const float* p, dnnl::stream& stream) {
    user.set_data_handle(const_cast<float*>(p));
    if (reordered()) {
      to_internal.execute(stream, user, internal);
    } else {
      internal.set_data_handle(const_cast<float*>(p));
    }
  }
  // Points the user memory at p; the primitive writes `internal`, Out() then copies back.
  void Target(float* p) {
    user.set_data_handle(p);
    if (!reordered()) internal.set_data_handle(p);
  }
  void Out(dnnl::stream& stream) {
    if (reordered()) to_user.execute(stream, internal, user);
  }

  dnnl::memory user, internal;
  dnnl::reorder to_internal, to_user;
};

dnnl::memory::dims Dims(std::initializer_list<int64_t> d) {
  return dnnl::memory::dims(d.begin(), d.end());
}

}  // namespace

// Convolutions through oneDNN, one set of primitives per shape. Used under its mutex: a
// CpuBackend may be shared between threads.
class DnnlConvolutions {
 public:
  DnnlConvolutions();
  ~DnnlConvolutions();
  void Forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
               float* y);
  void Backward(const Conv2dShape& s, const float* x, const float* w, const float* dy, float* dw,
                float* dbias, float* dx);

 private:
  struct Entry;
  Entry& Find(const Conv2dShape& s, bool bias);
  void PrepareBackward(Entry& e, bool data);

  dnnl::engine engine_;
  dnnl::stream stream_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_;
};

// The primitives of one convolution shape (with or without bias).
struct DnnlConvolutions::Entry {
  Conv2dShape shape;
  bool bias = false;
  dnnl::memory::desc x_md, w_md, b_md, y_md;  // psgrid's layouts
  dnnl::convolution_forward::primitive_desc forward_pd;
  dnnl::convolution_forward forward;
  Operand fx, fw, fy;
  dnnl::memory fb;
  // Made on the first backward pass.
  bool has_backward_data = false, has_backward_weights = false;
  dnnl::convolution_backward_data backward_data;
  Operand dd_dy, dd_w, dd_dx;
  dnnl::convolution_backward_weights backward_weights;
  Operand dw_x, dw_dy, dw_dw;
  dnnl::memory dw_db;
};

DnnlConvolutions::DnnlConvolutions()
    : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

DnnlConvolutions::~DnnlConvolutions() = default;

DnnlConvolutions::Entry& DnnlConvolutions::Find(const Conv2dShape& s, bool bias) {
  for (auto& e : entries_) {
    if (e->shape == s && e->bias == bias) return *e;
  }
  // Shapes change rarely (the batch size of a last, short batch or of evaluation): keep a few.
  if (entries_.size() >= 8) entries_.erase(entries_.begin());
  auto e = std::make_unique<Entry>();
  e->shape = s;
  e->bias = bias;
  e->x_md = dnnl::memory::desc(Dims({s.batch, s.channels, s.height, s.width}), DataType::f32,
                               Tag::nchw);
  e->w_md = dnnl::memory::desc(Dims({s.filters, s.channels, s.kernel, s.kernel}), DataType::f32,
                               Tag::oihw);
  e->b_md = dnnl::memory::desc(Dims({s.filters}), DataType::f32, Tag::x);
  e->y_md = dnnl::memory::desc(Dims({s.batch, s.filters, s.out_h(), s.out_w()}), DataType::f32,
                               Tag::nchw);
  const auto any = [](const dnnl::memory::desc& md) {
    return dnnl::memory::desc(md.dims(), DataType::f32, Tag::any);
  };
  const dnnl::memory::dims strides = Dims({s.stride, s.stride});
  const dnnl::memory::dims padding = Dims({s.padding, s.padding});
  dnnl::convolution_forward::desc desc =
      bias ? dnnl::convolution_forward::desc(
                 dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                 any(e->x_md), any(e->w_md), e->b_md, any(e->y_md), strides, padding, padding)
           : dnnl::convolution_forward::desc(
                 dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                 any(e->x_md), any(e->w_md), any(e->y_md), strides, padding, padding);
  e->forward_pd = dnnl::convolution_forward::primitive_desc(desc, engine_);
  e->forward = dnnl::convolution_forward(e->forward_pd);
  e->fx = Operand(e->x_md, e->forward_pd.src_desc(), engine_);
  e->fw = Operand(e->w_md, e->forward_pd.weights_desc(), engine_);
  e->fy = Operand(e->y_md, e->forward_pd.dst_desc(), engine_);
  if (bias) e->fb = dnnl::memory(e->b_md, engine_, DNNL_MEMORY_NONE);
  entries_.push_back(std::move(e));
  return *entries_.back();
}

void DnnlConvolutions::PrepareBackward(Entry& e, bool data) {
  const Conv2dShape& s = e.shape;
  const auto any = [](const dnnl::memory::desc& md) {
    return dnnl::memory::desc(md.dims(), DataType::f32, Tag::any);
  };
  const dnnl::memory::dims strides = Dims({s.stride, s.stride});
  const dnnl::memory::dims padding = Dims({s.padding, s.padding});
  if (data && !e.has_backward_data) {
    dnnl::convolution_backward_data::primitive_desc pd(
        dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, any(e.x_md),
                                              any(e.w_md), any(e.y_md), strides, padding,
                                              padding),
        engine_, e.forward_pd);
    e.backward_data = dnnl::convolution_backward_data(pd);
    e.dd_dy = Operand(e.y_md, pd.diff_dst_desc(), engine_);
    e.dd_w = Operand(e.w_md, pd.weights_desc(), engine_);
    e.dd_dx = Operand(e.x_md, pd.diff_src_desc(), engine_);
    e.has_backward_data = true;
  }
  if (!e.has_backward_weights) {
    dnnl::convolution_backward_weights::desc desc =
        e.bias ? dnnl::convolution_backward_weights::desc(
                     dnnl::algorithm::convolution_direct, any(e.x_md), any(e.w_md), e.b_md,
                     any(e.y_md), strides, padding, padding)
               : dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct,
                                                          any(e.x_md), any(e.w_md),
                                                          any(e.y_md), strides, padding,
                                                          padding);
    dnnl::convolution_backward_weights::primitive_desc pd(desc, engine_, e.forward_pd);
    e.backward_weights = dnnl::convolution_backward_weights(pd);
    e.dw_x = Operand(e.x_md, pd.src_desc(), engine_);
    e.dw_dy = Operand(e.y_md, pd.diff_dst_desc(), engine_);
    e.dw_dw = Operand(e.w_md, pd.diff_weights_desc(), engine_);
    if (e.bias) e.dw_db = dnnl::memory(e.b_md, engine_, DNNL_MEMORY_NONE);
    e.has_backward_weights = true;
  }
}

void DnnlConvolutions::Forward(const Conv2dShape& s, const float* x, const float* w,
                               const float* bias, float* y) {
  std::lock_guard<std::mutex> lock(mu_);
  omp_set_num_threads(std::max(1, openblas_get_num_threads()));
  Entry& e = Find(s, bias != nullptr);
  e.fx.In(x, stream_);
  e.fw.In(w, stream_);
  e.fy.Target(y);
  std::unordered_map<int, dnnl::memory> args = {
      {DNNL_ARG_SRC, e.fx.internal}, {DNNL_ARG_WEIGHTS, e.fw.internal},
      {DNNL_ARG_DST, e.fy.internal}};
  if (bias != nullptr) {
    e.fb.set_data_handle(const_cast<float*>(bias));
    args[DNNL_ARG_BIAS] = e.fb;
  }
  e.forward.execute(stream_, args);
  e.fy.Out(stream_);
  stream_.wait();
}

void DnnlConvolutions::Backward(const Conv2dShape& s, const float* x, const float* w,
                                const float* dy, float* dw, float* dbias, float* dx) {
  std::lock_guard<std::mutex> lock(mu_);
  omp_set_num_threads(std::max(1, openblas_get_num_threads()));
  Entry& e = Find(s, dbias != nullptr);
  PrepareBackward(e, dx != nullptr);
  if (dx != nullptr) {
    e.dd_dy.In(dy, stream_);
    e.dd_w.In(w, stream_);
    e.dd_dx.Target(dx);
    e.backward_data.execute(stream_, {{DNNL_ARG_DIFF_DST, e.dd_dy.internal},
                                      {DNNL_ARG_WEIGHTS, e.dd_w.internal},
                                      {DNNL_ARG_DIFF_SRC, e.dd_dx.internal}});
    e.dd_dx.Out(stream_);
  }
  e.dw_x.In(x, stream_);
  e.dw_dy.In(dy, stream_);
  e.dw_dw.Target(dw);
  std::unordered_map<int, dnnl::memory> args = {{DNNL_ARG_SRC, e.dw_x.internal},
                                                {DNNL_ARG_DIFF_DST, e.dw_dy.internal},
                                                {DNNL_ARG_DIFF_WEIGHTS, e.dw_dw.internal}};
  if (dbias != nullptr) {
    e.dw_db.set_data_handle(dbias);
    args[DNNL_ARG_DIFF_BIAS] = e.dw_db;
  }
  e.backward_weights.execute(stream_, args);
  e.dw_dw.Out(stream_);
  stream_.wait();
}

CpuBackend::CpuBackend(const CpuBackendOptions& options) {
  if (options.onednn_convolutions) dnnl_ = std::make_unique<DnnlConvolutions>();
}

bool CpuBackend::onednn_convolutions() const { return dnnl_ != nullptr; }

int64_t CpuBackend::Conv2dWorkspaceFloats(const Conv2dShape& s) {
  return dnnl_ ? 0 : Backend::Conv2dWorkspaceFloats(s);
}

void CpuBackend::Conv2dForward(const Conv2dShape& s, const float* x, const float* w,
                               const float* bias, float* y, float* workspace) {
  if (!dnnl_) return Backend::Conv2dForward(s, x, w, bias, y, workspace);
  dnnl_->Forward(s, x, w, bias, y);
}

void CpuBackend::Conv2dBackward(const Conv2dShape& s, const float* x, const float* w,
                                const float* dy, float* dw, float* dbias, float* dx,
                                float* workspace) {
  if (!dnnl_) return Backend::Conv2dBackward(s, x, w, dy, dw, dbias, dx, workspace);
  dnnl_->Backward(s, x, w, dy, dw, dbias, dx);
}

#else  // without oneDNN: the Backend defaults

class DnnlConvolutions {};

CpuBackend::CpuBackend(const CpuBackendOptions& options) {}

bool CpuBackend::onednn_convolutions() const { return false; }

int64_t CpuBackend::Conv2dWorkspaceFloats(const Conv2dShape& s) {
  return Backend::Conv2dWorkspaceFloats(s);
}

void CpuBackend::Conv2dForward(const Conv2dShape& s, const float* x, const float* w,
                               const float* bias, float* y, float* workspace) {
  Backend::Conv2dForward(s, x, w, bias, y, workspace);
}

void CpuBackend::Conv2dBackward(const Conv2dShape& s, const float* x, const float* w,
                                const float* dy, float* dw, float* dbias, float* dx,
                                float* workspace) {
  Backend::Conv2dBackward(s, x, w, dy, dw, dbias, dx, workspace);
}

#endif

CpuBackend::~CpuBackend() = default;

}  // namespace psgrid
