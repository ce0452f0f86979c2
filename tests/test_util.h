// Helpers shared by the tests: status matchers and a small spec builder.
#ifndef PSGRID_TESTS_TEST_UTIL_H_
#define PSGRID_TESTS_TEST_UTIL_H_

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "core/loss.h"
#include "core/parameters.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "psgrid/v1/job.pb.h"

namespace psgrid::testing {

// EXPECT_OK(status_or_statusor)
inline const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) { return s.status(); }

#define EXPECT_OK(expr) EXPECT_TRUE(::psgrid::testing::StatusOf(expr).ok()) \
    << ::psgrid::testing::StatusOf(expr)
#define ASSERT_OK(expr) ASSERT_TRUE(::psgrid::testing::StatusOf(expr).ok()) \
    << ::psgrid::testing::StatusOf(expr)

// Asserts `expr` fails with `code` and a message containing `substr`.
#define EXPECT_STATUS(expr, expected_code, substr)                                        \
  do {                                                                           \
    const absl::Status psgrid_s_ = ::psgrid::testing::StatusOf(expr);            \
    EXPECT_EQ(psgrid_s_.code(), expected_code) << psgrid_s_;                              \
    EXPECT_THAT(std::string(psgrid_s_.message()), ::testing::HasSubstr(substr)); \
  } while (0)

// Removes `path` (a file or a directory tree) when the test process exits normally.
inline void RemoveAtExit(const std::string& path) {
  struct Registry {
    std::mutex mu;
    std::set<std::string> paths;
    ~Registry() {
      std::error_code ec;
      for (const std::string& p : paths) std::filesystem::remove_all(p, ec);
    }
  };
  static Registry registry;
  std::lock_guard<std::mutex> lock(registry.mu);
  registry.paths.insert(path);
}

// A path in the test temp directory private to this process (CTest runs the TESTs of one
// binary as parallel processes, which must not write each other's files), removed at exit.
inline std::string TempPath(const std::string& name) {
  const std::string path =
      ::testing::TempDir() + "/psgrid_" + std::to_string(getpid()) + "_" + name;
  RemoveAtExit(path);
  return path;
}

// A file of `text` at TempPath(name) (per process: test processes run in parallel must not
// share files); returns its path.
inline std::string WriteTempFile(const std::string& name, const std::string& text) {
  const std::string path = TempPath(name);
  std::ofstream(path) << text;
  return path;
}

// A whole file's bytes ("" when it cannot be read), and a file made of `bytes`.
inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A fresh directory "<TempDir>/<prefix>_XXXXXX" (made unique by mkdtemp), removed at exit; ""
// when it cannot be made.
inline std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = ::testing::TempDir() + "/" + prefix + "_XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) return "";
  RemoveAtExit(tmpl);
  return tmpl;
}

// n values written to `path` as raw bytes in native order (what numpy's fromfile reads and
// tofile writes), and such a file read back (as many whole values as it holds).
template <typename T>
void WriteRaw(const std::string& path, const T* data, int64_t n) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(T)));
}

template <typename T>
std::vector<T> ReadRaw(const std::string& path) {
  const std::string bytes = ReadBytes(path);
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
  return out;
}

// Whether /usr/bin/python3 imports `modules` (e.g. "torch, numpy"); asked once per process.
// Debian's python3-torch lives in the system Python, not in whatever python3 PATH finds first.
inline bool PythonImports(const std::string& modules) {
  static std::mutex mu;
  static std::map<std::string, bool> known;
  std::lock_guard<std::mutex> lock(mu);
  const auto it = known.find(modules);
  if (it != known.end()) return it->second;
  const std::string command = "/usr/bin/python3 -c 'import " + modules + "' >/dev/null 2>&1";
  return known[modules] = std::system(command.c_str()) == 0;
}

// The PyTorch comparisons need torch and numpy (skipped, saying so, without them).
inline bool TorchAvailable() { return PythonImports("torch, numpy"); }

// A loopback port nothing listens on now (bound, then released).
inline int ClosedLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// y = 2a − 3b + 1 on a grid of 200 points (a header line first): a linear model learns it
// exactly. Written to TempPath(name); returns the path.
inline std::string WriteLinearCsv(const std::string& name = "linear.csv") {
  const std::string path = TempPath(name);
  std::ofstream out(path);
  out << "a,b,y\n";
  for (int i = 0; i < 20; ++i) {
    for (int j = 0; j < 10; ++j) {
      const double a = i / 10.0 - 1.0, b = j / 5.0 - 1.0;
      out << a << "," << b << "," << 2 * a - 3 * b + 1 << "\n";
    }
  }
  return path;
}

// A model spec from (type, units) pairs, e.g. {{"dense", 4}, {"relu", 0}}.
inline v1::ModelSpec MakeModelSpec(const std::vector<std::pair<std::string, int>>& layers,
                                   const std::string& loss = "softmax_cross_entropy",
                                   uint64_t seed = 1) {
  v1::ModelSpec spec;
  for (const auto& [type, units] : layers) {
    v1::LayerSpec* l = spec.add_layers();
    l->set_type(type);
    l->set_units(units);
  }
  spec.set_loss(loss);
  spec.mutable_init()->set_scheme("he");
  spec.mutable_init()->set_seed(seed);
  return spec;
}

// The names and the shapes of a parameter set's tensors, in declaration order.
inline std::vector<std::string> ParameterNames(const ParameterSet& params) {
  std::vector<std::string> names;
  for (const ParamInfo& info : params.infos()) names.push_back(info.name);
  return names;
}

inline std::vector<Shape> ParameterShapes(const ParameterSet& params) {
  std::vector<Shape> shapes;
  for (const ParamInfo& info : params.infos()) shapes.push_back(info.shape);
  return shapes;
}

// A random batch for a model with `in` inputs and `out` outputs: x uniform in [-1, 1), labels
// in [0, out), regression values in [-1, 1). Not copyable: targets() points into it.
struct RandomBatch {
  RandomBatch(Rng& rng, int64_t batch, int64_t in, int64_t out)
      : x({batch, in}), labels(batch), values({batch, out}) {
    for (float& v : x.span()) v = rng.Uniform(-1.0f, 1.0f);
    for (int32_t& l : labels) l = static_cast<int32_t>(rng.Below(out));
    for (float& v : values.span()) v = rng.Uniform(-1.0f, 1.0f);
  }
  RandomBatch(const RandomBatch&) = delete;
  RandomBatch& operator=(const RandomBatch&) = delete;

  // Labels for a classification loss, values for a regression loss.
  Targets targets(const Loss& loss) const {
    Targets t;
    if (loss.uses_labels()) {
      t.labels = labels;
    } else {
      t.values = &values;
    }
    return t;
  }

  Tensor x;
  std::vector<int32_t> labels;
  Tensor values;
};

}  // namespace psgrid::testing

#endif  // PSGRID_TESTS_TEST_UTIL_H_
