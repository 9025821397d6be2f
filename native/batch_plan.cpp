// The mlx engine's batch layout, without MLX (see batch_plan.h).
#include "batch_plan.h"

#include <algorithm>
#include <numeric>
#include <utility>

namespace mlxrerank {

namespace {

// Splits the bucket-sorted pairs [0, n) into at most two runs at the cut that pads least.
std::vector<std::pair<size_t, size_t>> coarseRuns(const std::vector<int>& bucketOf) {
  const size_t n = bucketOf.size();
  auto cost = [&](size_t i, size_t j) {  // slots of pairs [i, j) padded to their longest bucket
    return j > i ? static_cast<int64_t>(pairBucket(static_cast<int>(j - i))) * bucketOf[j - 1] : 0;
  };
  size_t best = n;
  int64_t bestCost = cost(0, n);
  for (size_t cut = 1; cut < n; ++cut) {
    if (bucketOf[cut] == bucketOf[cut - 1]) continue;
    const int64_t c = cost(0, cut) + cost(cut, n);
    if (c < bestCost) bestCost = c, best = cut;
  }
  if (best == n) return {{0, n}};
  return {{0, best}, {best, n}};
}

}  // namespace

int bucketLength(int length) {
  static const int kBuckets[] = {8,   16,  24,  32,  40,  48,  56,  64,  80,  96,
                                 112, 128, 160, 192, 224, 256, 320, 384, 448, 512};
  for (int b : kBuckets)
    if (length <= b) return b;
  return (length + 127) / 128 * 128;  // models with more than 512 positions
}

int64_t rowBucket(int64_t tokens) {
  int64_t step = 16;
  while (step * 64 <= tokens) step *= 2;
  return (std::max<int64_t>(tokens, 1) + step - 1) / step * step;
}

int pairBucket(int pairs) {
  int n = 1;
  while (n < pairs) n *= 2;
  return n;
}

AttentionPlan planAttention(const PackedBatch& batch, Attention layout) {
  const bool coarse = layout == Attention::Coarse;
  const size_t pairs = batch.pairs();
  std::vector<int> order(pairs);
  std::iota(order.begin(), order.end(), 0);
  auto length = [&](size_t p) { return batch.offsets[p + 1] - batch.offsets[p]; };
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return bucketLength(length(a)) < bucketLength(length(b)); });
  std::vector<int> bucketOf(pairs);
  for (size_t k = 0; k < pairs; ++k) bucketOf[k] = bucketLength(length(order[k]));

  std::vector<std::pair<size_t, size_t>> runs;
  if (coarse) {
    runs = coarseRuns(bucketOf);
  } else {
    for (size_t i = 0; i < pairs;) {
      size_t j = i;
      while (j < pairs && bucketOf[j] == bucketOf[i]) ++j;
      runs.emplace_back(i, j);
      i = j;
    }
  }

  AttentionPlan plan;
  plan.scatter.resize(batch.tokens.size());
  int64_t base = 0;
  for (const auto& [i, j] : runs) {
    const int bucket = bucketOf[j - 1];
    AttentionPlan::Group group;
    group.pairs = coarse ? pairBucket(static_cast<int>(j - i)) : static_cast<int>(j - i);
    group.length = bucket;
    group.gather.assign(static_cast<size_t>(group.pairs) * bucket, 0);
    group.keyValid.assign(group.gather.size(), 0);
    for (size_t k = i; k < j; ++k) {
      const int p = order[k];
      const int start = batch.offsets[p], len = length(p);
      const size_t row = (k - i) * bucket;
      for (int t = 0; t < bucket; ++t) {
        const bool real = t < len;
        group.gather[row + t] = real ? start + t : start;
        group.keyValid[row + t] = real;
        if (real) plan.scatter[start + t] = static_cast<int32_t>(base + row + t);
      }
      group.padded = group.padded || len < bucket;
    }
    // Filler pairs (coarse only) attend to one key, so that no softmax row is empty; nothing reads them.
    for (size_t row = (j - i) * bucket; row < group.gather.size(); row += bucket) {
      group.keyValid[row] = 1;
      group.padded = true;
    }
    base += static_cast<int64_t>(group.gather.size());
    plan.groups.push_back(std::move(group));
  }
  plan.slots = base;
  return plan;
}

}  // namespace mlxrerank
