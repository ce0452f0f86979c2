#include "core/backend/cuda/cublas_api.h"

#include <dlfcn.h>

#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"

namespace psgrid::cuda_internal {
namespace {

struct Loaded {
  CublasApi api{};
  bool ok = false;
  std::string error;
};

// The library of the cuBLAS major version this was compiled against: by its soname (the
// loader's search path), then in the toolkit's library folder of the build.
Loaded Load() {
  Loaded loaded;
  const std::string soname = absl::StrCat("libcublas.so.", CUBLAS_VER_MAJOR);
  std::vector<std::string> candidates = {soname};
#ifdef PSGRID_CUDA_LIBRARY_DIR
  candidates.push_back(absl::StrCat(PSGRID_CUDA_LIBRARY_DIR, "/", soname));
#endif
  void* handle = nullptr;
  std::string why;
  for (const std::string& path : candidates) {
    handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) break;
    const char* e = dlerror();
    absl::StrAppend(&why, why.empty() ? "" : "; ", e != nullptr ? e : path);
  }
  if (handle == nullptr) {
    loaded.error = absl::StrCat("cannot load cuBLAS (", soname, "): ", why);
    return loaded;
  }
  // Never closed: the handles created from it live as long as their backends.
  auto find = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(handle, name));
    if (fn == nullptr && loaded.error.empty()) {
      loaded.error = absl::StrCat("cuBLAS (", soname, ") has no ", name);
    }
  };
  find(loaded.api.create, "cublasCreate_v2");
  find(loaded.api.destroy, "cublasDestroy_v2");
  find(loaded.api.set_stream, "cublasSetStream_v2");
  find(loaded.api.set_math_mode, "cublasSetMathMode");
  find(loaded.api.sgemm, "cublasSgemm_v2");
  find(loaded.api.status_string, "cublasGetStatusString");
  loaded.ok = loaded.error.empty();
  return loaded;
}

}  // namespace

const CublasApi* LoadCublas(std::string* error) {
  static const Loaded* const loaded = new Loaded(Load());
  if (!loaded->ok) {
    *error = loaded->error;
    return nullptr;
  }
  return &loaded->api;
}

}  // namespace psgrid::cuda_internal
