// Host bytes to CUDA device memory for the mlx engine, without CUDA managed memory (the `fusedKernels`
// path, docs/engine-options.md). Included by engine_mlx.cpp only.
//
// Why: MLX's CUDA allocator puts every array made from host data (mx::array(ptr, shape),
// allocator::malloc) in cudaMallocManaged memory (mlx/backend/cuda/allocator.cpp, unified_malloc). A
// forward's token ids, positions and attention tables made that way are written by the host and then
// read by the GPU, so the first kernel to read each one faults its pages over from the host, on every
// forward: the three embedding gathers took ~640 us each at batch 512 on an H200 (ncu), ~60 GB/s of a
// 4.3 TB/s card. Weights loaded the same way stay managed whenever no op copies them (file dtype ==
// compute dtype, no transpose). And MLX's buffer cache hands a freed managed buffer to the next device
// allocation of about its size, so managed memory spreads to activations too.
//
// How: MLX's own Load primitive (what mx::load runs) allocates its output with malloc_async on the
// stream (device memory) and fills it with one cudaMemcpyAsync from a host copy: no managed memory, no
// page faults, one DMA. mx::load takes any io::Reader holding a .npy file, so HostBytes serves the
// bytes as a one-dimensional uint8 .npy from memory, and the caller views them as their real type
// (mx::view of a row-contiguous array shares its buffer: no copy).
#pragma once

#include <mlx/mlx.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace mlxrerank {

namespace mx = mlx::core;

// A .npy file in memory: a version 1.0 header for `size` uint8 elements, then the bytes at `data`, which
// `owner` keeps alive (a forward's inputs, read when the graph is evaluated, after run() has returned) or,
// without an owner, the caller does (weights, read while the weight store is open: load() evaluates each
// weight at once).
class HostBytes final : public mx::io::Reader {
 public:
  HostBytes(const void* data, size_t size, std::shared_ptr<const void> owner = nullptr)
      : owner_(std::move(owner)), data_(static_cast<const char*>(data)), size_(size) {
    header();
  }
  template <typename T>
  static std::shared_ptr<HostBytes> owning(std::vector<T> values) {
    auto owned = std::make_shared<const std::vector<T>>(std::move(values));
    return std::make_shared<HostBytes>(owned->data(), owned->size() * sizeof(T), owned);
  }

  bool is_open() const override { return true; }
  bool good() const override { return true; }
  size_t tell() override { return pos_; }
  void seek(int64_t off, std::ios_base::seekdir way) override {
    const int64_t base = way == std::ios_base::beg   ? 0
                         : way == std::ios_base::cur ? static_cast<int64_t>(pos_)
                                                     : static_cast<int64_t>(total());
    pos_ = static_cast<size_t>(std::clamp<int64_t>(base + off, 0, static_cast<int64_t>(total())));
  }
  void read(char* out, size_t n) override {
    read(out, n, pos_);
    pos_ += n;
  }
  // Bytes [offset, offset + n) of header + data; never past the end (mx::load asks only for what the
  // header describes, so a short read would be an MLX bug: it reads zeros rather than out of bounds).
  void read(char* out, size_t n, size_t offset) override {
    for (size_t done = 0; done < n;) {
      const size_t at = offset + done;
      size_t chunk = 0;
      if (at < header_.size()) {
        chunk = std::min(n - done, header_.size() - at);
        std::memcpy(out + done, header_.data() + at, chunk);
      } else if (at - header_.size() < size_) {
        chunk = std::min(n - done, size_ - (at - header_.size()));
        std::memcpy(out + done, data_ + (at - header_.size()), chunk);
      } else {
        std::memset(out + done, 0, n - done);
        break;
      }
      done += chunk;
    }
  }
  std::string label() const override { return "mlx-rerank host bytes"; }

 private:
  size_t total() const { return header_.size() + size_; }
  void header() {
    std::string dict =
        "{'descr': '|u1', 'fortran_order': False, 'shape': (" + std::to_string(size_) + ",), }";
    // The whole header (magic, version, length, dict, '\n') padded with spaces to a multiple of 64.
    const size_t unpadded = 10 + dict.size() + 1;
    dict.append((64 - unpadded % 64) % 64, ' ');
    dict.push_back('\n');
    const auto len = static_cast<uint16_t>(dict.size());
    header_ = std::string("\x93NUMPY\x01\x00", 8);
    header_.push_back(static_cast<char>(len & 0xff));
    header_.push_back(static_cast<char>(len >> 8));
    header_ += dict;
  }

  std::shared_ptr<const void> owner_;
  const char* data_;
  size_t size_;
  std::string header_;
  size_t pos_ = 0;
};

// `bytes` bytes at `data` as an array of `shape` and `dtype` in device memory on `stream` (CUDA),
// filled when it is evaluated. `reader` must outlive that evaluation (HostBytes does).
inline mx::array uploadBytes(std::shared_ptr<HostBytes> reader, const mx::Shape& shape, mx::Dtype dtype,
                             mx::Stream stream) {
  mx::array bytes = mx::load(std::move(reader), stream);  // [size] uint8, device memory
  return mx::reshape(mx::view(bytes, dtype, stream), shape, stream);
}

// A forward's int32 host inputs (token ids, positions, attention tables, pooling indices), gathered into
// one vector and turned into MLX arrays all at once: on CUDA one upload (one DMA, one device buffer;
// each piece a slice of it, a view), elsewhere one host array each, as mx::array(ptr, shape) makes them.
class Int32Inputs {
 public:
  // Appends `values`; returns its index in arrays().
  size_t add(const std::vector<int32_t>& values) {
    starts_.push_back(all_.size());
    all_.insert(all_.end(), values.begin(), values.end());
    return starts_.size() - 1;
  }

  // The pieces as arrays, in the order added (once: the values move into the upload).
  std::vector<mx::array> arrays(bool device, mx::Stream stream) && {
    starts_.push_back(all_.size());
    std::vector<mx::array> out;
    const size_t pieces = starts_.size() - 1;
    out.reserve(pieces);
    if (!device) {
      for (size_t i = 0; i < pieces; ++i)
        out.emplace_back(all_.data() + starts_[i], mx::Shape{static_cast<int>(starts_[i + 1] - starts_[i])},
                         mx::int32);
      return out;
    }
    const int total = static_cast<int>(all_.size());
    mx::array whole = uploadBytes(HostBytes::owning(std::move(all_)), mx::Shape{total}, mx::int32, stream);
    for (size_t i = 0; i < pieces; ++i)
      out.push_back(
          mx::slice(whole, {static_cast<int>(starts_[i])}, {static_cast<int>(starts_[i + 1])}, stream));
    return out;
  }

 private:
  std::vector<int32_t> all_;
  std::vector<size_t> starts_;
};

}  // namespace mlxrerank
