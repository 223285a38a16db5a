// Runs src/capture/kernels/gating.cu on the CPU: one warp, its 32 lanes as threads, shuffles and
// __syncwarp as barriers. Host IEEE f32 arithmetic with fused multiply-adds only where the kernel
// writes fmaf (-ffp-contract=off) is the arithmetic the GPU does, so this checks the kernel's
// logic, its float order and its ring-buffer records against the CPU twin without a GPU
// (tests/kernel_emulation.rs).
//
// usage: emulate IN_DIR TOKENS E K SCORING GROUPS TOP_GROUPS RENORMALIZE HAS_BIAS RING_CAPACITY
//        DRAINED_SEQ INSTRUMENTED
// reads IN_DIR/logits.bin (f32 [TOKENS, E]) and, with HAS_BIAS=1, IN_DIR/bias.bin (f32 [E]);
// writes IN_DIR/experts.bin (i32), weights.bin (f32), ring.bin (u32), counters.bin (u64:
// seq_counter, overflow, expert_counts[E]).

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};
thread_local Dim3 threadIdx;
const Dim3 blockIdx{0, 0, 0};
const Dim3 blockDim{32, 1, 1};
const Dim3 gridDim{1, 1, 1};

static std::barrier<>* warp_barrier;
static unsigned long long exchange[32];

static void __syncwarp() { warp_barrier->arrive_and_wait(); }

template <typename T>
static T exchange_with(T value, unsigned source_lane) {
  static_assert(sizeof(T) <= sizeof(unsigned long long));
  unsigned long long bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  exchange[threadIdx.x] = bits;
  warp_barrier->arrive_and_wait();
  bits = exchange[source_lane];
  warp_barrier->arrive_and_wait();
  T result;
  std::memcpy(&result, &bits, sizeof(T));
  return result;
}
template <typename T>
static T __shfl_xor_sync(unsigned, T value, int offset) {
  return exchange_with(value, threadIdx.x ^ unsigned(offset));
}
template <typename T>
static T __shfl_sync(unsigned, T value, int lane) {
  return exchange_with(value, unsigned(lane));
}
static unsigned long long atomicAdd(unsigned long long* address, unsigned long long value) {
  return __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST);
}
static float __int_as_float(int bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
static unsigned __float_as_uint(float f) {
  unsigned bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__
// The kernel's `extern __shared__ float moesim_shared[]` binds to this (one warp: 4 x E floats).
float moesim_shared[4 * 1024];

#include "../../src/capture/kernels/gating.cu"

template <typename T>
static std::vector<T> read_file(const std::string& path, size_t count) {
  std::vector<T> data(count);
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f || std::fread(data.data(), sizeof(T), count, f) != count) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::exit(1);
  }
  std::fclose(f);
  return data;
}

template <typename T>
static void write_file(const std::string& path, const std::vector<T>& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(data.data(), sizeof(T), data.size(), f) != data.size()) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::exit(1);
  }
  std::fclose(f);
}

int main(int argc, char** argv) {
  if (argc != 13) {
    std::fprintf(stderr, "usage: see emulate.cpp\n");
    return 2;
  }
  const std::string dir = argv[1];
  auto arg = [&](int i) { return std::strtoull(argv[i], nullptr, 10); };
  const unsigned tokens = arg(2), E = arg(3), k = arg(4), scoring = arg(5), groups = arg(6),
                 top_groups = arg(7), renormalize = arg(8);
  const bool has_bias = arg(9) != 0;
  const unsigned long long ring_capacity = arg(10), drained_seq = arg(11);
  const bool instrumented = arg(12) != 0;
  auto logits = read_file<float>(dir + "/logits.bin", size_t(tokens) * E);
  std::vector<float> bias = has_bias ? read_file<float>(dir + "/bias.bin", E) : std::vector<float>{};
  std::vector<int> experts(size_t(tokens) * k);
  std::vector<float> weights(size_t(tokens) * k);
  std::vector<unsigned> ring(ring_capacity * (4 + 2 * k), 0xffffffffu);
  std::vector<unsigned long long> counters(2 + E, 0);  // seq, overflow, counts

  std::barrier<> barrier(32);
  warp_barrier = &barrier;
  std::vector<std::thread> lanes;
  for (unsigned lane = 0; lane < 32; ++lane) {
    lanes.emplace_back([&, lane] {
      threadIdx.x = lane;
      auto kernel = instrumented ? moesim_gating_instrumented : moesim_gating;
      kernel(logits.data(), has_bias ? bias.data() : nullptr, experts.data(), weights.data(),
             ring.data(), &counters[0], &counters[1], &counters[2], tokens, E, k, scoring, groups,
             top_groups, renormalize, 0, 0, ring_capacity, drained_seq);
    });
  }
  for (auto& lane : lanes) lane.join();
  write_file(dir + "/experts.bin", experts);
  write_file(dir + "/weights.bin", weights);
  write_file(dir + "/ring.bin", ring);
  write_file(dir + "/counters.bin", counters);
  return 0;
}
