// The XLA FFI handler behind adain_jax.onednn.conv: a bfloat16 or float32 stride-1 convolution of
// an NHWC input with an HWIO kernel, float32 bias and an optional fused ReLU, with an optional
// 1-pixel reflection or edge padding, 2x2 ceil-mode max-pooling or the decoder's upsampling phases
// done here, computed by oneDNN (AMX / AVX512-BF16 kernels for bfloat16, AVX2 / AVX-512 ones for
// float32): float32 accumulation, one rounding to the operands' type at the output.
//
// The backward pass of a stride-1 convolution is two more handlers (further down): backward-data
// (dy, kernel -> dx) and backward-weights (x, dy -> dkernel, dbias), from bfloat16 or float32
// operands with float32 accumulation and float32 results, each with the forward's 1-pixel padding
// done inside (backward-weights pads its rows as the forward does; backward-data adds the border's
// gradient onto the pixels it copies).
//
// The operands' type is read from the buffers at every call (every handler serves both), and is
// part of each cached primitive's key. float32 primitives are built with a strict fpmath mode, so
// that ONEDNN_DEFAULT_FPMATH_MODE in the environment cannot make them round to bfloat16.
// adain_jax.onednn.conv keeps the ReLU mask, the pooling's routing and the upsampling phases in JAX
// (elementwise work), so these two see convolutions with padding only.
//
// Batching: jax.ffi.ffi_call(vmap_method="expand_dims") hands this handler extra leading
// dimensions, size 1 for unbatched operands. When only the input is batched they are folded into
// N; otherwise each batch element is convolved with its own (broadcast) input, kernel and bias.
//
// Caching: primitives are built once per shape (oneDNN JIT-compiles them, which costs
// milliseconds), under a mutex. The kernel is reordered to oneDNN's blocked layout on every call,
// never cached by address: XLA reuses buffers, so an address says nothing about the weights in it.
// The reorder reads the kernel once: under 1% of a stylization's time (measured with
// ONEDNN_VERBOSE=1 at 512x512 on a 2-core Xeon with AMX), so prepacking would not pay.

#include <omp.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// One convolution problem oneDNN compiles: a band of `h` input rows of one (or `n`) images.
using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int, int>;

using dt = dnnl::memory::data_type;

// The operands' oneDNN type and bytes per element, from an XLA buffer type (bfloat16 or float32).
size_t Bytes(dt type) { return type == dt::bf16 ? 2 : 4; }

struct Plan {
  dnnl::convolution_forward conv;
  dnnl::memory::desc src_md, wei_user_md, wei_md, bias_md, dst_md, scratch_md;
  bool reorder_weights = false;
  dnnl::reorder wei_reorder;
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

std::mutex plans_mutex;
std::map<Key, std::shared_ptr<Plan>> plans;

// Every primitive's attributes. A user scratchpad lets concurrent calls of one primitive run
// without sharing memory; the strict fpmath mode keeps float32 primitives float32 whatever
// ONEDNN_DEFAULT_FPMATH_MODE says (bfloat16 ones are unaffected).
dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  attr.set_fpmath_mode(dnnl::fpmath_mode::strict);
  return attr;
}

// `threads` is the OpenMP team size the calling thread asked for: oneDNN sizes its blocking by it,
// so a plan is only reused under the same setting.
std::shared_ptr<Plan> GetPlan(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                              int64_t o, bool relu, int threads, dt type) {
  Key key{n, h, w, c, kh, kw, o, relu, threads, int(type)};
  std::lock_guard<std::mutex> lock(plans_mutex);
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;

  using tag = dnnl::memory::format_tag;
  auto plan = std::make_shared<Plan>();
  plan->src_md = dnnl::memory::desc({n, c, h, w}, type, tag::nhwc);
  plan->wei_user_md = dnnl::memory::desc({o, c, kh, kw}, type, tag::hwio);
  // `any` lets oneDNN choose the blocked weight layout its AMX / AVX512 kernels want.
  auto wei_any = dnnl::memory::desc({o, c, kh, kw}, type, tag::any);
  plan->bias_md = dnnl::memory::desc({o}, dt::f32, tag::a);
  plan->dst_md = dnnl::memory::desc({n, o, h - kh + 1, w - kw + 1}, type, tag::nhwc);

  dnnl::primitive_attr attr = UserScratchpad();
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  auto pd = dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
      plan->src_md, wei_any, plan->bias_md, plan->dst_md, /*strides=*/{1, 1},
      /*padding_l=*/{0, 0}, /*padding_r=*/{0, 0}, attr);
  plan->conv = dnnl::convolution_forward(pd);
  plan->wei_md = pd.weights_desc();
  plan->scratch_md = pd.scratchpad_desc();
  plan->reorder_weights = plan->wei_md != plan->wei_user_md;
  if (plan->reorder_weights) {
    auto rpd = dnnl::reorder::primitive_desc(Engine(), plan->wei_user_md, Engine(), plan->wei_md,
                                             UserScratchpad());
    // A weight reorder needs no scratchpad in oneDNN 3.x; refuse one we would not provide.
    if (rpd.scratchpad_desc().get_size() != 0) {
      throw std::runtime_error("weight reorder asks for a scratchpad");
    }
    plan->wei_reorder = dnnl::reorder(rpd);
  }
  plans.emplace(key, plan);
  return plan;
}

// Per-thread, 64-byte aligned buffers grown on demand: [0] blocked kernels, [1] scratchpad,
// [2] padded input, [3] output before pooling, [4] a weight gradient in oneDNN's layout, [5] a bias
// gradient, [6] / [7] a Winograd band's transformed input / products.
void* Grow(int which, size_t bytes) {
  thread_local std::vector<uint8_t> buffers[8];
  auto& buffer = buffers[which];
  if (buffer.size() < bytes + 64) buffer.resize(bytes + 64);
  auto address = reinterpret_cast<uintptr_t>(buffer.data());
  return reinterpret_cast<void*>((address + 63) & ~uintptr_t{63});
}

dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

int64_t Product(ffi::AnyBuffer::Dimensions dims, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= dims[i];
  return p;
}

// Threading. oneDNN's GNU OpenMP team and XLA's intra-op pool are two sets of threads on the same
// cores: each convolution would wake one while the other spins down, which costs milliseconds per
// layer on a busy machine. So by default every oneDNN call runs single-threaded (omp 1) and the
// work is split into bands of output rows that XLA's own pool executes; ADAIN_JAX_ONEDNN_OMP=1
// instead gives each whole convolution to oneDNN's OpenMP team (for comparison).
// Read on every call (getenv is cheap) so a benchmark can compare both in one process.
bool UseOpenMP() {
  const char* v = std::getenv("ADAIN_JAX_ONEDNN_OMP");
  return v != nullptr && v[0] == '1' && v[1] == '\0';
}

// The process's OpenMP team size (OMP_NUM_THREADS or the affinity mask), read when the library is
// loaded, before any thread's ICV is set to 1 below.
const int kDefaultOmpThreads = omp_get_max_threads();

// Units of work claimed from an atomic counter by the calling thread and by helpers scheduled on
// XLA's pool. The caller waits only for units that were claimed, so it never waits on a helper that
// has not started (no deadlock on a busy or one-thread pool); a helper that starts after the call
// finds no work left and touches nothing but this heap object.
// Each thread that claims a unit gets a worker number (0, 1, ...) for its first one, which the work
// receives: the weight gradient accumulates one partial sum per worker.
struct Shared {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::atomic<int> workers{0};
  int64_t total = 0;
  std::function<void(int64_t, int)> work;
  std::mutex mutex;
  std::condition_variable finished;
  std::string error;
};

void Drain(const std::shared_ptr<Shared>& shared) {
  omp_set_num_threads(1);  // this thread's ICV only
  int worker = -1;
  for (;;) {
    const int64_t i = shared->next.fetch_add(1);
    if (i >= shared->total) return;
    if (worker < 0) worker = shared->workers.fetch_add(1);
    try {
      shared->work(i, worker);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(shared->mutex);
      shared->error = e.what();
    }
    if (shared->done.fetch_add(1) + 1 == shared->total) {
      std::lock_guard<std::mutex> lock(shared->mutex);
      shared->finished.notify_all();
    }
  }
}

// Returns how many workers took part (at most min(threads, total)).
int ParallelFor(ffi::ThreadPool& pool, int64_t total, int64_t threads,
                std::function<void(int64_t, int)> work) {
  auto shared = std::make_shared<Shared>();
  shared->total = total;
  shared->work = std::move(work);
  for (int64_t t = 1; t < std::min(threads, total); ++t) {
    pool.Schedule([shared] { Drain(shared); });
  }
  Drain(shared);
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->finished.wait(lock, [&] { return shared->done.load() == shared->total; });
  if (!shared->error.empty()) throw std::runtime_error(shared->error);
  return shared->workers.load();
}

enum Pad : int32_t { kNone = 0, kReflect = 1, kEdge = 2 };

// Padded row `r` (in -1 .. h) of one NHWC image -> the source row it copies.
inline int64_t SourceRow(int64_t r, int64_t h, int32_t pad) {
  if (r < 0) return pad == kReflect ? 1 : 0;
  if (r >= h) return pad == kReflect ? h - 2 : h - 1;
  return r;
}

// Writes padded rows [r0, r0 + rows) (padded coordinates, 1-pixel border) of one image into `out`.
void PadRows(const uint8_t* image, uint8_t* out, int64_t r0, int64_t rows, int64_t h, int64_t w,
             int64_t c, int32_t pad, size_t bytes) {
  const size_t px = size_t(c) * bytes, in_row = size_t(w) * px, out_row = size_t(w + 2) * px;
  const int64_t left = pad == kReflect ? 1 : 0, right = pad == kReflect ? w - 2 : w - 1;
  for (int64_t i = 0; i < rows; ++i) {
    const uint8_t* src = image + SourceRow(r0 + i - 1, h, pad) * in_row;
    uint8_t* dst = out + i * out_row;
    std::memcpy(dst, src + left * px, px);
    std::memcpy(dst + px, src, in_row);
    std::memcpy(dst + px + in_row, src + right * px, px);
  }
}

