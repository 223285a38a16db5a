// moesim's fused MoE gating kernel, instrumented and plain.
//
// Semantics: src/capture/gating.rs. Float order of operations: src/capture/reference.rs (the CPU
// twin reproduces this file bit for bit; change both together). Build with -fmad=false: every
// fused multiply-add here is written as fmaf, and nothing else may be fused.
//
// Input: router logits, fp32, row-major [tokens, E]; optional score-correction bias, fp32 [E].
// Output: per token, top_k expert ids (int32) and gate weights (fp32), best first.
// Work split: one 32-lane warp per token; a warp keeps its token's scores in shared memory.
//
// Instrumentation (the `moesim_gating_instrumented` entry; `moesim_gating` is the same code with
// it compiled out): lane 0 takes a global sequence number with atomicAdd, and the record
//   [seq_lo, seq_hi, layer, token, expert ids x k, weight bits x k]   (u32 words, 4 + 2k)
// goes to ring slot `seq % ring_capacity` when `seq < drained_seq + ring_capacity` (the host
// passes the first sequence number it may still be copying out); otherwise the record is lost and
// `overflow` counts it. `expert_counts[layer * E + e]` counts every decision, lost or not.
// `token_base` is added to the token index in records, for callers that split a layer into
// several launches (moesim launches whole layers and passes 0).

#define MOESIM_FULL_MASK 0xffffffffu
#define MOESIM_NO_ID 0xffffffffu

// exp(x): Cody-Waite reduction and a degree-7 Taylor polynomial in fused multiply-adds. Below -87
// it is 0, above 88 infinity. Identical to reference.rs `exp_f32`.
__device__ __forceinline__ float moesim_exp(float x) {
  if (x < -87.0f) return 0.0f;
  if (x > 88.0f) return __int_as_float(0x7f800000);
  const float n = rintf(x * 1.44269504f);
  float r = fmaf(n, -0.693145751953125f, x);
  r = fmaf(n, -1.42860677e-6f, r);
  float p = 1.0f / 5040.0f;
  p = fmaf(p, r, 1.0f / 720.0f);
  p = fmaf(p, r, 1.0f / 120.0f);
  p = fmaf(p, r, 1.0f / 24.0f);
  p = fmaf(p, r, 1.0f / 6.0f);
  p = fmaf(p, r, 0.5f);
  p = fmaf(p, r, 1.0f);
  p = fmaf(p, r, 1.0f);
  return p * __int_as_float(((int)n + 127) << 23);
}

// (av, aid) ranks before (bv, bid): larger value first, equal values to the lower id.
__device__ __forceinline__ bool moesim_ranks_before(float av, unsigned aid, float bv, unsigned bid) {
  return av > bv || (av == bv && aid < bid);
}

// Leaves the warp's best (value, id) in every lane.
__device__ __forceinline__ void moesim_warp_best(float& value, unsigned& id) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other_value = __shfl_xor_sync(MOESIM_FULL_MASK, value, offset);
    const unsigned other_id = __shfl_xor_sync(MOESIM_FULL_MASK, id, offset);
    if (moesim_ranks_before(other_value, other_id, value, id)) {
      value = other_value;
      id = other_id;
    }
  }
}

struct MoesimGatingArgs {
  const float* logits;              // [tokens, E]
  const float* bias;                // [E] or null
  int* out_experts;                 // [tokens, k]
  float* out_weights;               // [tokens, k]
  unsigned* ring;                   // ring_capacity records of 4 + 2k words
  unsigned long long* seq_counter;  // next sequence number
  unsigned long long* overflow;     // records lost
  unsigned long long* expert_counts;  // [layers, E]
};

