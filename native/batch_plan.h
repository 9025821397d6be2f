// How the mlx engine lays a packed batch out (see docs/architecture.md, "The packed batch"): length
// buckets for attention, row buckets for the dense layers on a GPU, and the grouping of pairs into
// attention groups. Plain C++ with no MLX in it, so that every build compiles it and tests it (vitest
// through the addon's _planBatch, and native/test/plan_check.cpp in engine_check).
#pragma once

#include <cstdint>
#include <vector>

#include "engine.h"

namespace mlxrerank {

// The length attention pads a pair of `length` tokens to: one of 20 buckets up to 512 (at most 7
// slots of padding below 64, ~12% above), then multiples of 128 for models with more positions.
// Few lengths keep the number of attention shapes (and of buffer sizes in MLX's cache) small.
int bucketLength(int length);

// Rows the dense layers run on for `tokens` real tokens on a GPU: a multiple of the largest power of
// two (at least 16) that is at most tokens / 32, so at most 3.1% padding and a few hundred distinct
// row counts up to 64k tokens (which warmup() can visit).
int64_t rowBucket(int64_t tokens);

// The next power of two >= pairs (>= 1).
int pairBucket(int pairs);

// How the engine lays the batch out for attention.
//   Varlen (CUDA GPUs, the default there): our kernel on the packed rows (mlx_varlen_attention.h); no
//     padding, no per-length shapes, so no plan.
//   Fine (CPUs): one attention call per bucket length, pairs padded to the bucket (least padding
//     where every op is cheap to issue).
//   Coarse (other GPUs: Metal): at most two groups per batch, each padded to its longest bucket, with
//     the pair count rounded up to a power of two. On a GPU every group costs about ten kernel
//     launches per layer and every new (pairs, length) shape a new attention plan, so fewer, repeating
//     shapes beat the padding they add.
enum class Attention { Varlen, Fine, Coarse };

// Host-side index arrays for one batch: how the T real tokens map onto the padded, bucket-grouped
// layout that attention works on, and back.
struct AttentionPlan {
  struct Group {
    int pairs = 0;
    int length = 0;                 // bucket length every pair of the group is padded to
    std::vector<int32_t> gather;    // pairs * length token rows (padding points at the pair's [CLS])
    std::vector<uint8_t> keyValid;  // pairs * length, 1 for real keys
    bool padded = false;            // some pair is shorter than the bucket
  };
  std::vector<Group> groups;
  std::vector<int32_t> scatter;  // T: row of each real token in the concatenated group outputs
  int64_t slots = 0;             // sum of padded lengths
};

// The plan for a Fine or Coarse layout of a validated batch (its offsets and token count).
AttentionPlan planAttention(const PackedBatch& batch, Attention layout);

// engine_check's self-test of the above (native/test/plan_check.cpp): returns the number of failures.
int checkBatchPlans();

}  // namespace mlxrerank