// bfloat16 / float32 bits (U: uint16_t / uint32_t) -> an unsigned key with the same order as the
// values (NaN aside), and back: the max of keys is the max of values, in integer operations the
// compiler vectorises.
template <typename U>
inline U OrderKey(U b) {
  constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  return (b & sign) ? U(~b) : U(b | sign);
}
template <typename U>
inline U Unorder(U k) {
  constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  return (k & sign) ? U(k & ~sign) : U(~k);
}

// 2x2 / 2 max-pooling in ceil mode (a trailing odd row / column is its own window) of `rows` x `w`
// x `c` values (bits U) into ceil(rows / 2) x ceil(w / 2) x c.
template <typename U>
void PoolRows(const U* in, int64_t rows, int64_t w, int64_t c, U* out) {
  const int64_t pw = (w + 1) / 2;
  for (int64_t pr = 0; pr < (rows + 1) / 2; ++pr) {
    const U* r0 = in + (2 * pr) * w * c;
    const U* r1 = in + std::min(2 * pr + 1, rows - 1) * w * c;
    for (int64_t pc = 0; pc < pw; ++pc) {
      const int64_t c0 = 2 * pc * c, c1 = std::min(2 * pc + 1, w - 1) * c;
      U* o = out + (pr * pw + pc) * c;
      for (int64_t k = 0; k < c; ++k) {
        const U a = std::max(OrderKey(r0[c0 + k]), OrderKey(r0[c1 + k]));
        const U b = std::max(OrderKey(r1[c0 + k]), OrderKey(r1[c1 + k]));
        o[k] = Unorder(std::max(a, b));
      }
    }
  }
}

void PoolRows(const uint8_t* in, int64_t rows, int64_t w, int64_t c, uint8_t* out, size_t bytes) {
  if (bytes == 2) {
    PoolRows(reinterpret_cast<const uint16_t*>(in), rows, w, c, reinterpret_cast<uint16_t*>(out));
  } else {
    PoolRows(reinterpret_cast<const uint32_t*>(in), rows, w, c, reinterpret_cast<uint32_t*>(out));
  }
}

// The decoder's upsampling, folded into its next convolution: z holds, for each low-resolution
// pixel of an edge-padded (h + 1) x (w + 1) grid, the four phases (p, q) of a 2x2 convolution as
// channel blocks (2p + q) * q_ch. Output pixel (2i + p, 2j + q) is phase (p, q) of z pixel
// (i + p, j + q). Writes the y rows that z rows [r0, r0 + rows) feed: 2r (p = 0) and 2r - 1 (p = 1).
void InterleavePhases(const uint8_t* z, int64_t r0, int64_t rows, int64_t h, int64_t w,
                      int64_t q_ch, uint8_t* y, size_t bytes) {
  const size_t q = size_t(q_ch) * bytes;  // one phase's channels of one pixel, in bytes
  const size_t z_row = size_t(w + 1) * 4 * q, y_row = size_t(2 * w) * q;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t r = r0 + i;
    const uint8_t* zr = z + i * z_row;
    for (int64_t p = 0; p < 2; ++p) {
      if ((p == 0 && r >= h) || (p == 1 && r < 1)) continue;
      uint8_t* yr = y + (2 * r - p) * y_row;
      for (int64_t j = 0; j < w; ++j) {
        for (int64_t qi = 0; qi < 2; ++qi) {
          std::memcpy(yr + (2 * j + qi) * q, zr + (j + qi) * 4 * q + (2 * p + qi) * q, q);
        }
      }
    }
  }
}

// Target size of one band's (padded) input: small enough to stay in a core's L2 cache between the
// padding copy and the convolution that reads it. ADAIN_JAX_ONEDNN_BAND_KB overrides it (tuning;
// 256 KB to 4 MB measured within noise of each other on a 2-core Xeon with AMX).
int64_t BandBytes() {
  const char* v = std::getenv("ADAIN_JAX_ONEDNN_BAND_KB");
  return (v != nullptr ? std::max(16L, std::atol(v)) : 1024L) * 1024;
}

