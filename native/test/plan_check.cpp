// engine_check's self-test of the mlx engine's batch layout (native/batch_plan.h), which every build
// compiles whether or not it has MLX. Random batches in both planned layouts; each plan must be a
// round trip (gather[scatter[t]] == t for every real token), pad only with masked keys that point at
// their pair's [CLS] row, use only bucket lengths, and (coarse) pad no more than the best cut.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "batch_plan.h"

namespace mlxrerank {

namespace {

int failures = 0;

void check(bool ok, const char* what, int seed) {
  if (ok) return;
  std::fprintf(stderr, "FAIL: batch plan (seed %d): %s\n", seed, what);
  ++failures;
}

PackedBatch randomBatch(std::mt19937& rng, int maxLen) {
  PackedBatch b;
  const int pairs = std::uniform_int_distribution<int>(1, 40)(rng);
  b.offsets.push_back(0);
  for (int p = 0; p < pairs; ++p) {
    // Skewed towards short pairs, as rerank traffic is, with bucket edges and the longest possible.
    const int len =
        std::uniform_int_distribution<int>(0, 3)(rng) == 0
            ? maxLen
            : 1 + static_cast<int>(std::pow(std::uniform_real_distribution<double>(0, 1)(rng), 2) *
                                   (maxLen - 1));
    b.offsets.push_back(b.offsets.back() + len);
  }
  b.tokens.assign(static_cast<size_t>(b.offsets.back()), 0);
  b.typeIds = b.tokens;
  return b;
}

// Slots of the best split of the bucket-sorted pairs into at most two power-of-two groups, cut between
// two bucket lengths (one length never spans two groups), by trying every cut.
int64_t bestCoarseSlots(const PackedBatch& b) {
  std::vector<int> buckets;
  for (size_t p = 0; p < b.pairs(); ++p) buckets.push_back(bucketLength(b.offsets[p + 1] - b.offsets[p]));
  std::sort(buckets.begin(), buckets.end());
  const size_t n = buckets.size();
  auto cost = [&](size_t i, size_t j) {
    return j > i ? int64_t{pairBucket(static_cast<int>(j - i))} * buckets[j - 1] : int64_t{0};
  };
  int64_t best = cost(0, n);
  for (size_t cut = 1; cut < n; ++cut)
    if (buckets[cut] != buckets[cut - 1]) best = std::min(best, cost(0, cut) + cost(cut, n));
  return best;
}

void checkPlan(const PackedBatch& b, Attention layout, int seed) {
  const AttentionPlan plan = planAttention(b, layout);
  const size_t T = b.tokens.size();
  check(plan.scatter.size() == T, "one scatter row per token", seed);
  std::vector<int32_t> gather;
  std::vector<uint8_t> valid;
  int64_t slots = 0;
  for (const auto& g : plan.groups) {
    check(g.length == bucketLength(g.length), "group length is a bucket", seed);
    check(g.gather.size() == static_cast<size_t>(g.pairs) * g.length, "gather is pairs x length", seed);
    if (layout == Attention::Coarse)
      check(g.pairs == pairBucket(g.pairs), "coarse pairs a power of two", seed);
    bool padded = false;
    for (int q = 0; q < g.pairs; ++q) {
      const size_t row = static_cast<size_t>(q) * g.length;
      const int32_t cls = g.gather[row];
      int real = 0;
      for (int t = 0; t < g.length; ++t) {
        real += g.keyValid[row + t];
        if (!g.keyValid[row + t]) check(g.gather[row + t] == cls, "padding points at the pair's [CLS]", seed);
      }
      padded = padded || real < g.length;
      if (layout == Attention::Fine)
        check(g.length == bucketLength(real), "fine: a pair in its own bucket", seed);
      check(bucketLength(real) <= g.length, "a pair fits its group", seed);
    }
    check(g.padded == padded, "padded says whether a key is masked", seed);
    gather.insert(gather.end(), g.gather.begin(), g.gather.end());
    valid.insert(valid.end(), g.keyValid.begin(), g.keyValid.end());
    slots += static_cast<int64_t>(g.gather.size());
  }
  check(plan.slots == slots, "slots is the sum of the groups", seed);
  std::vector<int> seen(gather.size(), 0);
  for (size_t t = 0; t < T; ++t) {
    const int32_t r = plan.scatter[t];
    const bool inRange = r >= 0 && static_cast<size_t>(r) < gather.size();
    check(inRange, "scatter row in range", seed);
    if (!inRange) continue;
    check(gather[r] == static_cast<int32_t>(t), "gather[scatter[t]] == t", seed);
    check(valid[r] == 1, "a real token is a valid key", seed);
    check(++seen[r] == 1, "one slot per token", seed);
  }
  if (layout == Attention::Fine) {
    std::vector<int> buckets;
    for (size_t p = 0; p < b.pairs(); ++p) buckets.push_back(bucketLength(b.offsets[p + 1] - b.offsets[p]));
    std::sort(buckets.begin(), buckets.end());
    buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
    check(plan.groups.size() == buckets.size(), "fine: one group per bucket", seed);
  } else {
    check(plan.groups.size() <= 2, "coarse: at most two groups", seed);
    check(plan.slots == bestCoarseSlots(b), "coarse: the cut that pads least", seed);
  }
}

}  // namespace

int checkBatchPlans() {
  failures = 0;
  // Buckets: the smallest listed length that holds the pair, then multiples of 128.
  for (int len = 1; len <= 2048; ++len) {
    const int b = bucketLength(len);
    check(b >= len && (len > 512 ? b % 128 == 0 && b - len < 128 : b <= 512), "bucket holds the pair", len);
    check(bucketLength(b) == b && (len == 1 || bucketLength(len - 1) <= b),
          "buckets are fixed points, in order", len);
  }
  // Row buckets: at most 3.1% padding above 512 rows, 15 rows below; a few hundred up to 64k tokens.
  int64_t distinct = 0, last = 0;
  for (int64_t t = 1; t <= 65536; ++t) {
    const int64_t r = rowBucket(t);
    check(r >= t && r - t <= std::max<int64_t>(15, t / 32), "row bucket pads little", static_cast<int>(t));
    check(r >= last, "row buckets in order", static_cast<int>(t));
    distinct += r != last;
    last = r;
  }
  check(distinct <= 400, "a few hundred row buckets up to 64k tokens", 0);
  for (int seed = 0; seed < 200; ++seed) {
    std::mt19937 rng(seed);
    const PackedBatch b = randomBatch(rng, seed % 2 ? 512 : 128);
    checkPlan(b, Attention::Fine, seed);
    checkPlan(b, Attention::Coarse, seed);
  }
  std::printf("batch plans: %s\n", failures ? "FAILED" : "ok");
  return failures;
}

}  // namespace mlxrerank
