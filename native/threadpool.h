// A small fork-join pool for one engine: the calling thread works too, helpers wait on a condition
// variable between jobs (the cores are shared; no spinning while idle).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mlxrerank {
namespace cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int threads) {
    for (int t = 1; t < threads; ++t) helpers_.emplace_back([this, t] { loop(t); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& h : helpers_) h.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(helpers_.size()) + 1; }

  // Runs fn(task, worker) for task in [0, tasks), tasks handed out dynamically; returns when all are
  // done. worker in [0, size()) indexes per-thread scratch. Not reentrant.
  void parallelFor(int tasks, const std::function<void(int task, int worker)>& fn) {
    if (tasks <= 0) return;
    if (helpers_.empty() || tasks == 1) {
      for (int i = 0; i < tasks; ++i) fn(i, 0);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      tasks_ = tasks;
      next_.store(0);
      active_ = static_cast<int>(helpers_.size());
      ++generation_;
    }
    wake_.notify_all();
    work(0);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return active_ == 0; });
    fn_ = nullptr;
  }

 private:
  void work(int worker) {
    for (;;) {
      const int i = next_.fetch_add(1);
      if (i >= tasks_) return;
      (*fn_)(i, worker);
    }
  }

  void loop(int worker) {
    unsigned long seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      work(worker);
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (--active_ == 0) done_.notify_one();
      }
    }
  }

  std::vector<std::thread> helpers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int, int)>* fn_ = nullptr;
  int tasks_ = 0;
  std::atomic<int> next_{0};
  int active_ = 0;
  unsigned long generation_ = 0;
  bool stop_ = false;
};

// Seconds one call of `once` takes: one untimed call (caches, pages, threads), then as many timed calls
// as fit in `seconds` (at least one), averaged. For the GEMM ceiling and the kernel benchmark.
template <typename F>
double secondsPerCall(F&& once, double seconds) {
  once();
  const auto t0 = std::chrono::steady_clock::now();
  int iters = 0;
  double elapsed = 0;
  do {
    once();
    ++iters;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (elapsed < seconds);
  return elapsed / iters;
}

}  // namespace cpu
}  // namespace mlxrerank