ffi::Error ConvImpl(ffi::ThreadPool xla_pool, ffi::AnyBuffer x, ffi::AnyBuffer kernel,
                    ffi::AnyBuffer bias, ffi::Result<ffi::AnyBuffer> y, bool relu, int32_t pad,
                    bool pool, bool upsample) {
  const auto element = x.element_type();
  if ((element != ffi::DataType::BF16 && element != ffi::DataType::F32) ||
      kernel.element_type() != element || y->element_type() != element ||
      bias.element_type() != ffi::DataType::F32) {
    return ffi::Error::InvalidArgument(
        "adain_onednn_conv: expects input, kernel and output all bfloat16 or all float32, float32 bias");
  }
  const dt type = element == ffi::DataType::BF16 ? dt::bf16 : dt::f32;
  const size_t es = Bytes(type);
  if (pad != kNone && pad != kReflect && pad != kEdge) {
    return ffi::Error::InvalidArgument("adain_onednn_conv: pad must be 0 (none), 1 (reflect) or 2 (edge)");
  }
  auto xd = x.dimensions(), kd = kernel.dimensions(), bd = bias.dimensions(), yd = y->dimensions();
  if (xd.size() < 4 || kd.size() != xd.size() || bd.size() != xd.size() - 3 ||
      yd.size() != xd.size()) {
    return ffi::Error::InvalidArgument("adain_onednn_conv: operand ranks do not match");
  }
  const size_t nb = xd.size() - 4;  // leading (vmapped) dimensions
  for (size_t i = 0; i < nb; ++i) {
    if ((xd[i] != 1 && xd[i] != yd[i]) || (kd[i] != 1 && kd[i] != yd[i]) ||
        (bd[i] != 1 && bd[i] != yd[i])) {
      return ffi::Error::InvalidArgument("adain_onednn_conv: batch dimensions do not match");
    }
  }
  const int64_t n = xd[nb], h = xd[nb + 1], w = xd[nb + 2], c = xd[nb + 3];
  const int64_t kh = kd[nb], kw = kd[nb + 1], o = kd[nb + 3];
  const int64_t p = pad == kNone ? 0 : 1, hp = h + 2 * p, wp = w + 2 * p;
  const int64_t oh = hp - kh + 1, ow = wp - kw + 1;
  if (upsample && (pool || pad != kEdge || kh != 2 || kw != 2 || o % 4 != 0)) {
    return ffi::Error::InvalidArgument(
        "adain_onednn_conv: upsample needs edge padding, a 2x2 kernel of 4 phases and no pooling");
  }
  // y's size: pooled, upsampled (phases interleaved) or the convolution's own.
  const int64_t yh = pool ? (oh + 1) / 2 : upsample ? 2 * h : oh;
  const int64_t yw = pool ? (ow + 1) / 2 : upsample ? 2 * w : ow;
  const int64_t yc = upsample ? o / 4 : o;
  if (kd[nb + 2] != c || bd[nb] != o || hp < kh || wp < kw || yd[nb] != n || yd[nb + 1] != yh ||
      yd[nb + 2] != yw || yd[nb + 3] != yc || (pad == kReflect && (h < 2 || w < 2))) {
    return ffi::Error::InvalidArgument("adain_onednn_conv: shapes do not form a valid convolution");
  }
  const int64_t batches = Product(yd, 0, nb);
  // Only the input batched (the usual vmap): all images form one batch for one kernel.
  const bool shared_weights = Product(kd, 0, nb) == 1 && Product(bd, 0, nb) == 1 &&
                              Product(xd, 0, nb) == batches;
  if (batches == 0 || n == 0 || o == 0 || h == 0 || w == 0) return ffi::Error::Success();

  try {
    // With shared weights all images form one batch; otherwise one batch per kernel.
    const int64_t images = shared_weights ? batches * n : n;
    const int64_t groups = shared_weights ? 1 : batches;
    const size_t image_in = size_t(h) * w * c * es, image_out = size_t(yh) * yw * yc * es;
    const size_t conv_row = size_t(ow) * o * es, out_row = size_t(yw) * yc * es;
    const size_t padded_row = size_t(wp) * c * es;
    const size_t k_bytes = size_t(kh) * kw * c * o * es;

    // Bands of output rows: each sized to BandBytes of input, and at least two per pool thread
    // (slack against a descheduled thread). At most two heights, so at most two plans.
    const bool use_omp = UseOpenMP();
    const int64_t threads = use_omp ? 1 : std::max<int64_t>(1, xla_pool.num_threads());
    int64_t band = std::max<int64_t>(1, BandBytes() / int64_t(padded_row) - (kh - 1));
    const int64_t min_bands = (2 * threads + images - 1) / images;
    band = std::min(band, (oh + min_bands - 1) / min_bands);
    band = std::max<int64_t>(1, std::min(band, oh));
    if (use_omp) band = oh;
    int64_t bands = (oh + band - 1) / band;
    band = (oh + bands - 1) / bands;  // even out: the last band is at most `bands - 1` rows shorter
    if (pool && band % 2 && band < oh) ++band;  // pooling windows must not straddle two bands
    bands = (oh + band - 1) / band;
    const int64_t last = oh - (bands - 1) * band;

    // The OpenMP team size is per calling thread (its ICV): 1 here, so oneDNN never wakes it.
    if (use_omp) {
      omp_set_num_threads(kDefaultOmpThreads);
    } else {
      omp_set_num_threads(1);
    }
    const int team = use_omp ? kDefaultOmpThreads : 0;
    std::shared_ptr<Plan> full, tail;
    if (use_omp) {
      full = tail = GetPlan(images, hp, wp, c, kh, kw, o, relu, team, type);
    } else {
      full = GetPlan(1, band + kh - 1, wp, c, kh, kw, o, relu, team, type);
      tail = last == band ? full : GetPlan(1, last + kh - 1, wp, c, kh, kw, o, relu, team, type);
    }
    auto& engine = Engine();
    auto& stream = Stream();
    auto* x_ptr = static_cast<const uint8_t*>(x.untyped_data());
    auto* y_ptr = static_cast<uint8_t*>(y->untyped_data());
    auto* kernel_ptr = static_cast<const uint8_t*>(kernel.untyped_data());
    auto* bias_ptr = static_cast<const uint8_t*>(bias.untyped_data());

    for (int64_t g = 0; g < groups; ++g) {
      // Broadcasting over the leading dimensions: flat batch index -> input / kernel / bias element.
      int64_t x_index = 0, k_index = 0, b_index = 0, rest = g;
      if (!shared_weights) {
        int64_t x_stride = 1, k_stride = 1, b_stride = 1;
        for (size_t i = nb; i-- > 0;) {
          const int64_t coord = rest % yd[i];
          rest /= yd[i];
          if (xd[i] != 1) x_index += coord * x_stride;
          if (kd[i] != 1) k_index += coord * k_stride;
          if (bd[i] != 1) b_index += coord * b_stride;
          x_stride *= xd[i];
          k_stride *= kd[i];
          b_stride *= bd[i];
        }
      }
      void* k_ptr = const_cast<uint8_t*>(kernel_ptr + k_index * k_bytes);
      void* b_ptr = const_cast<uint8_t*>(bias_ptr + b_index * size_t(o) * 4);
      // The kernel in each plan's blocked layout (the two plans almost always share one).
      const size_t full_size = (full->wei_md.get_size() + 63) / 64 * 64;
      uint8_t* blocked = static_cast<uint8_t*>(Grow(0, full_size + tail->wei_md.get_size()));
      auto blocked_kernel = [&](const Plan& plan, uint8_t* where) {
        dnnl::memory user(plan.wei_user_md, engine, k_ptr);
        if (!plan.reorder_weights) return user;
        dnnl::memory wei(plan.wei_md, engine, where);
        plan.wei_reorder.execute(stream, user, wei);
        return wei;
      };
      dnnl::memory wei_full = blocked_kernel(*full, blocked);
      dnnl::memory wei_tail = tail->wei_md == full->wei_md ? wei_full
                                                           : blocked_kernel(*tail, blocked + full_size);
      const uint8_t* x_group = x_ptr + x_index * size_t(n) * image_in;
      uint8_t* y_group = y_ptr + g * size_t(n) * image_out;

      // Convolution output rows [r0, r0 + rows) of `images` images whose y starts at `y_image`:
      // straight into y, or through a per-thread buffer that is pooled / interleaved into y.
      auto run = [&, b_ptr](const Plan& plan, const dnnl::memory& wei, const uint8_t* src_ptr,
                            int64_t images, int64_t r0, int64_t rows, uint8_t* y_image) {
        auto& engine = Engine();
        const bool fused = pool || upsample;
        uint8_t* conv_out = fused ? static_cast<uint8_t*>(Grow(3, images * rows * conv_row))
                                  : y_image + r0 * conv_row;
        dnnl::memory src(plan.src_md, engine, const_cast<uint8_t*>(src_ptr));
        dnnl::memory dst(plan.dst_md, engine, conv_out);
        dnnl::memory bias_mem(plan.bias_md, engine, b_ptr);
        dnnl::memory scratch(plan.scratch_md, engine, Grow(1, plan.scratch_md.get_size()));
        plan.conv.execute(Stream(), {{DNNL_ARG_SRC, src},
                                     {DNNL_ARG_WEIGHTS, wei},
                                     {DNNL_ARG_BIAS, bias_mem},
                                     {DNNL_ARG_DST, dst},
                                     {DNNL_ARG_SCRATCHPAD, scratch}});
        for (int64_t i = 0; fused && i < images; ++i) {
          const uint8_t* z = conv_out + i * rows * conv_row;
          uint8_t* yi = y_image + i * image_out;
          if (pool) {  // `r0` is even (see the bands)
            PoolRows(z, rows, ow, o, yi + (r0 / 2) * out_row, es);
          } else {
            InterleavePhases(z, r0, rows, h, w, yc, yi, es);
          }
        }
      };
      if (use_omp) {  // diagnostic path: pad everything, one oneDNN call on its OpenMP team
        const uint8_t* src = x_group;
        if (p) {
          auto* padded = static_cast<uint8_t*>(Grow(2, size_t(images) * hp * padded_row));
          for (int64_t i = 0; i < images; ++i) {
            PadRows(x_group + i * image_in, padded + i * hp * padded_row, 0, hp, h, w, c, pad, es);
          }
          src = padded;
        }
        run(*full, wei_full, src, images, 0, oh, y_group);
        continue;
      }
      // NHWC: a band of output rows reads a contiguous band of input rows (plus kh - 1), which a
      // padded convolution first copies, with its border, into a per-thread buffer.
      ParallelFor(xla_pool, images * bands, threads, [&](int64_t u, int) {
        const int64_t image = u / bands, b = u % bands;
        const bool is_tail = b == bands - 1;
        const int64_t rows = (is_tail ? last : band) + kh - 1;
        const uint8_t* image_ptr = x_group + image * image_in;
        const uint8_t* src = image_ptr + size_t(b) * band * padded_row;
        if (p) {
          auto* buffer = static_cast<uint8_t*>(Grow(2, rows * padded_row));
          PadRows(image_ptr, buffer, b * band, rows, h, w, c, pad, es);
          src = buffer;
        }
        run(is_tail ? *tail : *full, is_tail ? wei_tail : wei_full, src, 1, b * band,
            rows - (kh - 1), y_group + image * image_out);
      });
    }
    Stream().wait();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("adain_onednn_conv: oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

// ------------------------------------------------------------------------------------------------
// Backward pass of a stride-1 'valid' convolution y = conv(x, kernel) + bias: dx from (dy, kernel)
// and (dkernel, dbias) from (x, dy), bfloat16 or float32 operands, float32 accumulation and results.
// ------------------------------------------------------------------------------------------------

// Weight layout conversions; `accumulate` adds into the destination (a sum post-op). They need no
// scratchpad in oneDNN 3.x; refuse one we would not provide.
dnnl::reorder Reorder(const dnnl::memory::desc& from, const dnnl::memory::desc& to, bool accumulate) {
  auto attr = UserScratchpad();
  if (accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.f);
    attr.set_post_ops(ops);
  }
  auto rpd = dnnl::reorder::primitive_desc(Engine(), from, Engine(), to, attr);
  if (rpd.scratchpad_desc().get_size() != 0) {
    throw std::runtime_error("weight reorder asks for a scratchpad");
  }
  return dnnl::reorder(rpd);
}

// oneDNN builds a backward primitive against the forward training primitive it would pair with
// (its choice of kernels and weight layout follows the hint's).
dnnl::convolution_forward::primitive_desc Hint(const dnnl::memory::desc& src,
                                               const dnnl::memory::desc& dst, int64_t c, int64_t kh,
                                               int64_t kw, int64_t o, int64_t top, int64_t bottom) {
  auto wei_any = dnnl::memory::desc({o, c, kh, kw}, src.get_data_type(), dnnl::memory::format_tag::any);
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src, wei_any,
      dst, /*strides=*/{1, 1}, /*padding_l=*/{top, 0}, /*padding_r=*/{bottom, 0}, UserScratchpad());
}

// A band of `rows` rows of dx (of one image, or `n`) with `top` / `bottom` rows of implicit zero
// padding: the dy rows a band depends on, minus those outside the image (see BackwardDataImpl).
using DataKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t, int, int>;

struct DataPlan {
  dnnl::convolution_backward_data conv;
  dnnl::memory::desc diff_dst_md, wei_user_md, wei_md, diff_src_md, scratch_md;
  bool reorder_weights = false;
  dnnl::reorder wei_reorder;
};

std::map<DataKey, std::shared_ptr<DataPlan>> data_plans;

std::shared_ptr<DataPlan> GetDataPlan(int64_t n, int64_t rows, int64_t w, int64_t c, int64_t kh,
                                      int64_t kw, int64_t o, int64_t top, int64_t bottom,
                                      int threads, dt type) {
  DataKey key{n, rows, w, c, kh, kw, o, top, bottom, threads, int(type)};
  std::lock_guard<std::mutex> lock(plans_mutex);
  auto it = data_plans.find(key);
  if (it != data_plans.end()) return it->second;

  using tag = dnnl::memory::format_tag;
  auto plan = std::make_shared<DataPlan>();
  const int64_t dy_rows = rows + top + bottom - kh + 1, ow = w - kw + 1;
  plan->diff_src_md = dnnl::memory::desc({n, c, rows, w}, dt::f32, tag::nhwc);
  plan->diff_dst_md = dnnl::memory::desc({n, o, dy_rows, ow}, type, tag::nhwc);
  plan->wei_user_md = dnnl::memory::desc({o, c, kh, kw}, type, tag::hwio);
  auto wei_any = dnnl::memory::desc({o, c, kh, kw}, type, tag::any);
  auto hint = Hint(dnnl::memory::desc({n, c, rows, w}, type, tag::nhwc), plan->diff_dst_md, c,
                   kh, kw, o, top, bottom);
  auto pd = dnnl::convolution_backward_data::primitive_desc(
      Engine(), dnnl::algorithm::convolution_direct, plan->diff_src_md, wei_any, plan->diff_dst_md,
      /*strides=*/{1, 1}, /*padding_l=*/{top, 0}, /*padding_r=*/{bottom, 0}, hint, UserScratchpad());
  plan->conv = dnnl::convolution_backward_data(pd);
  plan->wei_md = pd.weights_desc();
  plan->scratch_md = pd.scratchpad_desc();
  plan->reorder_weights = plan->wei_md != plan->wei_user_md;
  if (plan->reorder_weights) plan->wei_reorder = Reorder(plan->wei_user_md, plan->wei_md, false);
  data_plans.emplace(key, plan);
  return plan;
}

// `n` images (or one band of `h` input rows of one image) -> their summed weight and bias gradients.
using WeightsKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int>;

struct WeightsPlan {
  dnnl::convolution_backward_weights conv;
  dnnl::memory::desc src_md, diff_dst_md, diff_wei_md, diff_wei_user_md, diff_bias_md, scratch_md;
  dnnl::reorder store, add;  // oneDNN's weight layout -> HWIO float32: overwrite, accumulate
};

std::map<WeightsKey, std::shared_ptr<WeightsPlan>> weights_plans;

std::shared_ptr<WeightsPlan> GetWeightsPlan(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                            int64_t kw, int64_t o, int threads, dt type) {
  WeightsKey key{n, h, w, c, kh, kw, o, threads, int(type)};
  std::lock_guard<std::mutex> lock(plans_mutex);
  auto it = weights_plans.find(key);
  if (it != weights_plans.end()) return it->second;

  using tag = dnnl::memory::format_tag;
  auto plan = std::make_shared<WeightsPlan>();
  plan->src_md = dnnl::memory::desc({n, c, h, w}, type, tag::nhwc);
  plan->diff_dst_md = dnnl::memory::desc({n, o, h - kh + 1, w - kw + 1}, type, tag::nhwc);
  plan->diff_wei_user_md = dnnl::memory::desc({o, c, kh, kw}, dt::f32, tag::hwio);
  auto diff_wei_any = dnnl::memory::desc({o, c, kh, kw}, dt::f32, tag::any);
  auto diff_bias_md = dnnl::memory::desc({o}, dt::f32, tag::a);
  auto hint = Hint(plan->src_md, plan->diff_dst_md, c, kh, kw, o, 0, 0);
  auto pd = dnnl::convolution_backward_weights::primitive_desc(
      Engine(), dnnl::algorithm::convolution_direct, plan->src_md, diff_wei_any, diff_bias_md,
      plan->diff_dst_md, /*strides=*/{1, 1}, /*padding_l=*/{0, 0}, /*padding_r=*/{0, 0}, hint,
      UserScratchpad());
  plan->conv = dnnl::convolution_backward_weights(pd);
  plan->diff_wei_md = pd.diff_weights_desc();
  plan->diff_bias_md = pd.diff_bias_desc();
  plan->scratch_md = pd.scratchpad_desc();
  plan->store = Reorder(plan->diff_wei_md, plan->diff_wei_user_md, false);
  plan->add = Reorder(plan->diff_wei_md, plan->diff_wei_user_md, true);
  weights_plans.emplace(key, plan);
  return plan;
}

// Flat index `g` over the leading (vmapped) dimensions `out` -> the flat index of the operand
// element it reads, where the operand's leading dimensions `dims` are out's or 1 (broadcast).
int64_t BroadcastIndex(int64_t g, ffi::AnyBuffer::Dimensions out, ffi::AnyBuffer::Dimensions dims,
                       size_t nb) {
  int64_t index = 0, stride = 1;
  for (size_t i = nb; i-- > 0;) {
    const int64_t coord = g % out[i];
    g /= out[i];
    if (dims[i] != 1) index += coord * stride;
    stride *= dims[i];
  }
  return index;
}

int64_t Gcd(int64_t a, int64_t b) { return b == 0 ? a : Gcd(b, a % b); }

// dx = the gradient of a valid convolution with respect to its input, from dy and the kernel.
// Batching as the forward: dy's leading dimensions folded into N when the kernel is shared.
// Threading as the forward: bands of dx rows on XLA's pool, oneDNN single-threaded. Band rows
// [r0, r0 + rows) are the valid convolution's backward over dy rows [r0 - kh + 1, r0 + rows),
// i.e. a convolution padded by kh - 1 rows on each side, with the padding that falls outside dy
// (rows < 0 or >= oh) removed: top = min(kh - 1, r0), bottom = min(kh - 1, h - r0 - rows).
// With `pad` the convolution's input was x padded by one pixel (as the forward's): a band's
// gradient goes to a per-thread buffer whose border columns are added onto the columns they copy
// as it is written to dx; the two border rows are kept aside and added after all bands, as they
// land on rows other bands write.
ffi::Error BackwardDataImpl(ffi::ThreadPool xla_pool, ffi::AnyBuffer dy, ffi::AnyBuffer kernel,
                            ffi::Result<ffi::AnyBuffer> dx, int32_t pad) {
  const auto element = dy.element_type();
  if ((element != ffi::DataType::BF16 && element != ffi::DataType::F32) ||
      kernel.element_type() != element || dx->element_type() != ffi::DataType::F32) {
    return ffi::Error::InvalidArgument(
        "adain_onednn_conv_backward_data: expects dy and kernel both bfloat16 or both float32, float32 dx");
  }
  if (pad != kNone && pad != kReflect && pad != kEdge) {
    return ffi::Error::InvalidArgument(
        "adain_onednn_conv_backward_data: pad must be 0 (none), 1 (reflect) or 2 (edge)");
  }
  const dt type = element == ffi::DataType::BF16 ? dt::bf16 : dt::f32;
  const size_t es = Bytes(type);
  auto dd = dy.dimensions(), kd = kernel.dimensions(), xd = dx->dimensions();
  if (dd.size() < 4 || kd.size() != dd.size() || xd.size() != dd.size()) {
    return ffi::Error::InvalidArgument("adain_onednn_conv_backward_data: operand ranks do not match");
  }
  const size_t nb = dd.size() - 4;
  for (size_t i = 0; i < nb; ++i) {
    if ((dd[i] != 1 && dd[i] != xd[i]) || (kd[i] != 1 && kd[i] != xd[i])) {
      return ffi::Error::InvalidArgument("adain_onednn_conv_backward_data: batch dimensions do not match");
    }
  }
  const int64_t n = dd[nb], oh = dd[nb + 1], ow = dd[nb + 2], o = dd[nb + 3];
  const int64_t kh = kd[nb], kw = kd[nb + 1], c = kd[nb + 2];
  const int64_t h = oh + kh - 1, w = ow + kw - 1;  // the convolution's input, padded
  const int64_t p = pad == kNone ? 0 : 1, xh = h - 2 * p, xw = w - 2 * p;  // dx's
  if (kd[nb + 3] != o || kh < 1 || kw < 1 || c < 1 || xd[nb] != n || xd[nb + 1] != xh ||
      xd[nb + 2] != xw || xd[nb + 3] != c || xh < 0 || xw < 0 || (pad == kReflect && (xh < 2 || xw < 2))) {
    return ffi::Error::InvalidArgument(
        "adain_onednn_conv_backward_data: shapes do not form a valid convolution's gradient");
  }
  const int64_t batches = Product(xd, 0, nb);
  if (batches == 0 || n == 0 || xh == 0 || xw == 0) return ffi::Error::Success();
  if (o == 0 || oh == 0 || ow == 0) {  // no output: nothing depends on the input
    std::memset(dx->untyped_data(), 0, size_t(batches) * n * xh * xw * c * 4);
    return ffi::Error::Success();
  }
  const bool shared_weights = Product(kd, 0, nb) == 1 && Product(dd, 0, nb) == batches;

  try {
    const int64_t images = shared_weights ? batches * n : n;
    const int64_t groups = shared_weights ? 1 : batches;
    // dx_row: a row of the padded input's gradient (a band's); x_row, x_image: of dx.
    const size_t dy_row = size_t(ow) * o * es, dx_row = size_t(w) * c * 4;
    const size_t x_row = size_t(xw) * c * 4, dy_image = dy_row * oh, x_image = x_row * xh;
    // Where the border's gradient goes: the pixel each border pixel copies.
    const int64_t left_to = SourceRow(-1, xw, pad), right_to = SourceRow(xw, xw, pad);
    const int64_t top_to = SourceRow(-1, xh, pad), bottom_to = SourceRow(xh, xh, pad);
    const size_t k_bytes = size_t(kh) * kw * c * o * es;

    const bool use_omp = UseOpenMP();
    const int64_t threads = use_omp ? 1 : std::max<int64_t>(1, xla_pool.num_threads());
    int64_t band = std::max<int64_t>(1, BandBytes() / int64_t(dx_row + dy_row));
    const int64_t min_bands = (2 * threads + images - 1) / images;
    band = std::min(band, (h + min_bands - 1) / min_bands);
    band = std::max<int64_t>(1, std::min(band, h));
    if (use_omp) band = h;
    int64_t bands = (h + band - 1) / band;
    band = (h + bands - 1) / bands;
    bands = (h + band - 1) / band;
    const int64_t last = h - (bands - 1) * band;

    omp_set_num_threads(use_omp ? kDefaultOmpThreads : 1);
    const int team = use_omp ? kDefaultOmpThreads : 0;
    // Every band's plan, and the distinct weight layouts among them (one kernel reorder each).
    std::vector<std::shared_ptr<DataPlan>> band_plans(bands);
    std::vector<size_t> band_layout(bands);
    std::vector<std::shared_ptr<DataPlan>> layouts;  // the first plan of each layout
    std::vector<size_t> offsets;
    size_t blocked_bytes = 0;
    for (int64_t b = 0; b < bands; ++b) {
      const int64_t r0 = b * band, rows = b == bands - 1 ? last : band;
      band_plans[b] = GetDataPlan(use_omp ? images : 1, rows, w, c, kh, kw, o,
                                  std::min(kh - 1, r0), std::min(kh - 1, h - r0 - rows), team, type);
      size_t l = 0;
      while (l < layouts.size() && layouts[l]->wei_md != band_plans[b]->wei_md) ++l;
      if (l == layouts.size()) {
        layouts.push_back(band_plans[b]);
        offsets.push_back(blocked_bytes);
        blocked_bytes += (band_plans[b]->wei_md.get_size() + 63) / 64 * 64;
      }
      band_layout[b] = l;
    }
    auto& engine = Engine();
    auto& stream = Stream();
    auto* dy_ptr = static_cast<const uint8_t*>(dy.untyped_data());
    auto* dx_ptr = static_cast<uint8_t*>(dx->untyped_data());
    auto* kernel_ptr = static_cast<const uint8_t*>(kernel.untyped_data());

    for (int64_t g = 0; g < groups; ++g) {
      const int64_t k_index = shared_weights ? 0 : BroadcastIndex(g, xd, kd, nb);
      const int64_t dy_index = shared_weights ? 0 : BroadcastIndex(g, xd, dd, nb);
      void* k_ptr = const_cast<uint8_t*>(kernel_ptr + k_index * k_bytes);
      auto* blocked = static_cast<uint8_t*>(Grow(0, blocked_bytes));
      std::vector<dnnl::memory> weights;
      for (size_t l = 0; l < layouts.size(); ++l) {
        const DataPlan& plan = *layouts[l];
        dnnl::memory user(plan.wei_user_md, engine, k_ptr);
        if (!plan.reorder_weights) {
          weights.push_back(user);
          continue;
        }
        weights.emplace_back(plan.wei_md, engine, blocked + offsets[l]);
        plan.wei_reorder.execute(stream, user, weights.back());
      }
      const uint8_t* dy_group = dy_ptr + dy_index * size_t(n) * dy_image;
      uint8_t* dx_group = dx_ptr + g * size_t(n) * x_image;
      // The padded gradient's first and last rows of each image, columns folded (with `pad`).
      std::vector<float> border_rows(p ? size_t(images) * 2 * xw * c : 0);

      // Band `b` of dx of `count` images from `image` (the OpenMP path: every image, one band).
      auto run = [&](int64_t image, int64_t b, int64_t count) {
        const DataPlan& plan = *band_plans[b];
        const int64_t r0 = b * band, top = std::min(kh - 1, r0);
        const int64_t rows = b == bands - 1 ? last : band;
        auto& engine = Engine();
        uint8_t* out = p ? static_cast<uint8_t*>(Grow(2, size_t(count) * rows * dx_row))
                         : dx_group + image * x_image + r0 * dx_row;
        dnnl::memory diff_dst(plan.diff_dst_md, engine,
                              const_cast<uint8_t*>(dy_group + image * dy_image + (r0 - top) * dy_row));
        dnnl::memory diff_src(plan.diff_src_md, engine, out);
        dnnl::memory scratch(plan.scratch_md, engine, Grow(1, plan.scratch_md.get_size()));
        plan.conv.execute(Stream(), {{DNNL_ARG_DIFF_DST, diff_dst},
                                     {DNNL_ARG_WEIGHTS, weights[band_layout[b]]},
                                     {DNNL_ARG_DIFF_SRC, diff_src},
                                     {DNNL_ARG_SCRATCHPAD, scratch}});
        for (int64_t i = 0; p && i < count; ++i) {
          for (int64_t r = 0; r < rows; ++r) {
            const int64_t row = r0 + r;  // of the padded gradient
            const auto* from = reinterpret_cast<const float*>(out + (i * rows + r) * dx_row);
            float* to = row == 0 || row == h - 1
                            ? border_rows.data() + ((image + i) * 2 + (row == 0 ? 0 : 1)) * xw * c
                            : reinterpret_cast<float*>(dx_group + (image + i) * x_image + (row - 1) * x_row);
            std::memcpy(to, from + c, x_row);
            for (int64_t k = 0; k < c; ++k) {
              to[left_to * c + k] += from[k];
              to[right_to * c + k] += from[(w - 1) * c + k];
            }
          }
        }
      };
      if (use_omp) {  // diagnostic path: every image in one oneDNN call on its OpenMP team
        run(0, 0, images);
      } else {
        ParallelFor(xla_pool, images * bands, threads,
                    [&](int64_t u, int) { run(u / bands, u % bands, 1); });
      }
      for (int64_t i = 0; p && i < images; ++i) {
        for (int64_t side = 0; side < 2; ++side) {
          const float* from = border_rows.data() + (i * 2 + side) * xw * c;
          auto* to = reinterpret_cast<float*>(dx_group + i * x_image + (side ? bottom_to : top_to) * x_row);
          for (int64_t k = 0; k < xw * c; ++k) to[k] += from[k];
        }
      }
    }
    Stream().wait();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("adain_onednn_conv_backward_data: oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

// dkernel, dbias = the gradients of a valid convolution with respect to its kernel and bias, from
// its input x and dy. Batching: the outputs' leading dimensions are the vmapped batch, x and dy
// each broadcast over them (size 1 when unbatched); each batch element is its own reduction.
// Threading: units of whole images, or of bands of output rows when the images do not divide
// evenly among XLA's threads; a unit's gradient is a full kernel-sized sum that has to be added to
// the rest, so there are as few units as balance allows (no slack units, unlike the forward). Each
// worker accumulates its units into its own float32 HWIO buffer (worker 0: the output) by a
// reorder with a sum post-op, and the buffers are added at the end.
ffi::Error BackwardWeightsImpl(ffi::ThreadPool xla_pool, ffi::AnyBuffer x, ffi::AnyBuffer dy,
                               ffi::Result<ffi::AnyBuffer> dk, ffi::Result<ffi::AnyBuffer> db, int32_t pad) {
  const auto element = x.element_type();
  if ((element != ffi::DataType::BF16 && element != ffi::DataType::F32) ||
      dy.element_type() != element || dk->element_type() != ffi::DataType::F32 ||
      db->element_type() != ffi::DataType::F32) {
    return ffi::Error::InvalidArgument(
        "adain_onednn_conv_backward_weights: expects x and dy both bfloat16 or both float32, float32 "
        "dkernel and dbias");
  }
  if (pad != kNone && pad != kReflect && pad != kEdge) {
    return ffi::Error::InvalidArgument(
        "adain_onednn_conv_backward_weights: pad must be 0 (none), 1 (reflect) or 2 (edge)");
  }
  const dt type = element == ffi::DataType::BF16 ? dt::bf16 : dt::f32;
  const size_t es = Bytes(type);
  auto xd = x.dimensions(), dd = dy.dimensions(), kd = dk->dimensions(), bd = db->dimensions();
  if (xd.size() < 4 || dd.size() != xd.size() || kd.size() != xd.size() ||
      bd.size() != xd.size() - 3) {
    return ffi::Error::InvalidArgument("adain_onednn_conv_backward_weights: operand ranks do not match");
  }
  const size_t nb = xd.size() - 4;
  for (size_t i = 0; i < nb; ++i) {
    if (bd[i] != kd[i] || (xd[i] != 1 && xd[i] != kd[i]) || (dd[i] != 1 && dd[i] != kd[i])) {
      return ffi::Error::InvalidArgument("adain_onednn_conv_backward_weights: batch dimensions do not match");
    }
  }
  const int64_t n = xd[nb], h = xd[nb + 1], w = xd[nb + 2], c = xd[nb + 3];
  const int64_t p = pad == kNone ? 0 : 1, hp = h + 2 * p, wp = w + 2 * p;
  const int64_t oh = dd[nb + 1], ow = dd[nb + 2], o = dd[nb + 3];
  const int64_t kh = hp - oh + 1, kw = wp - ow + 1;
  if (dd[nb] != n || kh < 1 || kw < 1 || c < 1 || kd[nb] != kh || kd[nb + 1] != kw ||
      kd[nb + 2] != c || kd[nb + 3] != o || bd[nb] != o || (pad == kReflect && (h < 2 || w < 2))) {
    return ffi::Error::InvalidArgument(
        "adain_onednn_conv_backward_weights: shapes do not form a valid convolution's gradient");
  }
  const int64_t batches = Product(kd, 0, nb);
  const int64_t k_size = kh * kw * c * o;
  if (batches == 0 || o == 0) return ffi::Error::Success();
  auto* dk_ptr = static_cast<float*>(dk->untyped_data());
  auto* db_ptr = static_cast<float*>(db->untyped_data());
  if (n == 0 || oh == 0 || ow == 0) {  // an empty sum
    std::memset(dk_ptr, 0, size_t(batches) * k_size * 4);
    std::memset(db_ptr, 0, size_t(batches) * o * 4);
    return ffi::Error::Success();
  }

  try {
    // x_row: a row of the convolution's input, i.e. of x padded (when `pad`, which each unit does
    // for its own rows into a per-thread buffer, as the forward does).
    const size_t x_row = size_t(wp) * c * es, dy_row = size_t(ow) * o * es;
    const size_t x_image = size_t(h) * w * c * es, dy_image = dy_row * oh;
    const bool use_omp = UseOpenMP();
    const int64_t threads = use_omp ? 1 : std::max<int64_t>(1, xla_pool.num_threads());
    // Units: `chunk` whole images each, or (chunk 1) `bands` bands of rows of each image.
    int64_t chunk = n, bands = 1, band = oh, last = oh, units = 1;
    if (n % threads == 0) {
      chunk = n / threads;
      units = threads;
    } else {
      chunk = 1;
      bands = std::min(oh, threads / Gcd(n, threads));
      band = (oh + bands - 1) / bands;
      bands = (oh + band - 1) / band;
      last = oh - (bands - 1) * band;
      units = n * bands;
    }
    omp_set_num_threads(use_omp ? kDefaultOmpThreads : 1);
    const int team = use_omp ? kDefaultOmpThreads : 0;
    auto full = GetWeightsPlan(chunk, band + kh - 1, wp, c, kh, kw, o, team, type);
    auto tail = last == band ? full : GetWeightsPlan(chunk, last + kh - 1, wp, c, kh, kw, o, team, type);
    const int64_t workers = std::min(threads, units);
    // Workers 1, 2, ...: [k_size weights | o biases] each; written before they are read.
    std::unique_ptr<float[]> partials(new float[size_t(workers - 1) * (k_size + o)]);
    auto* x_ptr = static_cast<const uint8_t*>(x.untyped_data());
    auto* dy_ptr = static_cast<const uint8_t*>(dy.untyped_data());

    for (int64_t g = 0; g < batches; ++g) {
      const uint8_t* x_group = x_ptr + BroadcastIndex(g, kd, xd, nb) * size_t(n) * x_image;
      const uint8_t* dy_group = dy_ptr + BroadcastIndex(g, kd, dd, nb) * size_t(n) * dy_image;
      float* dk_group = dk_ptr + g * k_size;
      float* db_group = db_ptr + g * o;
      std::vector<char> started(workers, 0);
      auto unit = [&](int64_t u, int worker) {
        const int64_t image = u / bands * chunk, b = u % bands, r0 = b * band;
        const WeightsPlan& plan = b == bands - 1 ? *tail : *full;
        auto& engine = Engine();
        auto& stream = Stream();
        const uint8_t* src_ptr = x_group + image * x_image + r0 * x_row;
        if (p) {
          const int64_t rows = (b == bands - 1 ? last : band) + kh - 1;
          auto* buffer = static_cast<uint8_t*>(Grow(2, size_t(chunk) * rows * x_row));
          for (int64_t i = 0; i < chunk; ++i) {
            PadRows(x_group + (image + i) * x_image, buffer + i * rows * x_row, r0, rows, h, w, c, pad, es);
          }
          src_ptr = buffer;
        }
        dnnl::memory src(plan.src_md, engine, const_cast<uint8_t*>(src_ptr));
        dnnl::memory diff_dst(plan.diff_dst_md, engine,
                              const_cast<uint8_t*>(dy_group + image * dy_image + r0 * dy_row));
        dnnl::memory diff_wei(plan.diff_wei_md, engine, Grow(4, plan.diff_wei_md.get_size()));
        auto* bias = static_cast<float*>(Grow(5, size_t(o) * 4));
        dnnl::memory diff_bias(plan.diff_bias_md, engine, bias);
        dnnl::memory scratch(plan.scratch_md, engine, Grow(1, plan.scratch_md.get_size()));
        plan.conv.execute(stream, {{DNNL_ARG_SRC, src},
                                   {DNNL_ARG_DIFF_DST, diff_dst},
                                   {DNNL_ARG_DIFF_WEIGHTS, diff_wei},
                                   {DNNL_ARG_DIFF_BIAS, diff_bias},
                                   {DNNL_ARG_SCRATCHPAD, scratch}});
        float* k_sum = worker == 0 ? dk_group : partials.get() + (worker - 1) * (k_size + o);
        float* b_sum = worker == 0 ? db_group : k_sum + k_size;
        dnnl::memory user(plan.diff_wei_user_md, engine, k_sum);
        if (!started[worker]) {
          plan.store.execute(stream, diff_wei, user);
          std::memcpy(b_sum, bias, size_t(o) * 4);
          started[worker] = 1;
        } else {
          plan.add.execute(stream, diff_wei, user);
          for (int64_t k = 0; k < o; ++k) b_sum[k] += bias[k];
        }
      };
      int used = 1;
      if (use_omp) {  // diagnostic path: every image in one oneDNN call on its OpenMP team
        unit(0, 0);
      } else {
        used = ParallelFor(xla_pool, units, threads, unit);
      }
      if (used > 1) {
        constexpr int64_t kSlice = 1 << 16;
        ParallelFor(xla_pool, (k_size + kSlice - 1) / kSlice, threads, [&](int64_t i, int) {
          const int64_t end = std::min(k_size, (i + 1) * kSlice);
          for (int64_t p = 1; p < used; ++p) {
            const float* part = partials.get() + (p - 1) * (k_size + o);
            for (int64_t j = i * kSlice; j < end; ++j) dk_group[j] += part[j];
          }
        });
        for (int64_t p = 1; p < used; ++p) {
          const float* part = partials.get() + (p - 1) * (k_size + o) + k_size;
          for (int64_t k = 0; k < o; ++k) db_group[k] += part[k];
        }
      }
    }
    Stream().wait();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("adain_onednn_conv_backward_weights: oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

// ------------------------------------------------------------------------------------------------
// Winograd F(2x2, 3x3), float32: the forward pass of ConvImpl's convolution with reflection padding
// (bias, ReLU, optional 2x2 pooling), and BackwardDataImpl's input gradient of it, in 16 instead of 36
// multiplications per 2x2 output tile and input / output channel pair (Lavin & Gray, "Fast Algorithms
// for Convolutional Neural Networks"). The caller transforms the kernel (U = G g G^T, 4 x 4 x C x O;
// adain_jax.onednn.conv.winograd_kernel); here each band of tile rows is padded, transformed
// (V = B^T d B), multiplied as 16 matrices (T tiles x C) x (C x O) by one oneDNN matmul, and transformed
// back (Y = A^T M A) with bias, ReLU and pooling (a 2x2 output tile is exactly one pooling window).
// Even H and W only.
// ------------------------------------------------------------------------------------------------

using MatmulKey = std::tuple<int64_t, int64_t, int64_t>;

struct MatmulPlan {
  dnnl::matmul mm;
  dnnl::memory::desc src_md, wei_user_md, wei_md, dst_md, scratch_md;
  bool reorder_weights = false;
  dnnl::reorder wei_reorder;
};

std::map<MatmulKey, std::shared_ptr<MatmulPlan>> matmul_plans;

// 16 products (t x c) x (c x o), float32, one thread (the caller's OpenMP team is 1).
std::shared_ptr<MatmulPlan> GetMatmulPlan(int64_t t, int64_t c, int64_t o) {
  MatmulKey key{t, c, o};
  std::lock_guard<std::mutex> lock(plans_mutex);
  auto it = matmul_plans.find(key);
  if (it != matmul_plans.end()) return it->second;
  using tag = dnnl::memory::format_tag;
  auto plan = std::make_shared<MatmulPlan>();
  plan->src_md = dnnl::memory::desc({16, t, c}, dt::f32, tag::abc);
  plan->wei_user_md = dnnl::memory::desc({16, c, o}, dt::f32, tag::abc);
  auto wei_any = dnnl::memory::desc({16, c, o}, dt::f32, tag::any);
  plan->dst_md = dnnl::memory::desc({16, t, o}, dt::f32, tag::abc);
  auto pd = dnnl::matmul::primitive_desc(Engine(), plan->src_md, wei_any, plan->dst_md, UserScratchpad());
  plan->mm = dnnl::matmul(pd);
  plan->wei_md = pd.weights_desc();
  plan->scratch_md = pd.scratchpad_desc();
  plan->reorder_weights = plan->wei_md != plan->wei_user_md;
  if (plan->reorder_weights) plan->wei_reorder = Reorder(plan->wei_user_md, plan->wei_md, false);
  matmul_plans.emplace(key, plan);
  return plan;
}

// V = B^T d B for the tiles of `tile_rows` tile rows of `tiles_w` tiles, from padded rows (width
// 2 * tiles_w + 2) starting at the band's first: v[(4a + b) * t * c + tile * c + k], t the number of
// tiles of the whole matmul (`v` may start part-way into it). Each of the 16 is a sum of 4 of the
// tile's pixels with signs; the loops over channels are what vectorises.
__attribute__((target_clones("avx512f", "avx2", "default")))
void InputTransform(const float* padded, int64_t tile_rows, int64_t tiles_w, int64_t c, int64_t t, float* v) {
  const int64_t row = (2 * tiles_w + 2) * c;
  for (int64_t i = 0; i < tile_rows; ++i) {
    for (int64_t j = 0; j < tiles_w; ++j) {
      const float* d = padded + 2 * i * row + 2 * j * c;
      float* out = v + (i * tiles_w + j) * c;
      for (int a = 0; a < 4; ++a) {
        // B^T's row a: d_r0 - d_r1 style pairs (rows 0-2, 1+2, 2-1, 1-3)
        static constexpr int kFirst[4] = {0, 1, 2, 1}, kSecond[4] = {2, 2, 1, 3};
        static constexpr float kSign[4] = {-1.f, 1.f, -1.f, -1.f};
        const float* p = d + kFirst[a] * row;
        const float* q = d + kSecond[a] * row;
        const float sign = kSign[a];
        float* o0 = out + (4 * a + 0) * t * c;
        float* o1 = out + (4 * a + 1) * t * c;
        float* o2 = out + (4 * a + 2) * t * c;
        float* o3 = out + (4 * a + 3) * t * c;
#pragma omp simd
        for (int64_t k = 0; k < c; ++k) {
          const float q0 = p[0 * c + k] + sign * q[0 * c + k], q1 = p[1 * c + k] + sign * q[1 * c + k];
          const float q2 = p[2 * c + k] + sign * q[2 * c + k], q3 = p[3 * c + k] + sign * q[3 * c + k];
          o0[k] = q0 - q2;
          o1[k] = q1 + q2;
          o2[k] = q2 - q1;
          o3[k] = q1 - q3;
        }
      }
    }
  }
}

// Y = A^T M A + bias, ReLU, and with `pool` the max of the tile: rows of `y_row` floats. `t`: the
// matmul's tiles, as in InputTransform.
__attribute__((target_clones("avx512f", "avx2", "default")))
void OutputTransform(const float* m, int64_t tile_rows, int64_t tiles_w, int64_t o, int64_t t, const float* bias,
                     bool relu, bool pool, float* y, int64_t y_row) {
  const int64_t stride = t * o;
  const float floor = relu ? 0.f : -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < tile_rows; ++i) {
    for (int64_t j = 0; j < tiles_w; ++j) {
      const float* in = m + (i * tiles_w + j) * o;
      float* y00 = y + (pool ? i * y_row + j * o : (2 * i) * y_row + (2 * j) * o);
      float* y10 = y00 + y_row;
#pragma omp simd
      for (int64_t k = 0; k < o; ++k) {
        float r[2][4];
        for (int s = 0; s < 4; ++s) {  // A^T along the rows
          const float m0 = in[(0 + s) * stride + k], m1 = in[(4 + s) * stride + k];
          const float m2 = in[(8 + s) * stride + k], m3 = in[(12 + s) * stride + k];
          r[0][s] = m0 + m1 + m2;
          r[1][s] = m1 - m2 - m3;
        }
        // then A along the columns, bias, ReLU (max with 0; -inf when there is none)
        const float a = std::max(r[0][0] + r[0][1] + r[0][2] + bias[k], floor);
        const float b = std::max(r[0][1] - r[0][2] - r[0][3] + bias[k], floor);
        const float e = std::max(r[1][0] + r[1][1] + r[1][2] + bias[k], floor);
        const float f = std::max(r[1][1] - r[1][2] - r[1][3] + bias[k], floor);
        if (pool) {
          y00[k] = std::max(std::max(a, b), std::max(e, f));
        } else {
          y00[k] = a;
          y00[o + k] = b;
          y10[k] = e;
          y10[o + k] = f;
        }
      }
    }
  }
}

// Tiles per unit of work: about this many. At 256 channels a unit's V and M (16 x 64 x 256 floats each)
// stay in a core's cache between the transforms and the matmul, and U (16 x 256 x 256) is read once per
// 64 tiles; 32, 128 and 256 measured no faster on a Zen 5. ADAIN_JAX_WINOGRAD_TILES overrides it.
int64_t WinogradTiles() {
  const char* v = std::getenv("ADAIN_JAX_WINOGRAD_TILES");
  return v != nullptr ? std::max(1L, std::atol(v)) : 64L;
}

// The banded Winograd loop both handlers share: for `images` images of tiles_h x tiles_w output tiles,
// `pad(image, padded_row0, rows, buffer)` writes the padded input rows a band reads ((2 * tiles_w + 2)
// x c floats each), and `emit(image, tile_row0, tile_rows, m, t)` receives a band's 16 products (t
// tiles a matrix). A unit of work is a band of tile rows of one image, or, when an image has fewer
// tiles than a unit should, several whole images in one matmul (U, 16 x c x o, is then read once for
// them all instead of once an image).
void RunWinograd(ffi::ThreadPool& xla_pool, int64_t images, int64_t tiles_h, int64_t tiles_w, int64_t c,
                 int64_t o, void* u_user,
                 const std::function<void(int64_t, int64_t, int64_t, float*)>& pad,
                 const std::function<void(int64_t, int64_t, int64_t, const float*, int64_t)>& emit) {
  const int64_t threads = std::max<int64_t>(1, xla_pool.num_threads());
  const int64_t target = WinogradTiles(), per_image = tiles_h * tiles_w;
  // Whole images per unit (at least 1; no more than leaves two units a thread), or bands of one.
  int64_t group = std::max<int64_t>(1, std::min(target / per_image, images / (2 * threads)));
  int64_t band = tiles_h;
  if (group == 1) {
    band = std::max<int64_t>(1, target / tiles_w);  // tile rows per band
    const int64_t min_bands = (2 * threads + images - 1) / images;
    band = std::max<int64_t>(1, std::min(band, (tiles_h + min_bands - 1) / min_bands));
  }
  int64_t bands = (tiles_h + band - 1) / band;
  band = (tiles_h + bands - 1) / bands;
  bands = (tiles_h + band - 1) / band;
  const int64_t last = tiles_h - (bands - 1) * band;
  const int64_t groups = (images + group - 1) / group, last_group = images - (groups - 1) * group;
  omp_set_num_threads(1);
  // At most three matmul shapes: full bands (or groups), the last band, the last group.
  auto plan_for = [&](int64_t t) { return GetMatmulPlan(t, c, o); };
  auto full = plan_for(group * band * tiles_w);
  auto tail = last == band ? full : plan_for(last * tiles_w);
  auto rest = last_group == group ? full : plan_for(last_group * per_image);
  auto& engine = Engine();
  auto& stream = Stream();
  // U in each plan's blocked layout, once per call (shared where the layouts agree).
  const std::shared_ptr<MatmulPlan> plans[3] = {full, tail, rest};
  size_t offsets[3], total = 0;
  for (int i = 0; i < 3; ++i) {
    offsets[i] = total;
    total += (plans[i]->wei_md.get_size() + 63) / 64 * 64;
  }
  auto* blocked = static_cast<uint8_t*>(Grow(0, total));
  dnnl::memory weights[3];
  for (int i = 0; i < 3; ++i) {
    const MatmulPlan& plan = *plans[i];
    int same = -1;
    for (int j = 0; j < i && same < 0; ++j) same = plans[j]->wei_md == plan.wei_md ? j : -1;
    if (same >= 0) {
      weights[i] = weights[same];
    } else if (!plan.reorder_weights) {
      weights[i] = dnnl::memory(plan.wei_user_md, engine, u_user);
    } else {
      weights[i] = dnnl::memory(plan.wei_md, engine, blocked + offsets[i]);
      dnnl::memory user(plan.wei_user_md, engine, u_user);
      plan.wei_reorder.execute(stream, user, weights[i]);
    }
  }
  ParallelFor(xla_pool, groups * bands, threads, [&](int64_t unit, int) {
    const int64_t first = unit / bands * group, b = unit % bands;
    const int64_t count = std::min(group, images - first);
    const int64_t rows = b == bands - 1 ? last : band;
    const int which = count < group ? 2 : b == bands - 1 && last != band ? 1 : 0;
    const MatmulPlan& plan = *plans[which];
    const int64_t t = count * rows * tiles_w;
    auto* padded = static_cast<float*>(Grow(2, size_t(2 * rows + 2) * (2 * tiles_w + 2) * c * 4));
    auto* v = static_cast<float*>(Grow(6, 16 * size_t(t) * c * 4));
    auto* m = static_cast<float*>(Grow(7, 16 * size_t(t) * o * 4));
    for (int64_t i = 0; i < count; ++i) {
      pad(first + i, 2 * b * band, 2 * rows + 2, padded);
      InputTransform(padded, rows, tiles_w, c, t, v + i * rows * tiles_w * c);
    }
    auto& engine = Engine();
    dnnl::memory src(plan.src_md, engine, v), dst(plan.dst_md, engine, m);
    dnnl::memory scratch(plan.scratch_md, engine, Grow(1, plan.scratch_md.get_size()));
    plan.mm.execute(Stream(), {{DNNL_ARG_SRC, src},
                               {DNNL_ARG_WEIGHTS, weights[which]},
                               {DNNL_ARG_DST, dst},
                               {DNNL_ARG_SCRATCHPAD, scratch}});
    for (int64_t i = 0; i < count; ++i) emit(first + i, b * band, rows, m + i * rows * tiles_w * o, t);
  });
  Stream().wait();
}

ffi::Error WinogradImpl(ffi::ThreadPool xla_pool, ffi::AnyBuffer x, ffi::AnyBuffer u,
                        ffi::AnyBuffer bias, ffi::Result<ffi::AnyBuffer> y, bool relu, bool pool) {
  if (x.element_type() != ffi::DataType::F32 || u.element_type() != ffi::DataType::F32 ||
      bias.element_type() != ffi::DataType::F32 || y->element_type() != ffi::DataType::F32) {
    return ffi::Error::InvalidArgument("adain_onednn_winograd: expects float32 operands");
  }
  auto xd = x.dimensions(), ud = u.dimensions(), bd = bias.dimensions(), yd = y->dimensions();
  if (xd.size() < 4 || ud.size() != xd.size() || bd.size() != xd.size() - 3 || yd.size() != xd.size()) {
    return ffi::Error::InvalidArgument("adain_onednn_winograd: operand ranks do not match");
  }
  const size_t nb = xd.size() - 4;
  for (size_t i = 0; i < nb; ++i) {
    if ((xd[i] != 1 && xd[i] != yd[i]) || (ud[i] != 1 && ud[i] != yd[i]) || (bd[i] != 1 && bd[i] != yd[i])) {
      return ffi::Error::InvalidArgument("adain_onednn_winograd: batch dimensions do not match");
    }
  }
  const int64_t n = xd[nb], h = xd[nb + 1], w = xd[nb + 2], c = xd[nb + 3], o = ud[nb + 3];
  const int64_t yh = pool ? h / 2 : h, yw = pool ? w / 2 : w;
  if (ud[nb] != 4 || ud[nb + 1] != 4 || ud[nb + 2] != c || bd[nb] != o || h % 2 || w % 2 || h < 2 ||
      w < 2 || yd[nb] != n || yd[nb + 1] != yh || yd[nb + 2] != yw || yd[nb + 3] != o) {
    return ffi::Error::InvalidArgument(
        "adain_onednn_winograd: needs an even-sized input, a 4x4xCxO transformed kernel and a matching output");
  }
  if (c == 0 || o == 0) {  // conv2d's winograd_applies sends these to the direct call
    return ffi::Error::InvalidArgument("adain_onednn_winograd: needs at least one input and output channel");
  }
  const int64_t batches = Product(yd, 0, nb);
  if (batches == 0 || n == 0) return ffi::Error::Success();
  const bool shared_weights = Product(ud, 0, nb) == 1 && Product(bd, 0, nb) == 1 &&
                              Product(xd, 0, nb) == batches;
  try {
    const int64_t images = shared_weights ? batches * n : n;
    const size_t image_in = size_t(h) * w * c, image_out = size_t(yh) * yw * o, u_size = 16 * size_t(c) * o;
    const auto* x_ptr = static_cast<const float*>(x.untyped_data());
    const auto* u_ptr = static_cast<const float*>(u.untyped_data());
    const auto* b_ptr = static_cast<const float*>(bias.untyped_data());
    auto* y_ptr = static_cast<float*>(y->untyped_data());
    for (int64_t g = 0; g < (shared_weights ? 1 : batches); ++g) {
      const int64_t x_index = shared_weights ? 0 : BroadcastIndex(g, yd, xd, nb);
      const float* x_group = x_ptr + x_index * size_t(n) * image_in;
      const float* bias_group = b_ptr + (shared_weights ? 0 : BroadcastIndex(g, yd, bd, nb)) * size_t(o);
      float* y_group = y_ptr + g * size_t(n) * image_out;
      void* u_group = const_cast<float*>(u_ptr + (shared_weights ? 0 : BroadcastIndex(g, yd, ud, nb)) * u_size);
      RunWinograd(
          xla_pool, images, h / 2, w / 2, c, o, u_group,
          [&](int64_t image, int64_t r0, int64_t rows, float* out) {
            PadRows(reinterpret_cast<const uint8_t*>(x_group + image * image_in), reinterpret_cast<uint8_t*>(out),
                    r0, rows, h, w, c, kReflect, 4);
          },
          [&](int64_t image, int64_t t0, int64_t rows, const float* m, int64_t t) {
            float* y_band = y_group + image * image_out + (pool ? t0 : 2 * t0) * size_t(yw) * o;
            OutputTransform(m, rows, w / 2, o, t, bias_group, relu, pool, y_band, yw * o);
          });
    }
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("adain_onednn_winograd: oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

// dx of a reflection-padded 3x3 convolution by Winograd: the gradient of the padded input, (H + 2) x
// (W + 2), is the 'valid' convolution of dy zero-padded by 2 with the kernel flipped and transposed
// (`u`: its G g G^T, 4 x 4 x O x C); then the border's gradient is added onto the pixels it copies
// (padded row / column 0 onto 1, H + 1 onto H - 2). H and W even. Rows 0 and H + 1 of a band go to a
// side buffer and are added after all bands are done, since the rows they add to belong to other bands.
ffi::Error WinogradBackwardDataImpl(ffi::ThreadPool xla_pool, ffi::AnyBuffer dy, ffi::AnyBuffer u,
                                    ffi::Result<ffi::AnyBuffer> dx) {
  if (dy.element_type() != ffi::DataType::F32 || u.element_type() != ffi::DataType::F32 ||
      dx->element_type() != ffi::DataType::F32) {
    return ffi::Error::InvalidArgument("adain_onednn_winograd_backward_data: expects float32 operands");
  }
  auto dd = dy.dimensions(), ud = u.dimensions(), xd = dx->dimensions();
  if (dd.size() < 4 || ud.size() != dd.size() || xd.size() != dd.size()) {
    return ffi::Error::InvalidArgument("adain_onednn_winograd_backward_data: operand ranks do not match");
  }
  const size_t nb = dd.size() - 4;
  for (size_t i = 0; i < nb; ++i) {
    if ((dd[i] != 1 && dd[i] != xd[i]) || (ud[i] != 1 && ud[i] != xd[i])) {
      return ffi::Error::InvalidArgument("adain_onednn_winograd_backward_data: batch dimensions do not match");
    }
  }
  const int64_t n = dd[nb], h = dd[nb + 1], w = dd[nb + 2], o = dd[nb + 3], c = ud[nb + 3];
  if (ud[nb] != 4 || ud[nb + 1] != 4 || ud[nb + 2] != o || h % 2 || w % 2 || h < 2 || w < 2 ||
      xd[nb] != n || xd[nb + 1] != h || xd[nb + 2] != w || xd[nb + 3] != c) {
    return ffi::Error::InvalidArgument(
        "adain_onednn_winograd_backward_data: needs an even-sized dy, a 4x4xOxC transformed kernel and a "
        "matching dx");
  }
  if (c == 0 || o == 0) {  // backward_data's winograd_applies sends these to the direct call
    return ffi::Error::InvalidArgument(
        "adain_onednn_winograd_backward_data: needs at least one input and output channel");
  }
  const int64_t batches = Product(xd, 0, nb);
  if (batches == 0 || n == 0) return ffi::Error::Success();
  const bool shared_weights = Product(ud, 0, nb) == 1 && Product(dd, 0, nb) == batches;
  try {
    const int64_t images = shared_weights ? batches * n : n;
    const int64_t pw = w + 2;  // the padded input's width: its gradient's rows
    const size_t image_dy = size_t(h) * w * o, image_dx = size_t(h) * w * c, u_size = 16 * size_t(o) * c;
    const auto* dy_ptr = static_cast<const float*>(dy.untyped_data());
    const auto* u_ptr = static_cast<const float*>(u.untyped_data());
    auto* dx_ptr = static_cast<float*>(dx->untyped_data());
    const std::vector<float> zero_bias(c, 0.f);
    std::vector<float> side(size_t(images) * 2 * w * c);  // folded rows 0 and H + 1 of each image
    for (int64_t g = 0; g < (shared_weights ? 1 : batches); ++g) {
      const float* dy_group = dy_ptr + (shared_weights ? 0 : BroadcastIndex(g, xd, dd, nb)) * size_t(n) * image_dy;
      float* dx_group = dx_ptr + g * size_t(n) * image_dx;
      void* u_group = const_cast<float*>(u_ptr + (shared_weights ? 0 : BroadcastIndex(g, xd, ud, nb)) * u_size);
      RunWinograd(
          xla_pool, images, (h + 2) / 2, (w + 2) / 2, o, c, u_group,
          [&](int64_t image, int64_t r0, int64_t rows, float* out) {  // dy with 2 rows / columns of zeros
            const float* src = dy_group + image * image_dy;
            const size_t row = size_t(w + 4) * o;
            for (int64_t i = 0; i < rows; ++i) {
              float* dst = out + i * row;
              const int64_t r = r0 + i - 2;
              if (r < 0 || r >= h) {
                std::memset(dst, 0, row * 4);
                continue;
              }
              std::memset(dst, 0, 2 * o * 4);
              std::memcpy(dst + 2 * o, src + r * w * o, size_t(w) * o * 4);
              std::memset(dst + (w + 2) * o, 0, 2 * o * 4);
            }
          },
          [&](int64_t image, int64_t t0, int64_t rows, const float* m, int64_t t) {
            auto* band = static_cast<float*>(Grow(3, size_t(2 * rows) * pw * c * 4));
            OutputTransform(m, rows, pw / 2, c, t, zero_bias.data(), false, false, band, pw * c);
            float* dx_image = dx_group + image * image_dx;
            for (int64_t i = 0; i < 2 * rows; ++i) {
              const int64_t r = 2 * t0 + i;  // padded row
              const float* in = band + i * pw * c;
              float* out = r == 0 ? side.data() + image * 2 * w * c
                           : r == h + 1 ? side.data() + (image * 2 + 1) * w * c
                                        : dx_image + (r - 1) * w * c;
              std::memcpy(out, in + c, size_t(w) * c * 4);  // padded columns 1..W
              for (int64_t k = 0; k < c; ++k) {  // columns 0 and W + 1 onto 1 and W - 2
                out[c + k] += in[k];
                out[(w - 2) * c + k] += in[(w + 1) * c + k];
              }
            }
          });
      for (int64_t image = 0; image < images; ++image) {  // rows 0 and H + 1 onto 1 and H - 2
        float* dx_image = dx_group + image * image_dx;
        const float* top = side.data() + image * 2 * w * c;
        const float* bottom = top + w * c;
        for (int64_t k = 0; k < w * c; ++k) dx_image[w * c + k] += top[k];
        for (int64_t k = 0; k < w * c; ++k) dx_image[(h - 2) * w * c + k] += bottom[k];
      }
    }
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("adain_onednn_winograd_backward_data: oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace

// Built with -fvisibility=hidden (oneDNN and XLA inline code stays private); these are the API.
#define ADAIN_EXPORT extern "C" __attribute__((visibility("default")))
ADAIN_EXPORT XLA_FFI_Error* AdainOnednnConv(XLA_FFI_CallFrame* call_frame);
ADAIN_EXPORT XLA_FFI_Error* AdainOnednnConvBackwardData(XLA_FFI_CallFrame* call_frame);
ADAIN_EXPORT XLA_FFI_Error* AdainOnednnConvBackwardWeights(XLA_FFI_CallFrame* call_frame);
ADAIN_EXPORT XLA_FFI_Error* AdainOnednnWinograd(XLA_FFI_CallFrame* call_frame);
ADAIN_EXPORT XLA_FFI_Error* AdainOnednnWinogradBackwardData(XLA_FFI_CallFrame* call_frame);
ADAIN_EXPORT int adain_onednn_abi();
ADAIN_EXPORT int adain_onednn_cpu_isa_bf16();
ADAIN_EXPORT const char* adain_onednn_cpu_isa_name();

XLA_FFI_DEFINE_HANDLER_SYMBOL(AdainOnednnConv, ConvImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()  // XLA's intra-op pool
                                  .Arg<ffi::AnyBuffer>()  // x: (..., N, H, W, C) bfloat16 / float32
                                  .Arg<ffi::AnyBuffer>()  // kernel: (..., KH, KW, C, O), x's type
                                  .Arg<ffi::AnyBuffer>()  // bias: (..., O) float32
                                  .Ret<ffi::AnyBuffer>()  // y: (..., N, H+2p-KH+1, W+2p-KW+1, O), x's type
                                  .Attr<bool>("relu")
                                  .Attr<int32_t>("pad")  // 0 none, 1 reflect, 2 edge (1 pixel)
                                  .Attr<bool>("pool")  // 2x2/2 ceil-mode max-pool of the output
                                  .Attr<bool>("upsample"));  // interleave 4 phases: 2x upsampled

XLA_FFI_DEFINE_HANDLER_SYMBOL(AdainOnednnConvBackwardData, BackwardDataImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // dy: (..., N, OH, OW, O) bfloat16 / float32
                                  .Arg<ffi::AnyBuffer>()  // kernel: (..., KH, KW, C, O), dy's type
                                  .Ret<ffi::AnyBuffer>()  // dx: (..., N, OH+KH-1-2p, OW+KW-1-2p, C) float32
                                  .Attr<int32_t>("pad"));  // x's padding, as the forward's

XLA_FFI_DEFINE_HANDLER_SYMBOL(AdainOnednnConvBackwardWeights, BackwardWeightsImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // x: (..., N, H, W, C) bfloat16 / float32
                                  .Arg<ffi::AnyBuffer>()  // dy: (..., N, OH, OW, O), x's type
                                  .Ret<ffi::AnyBuffer>()  // dkernel: (..., H+2p-OH+1, W+2p-OW+1, C, O) float32
                                  .Ret<ffi::AnyBuffer>()  // dbias: (..., O) float32
                                  .Attr<int32_t>("pad"));  // x's padding, as the forward's

XLA_FFI_DEFINE_HANDLER_SYMBOL(AdainOnednnWinograd, WinogradImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // x: (..., N, H, W, C) float32, H and W even
                                  .Arg<ffi::AnyBuffer>()  // u: (..., 4, 4, C, O) float32, G g G^T
                                  .Arg<ffi::AnyBuffer>()  // bias: (..., O) float32
                                  .Ret<ffi::AnyBuffer>()  // y: (..., N, H, W, O), or H/2, W/2 pooled
                                  .Attr<bool>("relu")
                                  .Attr<bool>("pool"));  // reflection padding always

XLA_FFI_DEFINE_HANDLER_SYMBOL(AdainOnednnWinogradBackwardData, WinogradBackwardDataImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // dy: (..., N, H, W, O) float32, H and W even
                                  .Arg<ffi::AnyBuffer>()  // u: (..., 4, 4, O, C): the flipped kernel's G g G^T
                                  .Ret<ffi::AnyBuffer>());  // dx: (..., N, H, W, C) float32, reflection padding

// The handlers' interface version: adain_jax.onednn refuses a library built from older source.
int adain_onednn_abi() { return 3; }

// Whether this CPU has the bfloat16 instructions the fast kernels need, as oneDNN sees it.
int adain_onednn_cpu_isa_bf16() {
  const auto isa = dnnl::get_effective_cpu_isa();
  return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx ||
         isa == dnnl::cpu_isa::avx512_core_fp16 || isa == dnnl::cpu_isa::avx512_core_amx_fp16;
}

// The instruction set oneDNN's kernels use here (ONEDNN_MAX_CPU_ISA lowers it), by oneDNN's name
// for it; adain_jax.onednn decides from it whether the float32 path runs.
const char* adain_onednn_cpu_isa_name() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2_vnni_2: return "avx2_vnni_2";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_fp16: return "avx512_core_fp16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_amx_fp16: return "avx512_core_amx_fp16";
    default: return "default";
  }
}
