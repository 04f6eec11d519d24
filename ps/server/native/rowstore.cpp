// One shard's rows of one embedding table, compiled: key -> slot index, rows and their optimizer
// state laid out together, and the lazy per-row rules (sgd, adagrad, adam, ftrl) fused into one
// pass per row. The numpy store (ps/server/sparse.py, NumpyRows) is the reference it is tested
// against; the arithmetic follows its torch ops in the same order, in float32.
//
// Layout (why): slot s keeps [value | state 0 | state 1] contiguously (stride = (1 + states) *
// width floats), so an update touches one run of cache lines instead of one per array; the hash
// index keeps the key beside the slot, so a probe costs one miss, not two (bucket, then key).
// Big arrays ask the kernel for transparent huge pages (fewer TLB misses on a 10M-row table),
// and the loops prefetch the buckets and rows of keys a few positions ahead.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

constexpr int64_t kEmpty = -1;
constexpr int64_t kMinBuckets = 2048;
constexpr int kAhead = 16;  // prefetch distance, in keys

inline uint64_t mix64(uint64_t x) {  // splitmix64's finalizer, as ps.hashing.mix64
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// A growable array of trivially copyable values whose big allocations ask for huge pages.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { release(); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }

  // Resize to n elements, keeping the first min(n, size) and filling new ones with `fill`.
  void resize(size_t n, T fill) {
    if (n > capacity_) grow(std::max(n, capacity_ + capacity_ / 2));
    for (size_t i = size_; i < n; ++i) data_[i] = fill;
    size_ = n;
  }

  void clear() { size_ = 0; }

 private:
  void grow(size_t capacity) {
    size_t bytes = capacity * sizeof(T);
    void* memory = nullptr;
    if (posix_memalign(&memory, kHuge, bytes) != 0) throw std::bad_alloc();
    if (bytes >= kHuge) madvise(memory, bytes & ~(kHuge - 1), MADV_HUGEPAGE);
    if (size_) std::memcpy(memory, data_, size_ * sizeof(T));
    release();
    data_ = static_cast<T*>(memory);
    capacity_ = capacity;
  }

  void release() {
    std::free(data_);
    data_ = nullptr;
  }

  static constexpr size_t kHuge = 2u << 20;
  T* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

struct Bucket {
  int64_t key;
  int64_t slot;  // kEmpty: a free bucket
};

enum class Kind { kSgd, kAdagrad, kAdam, kFtrl };

// The resolved hyperparameters of one rule (ps.optim.rows), as float32 like torch's scalars.
struct Rule {
  Kind kind;
  int states;
  float lr, l2, eps, b1, b2, beta, l1;
  float state_init[2];
};

Rule make_rule(const std::string& name, const py::dict& hp, double lr) {
  auto get = [&](const char* key, double fallback) {
    return hp.contains(key) ? hp[key].cast<double>() : fallback;
  };
  Rule r{};
  r.lr = static_cast<float>(lr);
  r.l2 = static_cast<float>(get("l2", 0.0));
  if (name == "sgd") {
    r.kind = Kind::kSgd;
  } else if (name == "adagrad") {
    r.kind = Kind::kAdagrad;
    r.states = 1;
    r.eps = static_cast<float>(get("eps", 1e-10));
    r.state_init[0] = static_cast<float>(get("initial_accumulator_value", 0.0));
  } else if (name == "adam") {
    r.kind = Kind::kAdam;
    r.states = 2;
    auto betas = hp["betas"].cast<std::pair<double, double>>();
    r.b1 = static_cast<float>(betas.first);
    r.b2 = static_cast<float>(betas.second);
    r.eps = static_cast<float>(get("eps", 1e-8));
  } else if (name == "ftrl") {
    r.kind = Kind::kFtrl;
    r.states = 2;  // z, n
    r.beta = static_cast<float>(get("beta", 1.0));
    r.l1 = static_cast<float>(get("l1", 0.0));
    r.state_init[1] = static_cast<float>(get("initial_accumulator_value", 0.1));
  } else {
    throw std::invalid_argument("no compiled per-row rule " + name);
  }
  return r;
}

// One row's update; `g` is a scratch copy of its gradient; `step` the row's update number.
void update_row(const Rule& r, int64_t width, float* row, float* g, int32_t step) {
  float* w = row;
  float* s0 = row + width;
  float* s1 = row + 2 * width;
  if (r.l2 != 0.0f && r.kind != Kind::kFtrl)
    for (int64_t j = 0; j < width; ++j) g[j] = g[j] + r.l2 * w[j];
  switch (r.kind) {
    case Kind::kSgd:
      for (int64_t j = 0; j < width; ++j) w[j] = w[j] + (-r.lr) * g[j];
      break;
    case Kind::kAdagrad:
      for (int64_t j = 0; j < width; ++j) {
        s0[j] = s0[j] + g[j] * g[j];
        w[j] = w[j] + ((-r.lr) * g[j]) / (std::sqrt(s0[j]) + r.eps);
      }
      break;
    case Kind::kAdam: {
      float t = static_cast<float>(step);
      float c1 = 1.0f - std::pow(r.b1, t);
      float c2 = std::sqrt(1.0f - std::pow(r.b2, t));
      float w1 = 1.0f - r.b1, w2 = 1.0f - r.b2;
      for (int64_t j = 0; j < width; ++j) {
        s0[j] = s0[j] + w1 * (g[j] - s0[j]);  // lerp(m, g, 1 - b1)
        s1[j] = s1[j] * r.b2 + w2 * g[j] * g[j];
        float denom = std::sqrt(s1[j]) / c2 + r.eps;
        w[j] = w[j] + ((-r.lr) * s0[j]) / (denom * c1);
      }
      break;
    }
    case Kind::kFtrl:
      for (int64_t j = 0; j < width; ++j) {
        float z = s0[j], n = s1[j];
        float n_new = n + g[j] * g[j];
        float sigma = (std::sqrt(n_new) - std::sqrt(n)) / r.lr;
        z = (z + g[j]) - sigma * w[j];
        s0[j] = z;
        s1[j] = n_new;
        float sign = z > 0.0f ? 1.0f : (z < 0.0f ? -1.0f : 0.0f);
        float value = -(z - sign * r.l1) / ((r.beta + std::sqrt(n_new)) / r.lr + r.l2);
        w[j] = std::fabs(z) > r.l1 ? value : 0.0f;
      }
      break;
  }
}

using Keys = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using Rows = py::array_t<float, py::array::c_style | py::array::forcecast>;

class RowStore {
 public:
  RowStore(int64_t width, const std::string& rule, const py::dict& hypers, double lr)
      : width_(width), rule_(make_rule(rule, hypers, lr)) {
    if (width < 1) throw std::invalid_argument("row width must be positive");
    stride_ = (1 + rule_.states) * width_;
    index_.resize(kMinBuckets, Bucket{0, kEmpty});
  }

  int64_t size() const { return n_; }
  int64_t width() const { return width_; }
  int states() const { return rule_.states; }

  int64_t nbytes() const {
    return static_cast<int64_t>(rows_.size() * sizeof(float) + keys_.size() * sizeof(int64_t) +
                                steps_.size() * sizeof(int32_t) + index_.size() * sizeof(Bucket));
  }

  // The slot of each key, or -1.
  py::array_t<int64_t> find(const Keys& keys) {
    auto k = keys.unchecked<1>();
    py::array_t<int64_t> out(k.shape(0));
    int64_t* slots = out.mutable_data();
    {
      py::gil_scoped_release free;
      for (int64_t i = 0; i < k.shape(0); ++i) {
        if (i + kAhead < k.shape(0)) prefetch_bucket(k(i + kAhead));
        slots[i] = probe(k(i));
      }
    }
    return out;
  }

  // The rows of `keys` (zeros where absent) and their slots (-1 where absent).
  py::tuple lookup(const Keys& keys) {
    auto slots = find(keys);
    int64_t k = slots.shape(0);
    Rows out({k, width_});
    const int64_t* s = slots.data();
    float* o = out.mutable_data();
    {
      py::gil_scoped_release free;
      for (int64_t i = 0; i < k; ++i) {
        if (i + kAhead < k && s[i + kAhead] >= 0)
          __builtin_prefetch(rows_.data() + s[i + kAhead] * stride_);
        if (s[i] >= 0)
          std::memcpy(o + i * width_, rows_.data() + s[i] * stride_, width_ * sizeof(float));
        else
          std::memset(o + i * width_, 0, width_ * sizeof(float));
      }
    }
    return py::make_tuple(out, slots);
  }

  // Slots for distinct `keys`, creating absent ones (state at its initial value, value zero
  // until write_values); returns (slots, positions in `keys` of the rows created).
  py::tuple prepare(const Keys& keys) {
    auto k = keys.unchecked<1>();
    int64_t count = k.shape(0);
    reserve_index(n_ + count);
    py::array_t<int64_t> out(count);
    int64_t* slots = out.mutable_data();
    std::vector<int64_t> created;
    for (int64_t i = 0; i < count; ++i) {
      if (i + kAhead < count) prefetch_bucket(k(i + kAhead));
      slots[i] = find_or_add(k(i), &created, i);
    }
    py::array_t<int64_t> fresh(static_cast<py::ssize_t>(created.size()));
    std::copy(created.begin(), created.end(), fresh.mutable_data());
    return py::make_tuple(out, fresh);
  }

  // Overwrite the values (not the state) of `slots` with `values` (k, width).
  void write_values(const Keys& slots, const Rows& values) {
    auto s = slots.unchecked<1>();
    check_rows(values, s.shape(0));
    const float* v = values.data();
    for (int64_t i = 0; i < s.shape(0); ++i)
      std::memcpy(rows_.data() + checked(s(i)) * stride_, v + i * width_, width_ * sizeof(float));
  }

  // One update of the rows at `slots` (distinct) with `grads` (k, width).
  void update(const Keys& slots, const Rows& grads) {
    auto s = slots.unchecked<1>();
    int64_t k = s.shape(0);
    check_rows(grads, k);
    for (int64_t i = 0; i < k; ++i) checked(s(i));
    const float* g = grads.data();
    py::gil_scoped_release free;
    std::vector<float> scratch(width_);
    for (int64_t i = 0; i < k; ++i) {
      if (i + kAhead < k) prefetch_row(s(i + kAhead));
      std::memcpy(scratch.data(), g + i * width_, width_ * sizeof(float));
      int32_t step = ++steps_.data()[s(i)];
      update_row(rule_, width_, rows_.data() + s(i) * stride_, scratch.data(), step);
    }
  }

  // Every row in slot order: (keys, values, states (states, n, width), steps), copies;
  // without `with_state`, states is empty (0, n, width) (a read of the rows alone).
  py::tuple export_rows(bool with_state) const {
    Keys keys(n_);
    Rows values({n_, width_});
    int states_out = with_state ? rule_.states : 0;
    Rows states({static_cast<int64_t>(states_out), n_, width_});
    py::array_t<int32_t> steps(n_);
    if (n_ == 0) return py::make_tuple(keys, values, states, steps);  // nothing allocated yet
    std::memcpy(keys.mutable_data(), keys_.data(), n_ * sizeof(int64_t));
    std::memcpy(steps.mutable_data(), steps_.data(), n_ * sizeof(int32_t));
    float* v = values.mutable_data();
    float* st = states.mutable_data();
    for (int64_t slot = 0; slot < n_; ++slot) {
      const float* row = rows_.data() + slot * stride_;
      std::memcpy(v + slot * width_, row, width_ * sizeof(float));
      for (int s = 0; s < states_out; ++s)
        std::memcpy(st + (s * n_ + slot) * width_, row + (s + 1) * width_, width_ * sizeof(float));
    }
    return py::make_tuple(keys, values, states, steps);
  }

  // Replace every row with (keys distinct, values, states, steps) as export_rows gives them.
  void load(const Keys& keys, const Rows& values, const Rows& states,
            const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& steps) {
    int64_t n = keys.shape(0);
    check_rows(values, n);
    if (states.ndim() != 3 || states.shape(0) != rule_.states || states.shape(1) != n ||
        states.shape(2) != width_)
      throw std::invalid_argument("optimizer state of another shape");
    if (steps.ndim() != 1 || steps.shape(0) != n)
      throw std::invalid_argument("update counts of another length");
    n_ = 0;
    keys_.clear();
    rows_.clear();
    steps_.clear();
    index_.clear();
    index_.resize(kMinBuckets, Bucket{0, kEmpty});
    auto prepared = prepare(keys);
    if (prepared[1].cast<py::array>().shape(0) != n)
      throw std::invalid_argument("checkpoint keys are not distinct");
    const float* v = values.data();
    const float* st = states.data();
    for (int64_t slot = 0; slot < n; ++slot) {
      float* row = rows_.data() + slot * stride_;
      std::memcpy(row, v + slot * width_, width_ * sizeof(float));
      for (int s = 0; s < rule_.states; ++s)
        std::memcpy(row + (s + 1) * width_, st + (s * n + slot) * width_, width_ * sizeof(float));
      steps_.data()[slot] = steps.data()[slot];
    }
  }

 private:
  uint64_t mask() const { return index_.size() - 1; }

  void prefetch_bucket(int64_t key) const {
    __builtin_prefetch(index_.data() + (mix64(static_cast<uint64_t>(key)) & mask()));
  }

  // Every cache line of a row and its state, for writing.
  void prefetch_row(int64_t slot) const {
    const char* row = reinterpret_cast<const char*>(rows_.data() + slot * stride_);
    for (int64_t b = 0; b < stride_ * static_cast<int64_t>(sizeof(float)); b += 64)
      __builtin_prefetch(row + b, 1);
    __builtin_prefetch(steps_.data() + slot, 1);
  }

  int64_t probe(int64_t key) const {
    uint64_t pos = mix64(static_cast<uint64_t>(key)) & mask();
    const Bucket* b = index_.data();
    while (b[pos].slot != kEmpty) {
      if (b[pos].key == key) return b[pos].slot;
      pos = (pos + 1) & mask();
    }
    return kEmpty;
  }

  int64_t find_or_add(int64_t key, std::vector<int64_t>* created, int64_t position) {
    uint64_t pos = mix64(static_cast<uint64_t>(key)) & mask();
    Bucket* b = index_.data();
    while (b[pos].slot != kEmpty) {
      if (b[pos].key == key) return b[pos].slot;
      pos = (pos + 1) & mask();
    }
    int64_t slot = n_++;
    b[pos] = Bucket{key, slot};
    keys_.resize(n_, key);
    rows_.resize(n_ * stride_, 0.0f);
    float* row = rows_.data() + slot * stride_;
    for (int s = 0; s < rule_.states; ++s)
      std::fill(row + (s + 1) * width_, row + (s + 2) * width_, rule_.state_init[s]);
    steps_.resize(n_, 0);
    created->push_back(position);
    return slot;
  }

  // Keep the index at most half full for `rows` rows (probes stay short).
  void reserve_index(int64_t rows) {
    size_t size = index_.size();
    while (static_cast<size_t>(rows) * 2 > size) size *= 2;
    if (size == index_.size()) return;
    index_.clear();
    index_.resize(size, Bucket{0, kEmpty});
    Bucket* b = index_.data();
    for (int64_t slot = 0; slot < n_; ++slot) {
      uint64_t pos = mix64(static_cast<uint64_t>(keys_.data()[slot])) & mask();
      while (b[pos].slot != kEmpty) pos = (pos + 1) & mask();
      b[pos] = Bucket{keys_.data()[slot], slot};
    }
  }

  int64_t checked(int64_t slot) const {
    if (slot < 0 || slot >= n_) throw std::out_of_range("no row at slot " + std::to_string(slot));
    return slot;
  }

  void check_rows(const Rows& rows, int64_t k) const {
    if (rows.ndim() != 2 || rows.shape(0) != k || rows.shape(1) != width_)
      throw std::invalid_argument("rows must be (" + std::to_string(k) + ", " +
                                  std::to_string(width_) + ") float32");
  }

  int64_t width_;
  int64_t stride_;
  Rule rule_;
  int64_t n_ = 0;
  Buffer<int64_t> keys_;
  Buffer<float> rows_;
  Buffer<int32_t> steps_;
  Buffer<Bucket> index_;
};

}  // namespace

PYBIND11_MODULE(_rowstore, m) {
  m.doc() = "A shard's rows of one embedding table, with fused per-row optimizer updates.";
  py::class_<RowStore>(m, "RowStore")
      .def(py::init<int64_t, const std::string&, const py::dict&, double>(), py::arg("width"),
           py::arg("rule"), py::arg("hypers"), py::arg("lr"))
      .def("__len__", &RowStore::size)
      .def_property_readonly("width", &RowStore::width)
      .def_property_readonly("states", &RowStore::states)
      .def_property_readonly("nbytes", &RowStore::nbytes)
      .def("find", &RowStore::find, py::arg("keys"))
      .def("lookup", &RowStore::lookup, py::arg("keys"))
      .def("prepare", &RowStore::prepare, py::arg("keys"))
      .def("write_values", &RowStore::write_values, py::arg("slots"), py::arg("values"))
      .def("update", &RowStore::update, py::arg("slots"), py::arg("grads"))
      .def("export_rows", &RowStore::export_rows, py::arg("with_state") = true)
      .def("load", &RowStore::load, py::arg("keys"), py::arg("values"), py::arg("states"),
           py::arg("steps"));
}