template <bool INSTRUMENTED>
__device__ void moesim_gating_body(const MoesimGatingArgs a, unsigned num_tokens, unsigned E,
                                   unsigned k, unsigned scoring, unsigned groups,
                                   unsigned top_groups, unsigned renormalize, unsigned layer,
                                   unsigned token_base, unsigned long long ring_capacity,
                                   unsigned long long drained_seq) {
  // Per warp: scores[E], choice[E], then E words used first for group scores / kept flags and
  // then for the chosen ids and weights (k <= E each).
  extern __shared__ float moesim_shared[];
  const unsigned lane = threadIdx.x & 31u;
  const unsigned warp = threadIdx.x >> 5;
  const unsigned warps = blockDim.x >> 5;
  float* scores = moesim_shared + (unsigned long long)warp * 4u * E;
  float* choice = scores + E;
  float* group_score = choice + E;                      // [groups], then:
  float* chosen_weight = group_score;                   // [k]
  unsigned* group_kept = (unsigned*)(choice + 2u * E);  // [groups], then:
  unsigned* chosen_id = group_kept;                     // [k]

  for (unsigned token = blockIdx.x * warps + warp; token < num_tokens;
       token += gridDim.x * warps) {
    const float* x = a.logits + (unsigned long long)token * E;
    if (scoring == 0u) {
      float max = __int_as_float(0xff800000);
      for (unsigned e = lane; e < E; e += 32u) max = fmaxf(max, x[e]);
      for (int offset = 16; offset > 0; offset >>= 1)
        max = fmaxf(max, __shfl_xor_sync(MOESIM_FULL_MASK, max, offset));
      float sum = 0.0f;
      for (unsigned e = lane; e < E; e += 32u) {
        const float v = moesim_exp(x[e] - max);
        scores[e] = v;
        sum += v;
      }
      for (int offset = 16; offset > 0; offset >>= 1)
        sum = sum + __shfl_xor_sync(MOESIM_FULL_MASK, sum, offset);
      for (unsigned e = lane; e < E; e += 32u) scores[e] = scores[e] / sum;
    } else {
      for (unsigned e = lane; e < E; e += 32u) scores[e] = 1.0f / (1.0f + moesim_exp(-x[e]));
    }
    for (unsigned e = lane; e < E; e += 32u) choice[e] = a.bias ? scores[e] + a.bias[e] : scores[e];
    __syncwarp();

    if (groups > 0u) {
      const unsigned size = E / groups;
      for (unsigned g = lane; g < groups; g += 32u) {
        float first = __int_as_float(0xff800000), second = first;
        for (unsigned e = g * size; e < (g + 1u) * size; ++e) {
          const float v = choice[e];
          if (v > first) {
            second = first;
            first = v;
          } else if (v > second) {
            second = v;
          }
        }
        group_score[g] = first + second;
        group_kept[g] = 0u;
      }
      __syncwarp();
      for (unsigned round = 0; round < top_groups; ++round) {
        float best = __int_as_float(0xff800000);
        unsigned best_id = MOESIM_NO_ID;
        for (unsigned g = lane; g < groups; g += 32u)
          if (!group_kept[g] && moesim_ranks_before(group_score[g], g, best, best_id)) {
            best = group_score[g];
            best_id = g;
          }
        moesim_warp_best(best, best_id);
        if (lane == 0u) group_kept[best_id] = 1u;
        __syncwarp();
      }
      for (unsigned e = lane; e < E; e += 32u)
        if (!group_kept[e / size]) choice[e] = __int_as_float(0xff800000);
      __syncwarp();
    }

    // Top-k: an excluded or already chosen expert has choice -inf and is skipped.
    for (unsigned slot = 0; slot < k; ++slot) {
      float best = __int_as_float(0xff800000);
      unsigned best_id = MOESIM_NO_ID;
      for (unsigned e = lane; e < E; e += 32u) {
        const float c = choice[e];
        if (c != __int_as_float(0xff800000) && moesim_ranks_before(c, e, best, best_id)) {
          best = c;
          best_id = e;
        }
      }
      moesim_warp_best(best, best_id);
      if (lane == 0u) {
        chosen_id[slot] = best_id;
        chosen_weight[slot] = scores[best_id];
        choice[best_id] = __int_as_float(0xff800000);
      }
      __syncwarp();
    }
    if (lane == 0u && renormalize) {
      float sum = 0.0f;
      for (unsigned slot = 0; slot < k; ++slot) sum = sum + chosen_weight[slot];
      for (unsigned slot = 0; slot < k; ++slot) chosen_weight[slot] = chosen_weight[slot] / sum;
    }
    __syncwarp();
    for (unsigned slot = lane; slot < k; slot += 32u) {
      a.out_experts[(unsigned long long)token * k + slot] = (int)chosen_id[slot];
      a.out_weights[(unsigned long long)token * k + slot] = chosen_weight[slot];
    }

    if (INSTRUMENTED) {
      unsigned long long seq = 0;
      if (lane == 0u) seq = atomicAdd(a.seq_counter, 1ull);
      seq = __shfl_sync(MOESIM_FULL_MASK, seq, 0);
      const bool kept = seq < drained_seq + ring_capacity;
      const unsigned stride = 4u + 2u * k;
      unsigned* record = a.ring + (unsigned long long)(seq % ring_capacity) * stride;
      if (kept && lane == 0u) {
        record[0] = (unsigned)seq;
        record[1] = (unsigned)(seq >> 32);
        record[2] = layer;
        record[3] = token_base + token;
      }
      if (!kept && lane == 0u) atomicAdd(a.overflow, 1ull);
      for (unsigned slot = lane; slot < k; slot += 32u) {
        if (kept) {
          record[4u + slot] = chosen_id[slot];
          record[4u + k + slot] = __float_as_uint(chosen_weight[slot]);
        }
        atomicAdd(&a.expert_counts[(unsigned long long)layer * E + chosen_id[slot]], 1ull);
      }
    }
    __syncwarp();
  }
}

// Both entries take the pointers flat (not as one struct) so any host can launch them: cudarc,
// CuPy's RawModule (python/moesim_capture), or a C++ caller.
#define MOESIM_GATING_PARAMS                                                                     \
  const float *logits, const float *bias, int *out_experts, float *out_weights, unsigned *ring,   \
      unsigned long long *seq_counter, unsigned long long *overflow,                              \
      unsigned long long *expert_counts, unsigned num_tokens, unsigned E, unsigned k,             \
      unsigned scoring, unsigned groups, unsigned top_groups, unsigned renormalize,               \
      unsigned layer, unsigned token_base, unsigned long long ring_capacity,                      \
      unsigned long long drained_seq
#define MOESIM_GATING_CALL                                                                       \
  MoesimGatingArgs{logits, bias, out_experts, out_weights, ring, seq_counter, overflow,          \
                   expert_counts},                                                                \
      num_tokens, E, k, scoring, groups, top_groups, renormalize, layer, token_base,              \
      ring_capacity, drained_seq

// The plain kernel: routing only (the baseline of the overhead measurement).
extern "C" __global__ void moesim_gating(MOESIM_GATING_PARAMS) {
  moesim_gating_body<false>(MOESIM_GATING_CALL);
}

// The instrumented kernel: routing plus the ring-buffer record and per-expert counters.
extern "C" __global__ void moesim_gating_instrumented(MOESIM_GATING_PARAMS) {
  moesim_gating_body<true>(MOESIM_GATING_CALL);
}
