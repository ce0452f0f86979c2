// How much a snapshot costs training, and how fast it reaches the disk, against the limits
// measured in the same run (issue: snapshots).
//
//   build/bench/snapshot_bench [--sizes-mb 10,100,1000] [--dir DIR] [--out FILE.json]
//
// For each size, a job whose momentum optimizer keeps parameters + momentum buffer (2 x the size of
// state) trains through Job::PushGradients, as the parameter server does:
//   stall      = (a step at which a periodic snapshot is taken) - (a step without), median of
//                3 pairs; against a memcpy of the whole state (the "one in-memory copy" bound).
//   throughput = state bytes / the time its files took (written, fsynced, renamed into place;
//                pruning excluded), median of 5; against a sequential write of the same bytes,
//                fsynced, in the same directory, median of 5 runs alternating with them.
// Prints a markdown table (ratios first) and writes the JSON.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/backend/cpu_backend.h"
#include "bench/bench_json.h"
#include "nlohmann/json.hpp"
#include "proto/job_spec_codec.h"
#include "server/job.h"

namespace psgrid {
namespace {

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

template <typename F>
double Time(F f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return Seconds(std::chrono::steady_clock::now() - start);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Sequential write of `bytes` in 8 MiB chunks, then fsync: seconds.
double DiskWrite(const std::string& dir, int64_t bytes) {
  const std::string path = dir + "/disk-probe.bin";
  std::vector<char> chunk(8 << 20, 1);
  const double t = Time([&] {
    const int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    for (int64_t done = 0; done < bytes;) {
      const int64_t n = std::min<int64_t>(chunk.size(), bytes - done);
      if (write(fd, chunk.data(), n) != n) break;
      done += n;
    }
    fsync(fd);
    close(fd);
  });
  std::filesystem::remove(path);
  return t;
}

constexpr int kPairs = 5;  // steps with and without a snapshot; medians over them

struct Row {
  int64_t state_bytes = 0;
  double stall = 0, memcpy_time = 0, write_time = 0, disk_time = 0;
};

Row Measure(int64_t megabytes, const std::string& dir) {
  // Parameters ~ H^2 floats: [dense H, tanh, dense H, tanh, dense 1] on 2 inputs.
  const int64_t h = static_cast<int64_t>(std::sqrt(megabytes * 1e6 / 4.0));
  const std::string csv = dir + "/bench.csv";
  std::ofstream(csv) << "a,b,y\n1,2,3\n2,3,4\n3,4,5\n4,5,6\n";
  auto spec = ParseJobSpec(absl::StrCat("model: {layers: [{type: dense, units: ", h,
                                        "}, {type: tanh}, {type: dense, units: ", h,
                                        "}, {type: tanh}, {type: dense, units: 1}], loss: mse}\n"
                                        "data: {dataset: csv, path: ", csv, "}\n"
                                        "training: {batch_size: 4, epochs: 100}\n"
                                        "optimizer: {type: momentum, learning_rate: 0.001, "
                                        "momentum: 0.9}\n"
                                        "snapshot: {every_steps: 2, keep_last: 1}\n"),
                           "bench");
  if (!spec.ok()) std::abort();
  CpuBackend backend;
  DataShape shape;
  shape.sample_shape = {2};
  shape.train_samples = 4;
  shape.output_width = 1;
  shape.regression = true;
  auto job = Job::Create("bench", *spec, shape, &backend);
  if (!job.ok()) {
    std::fprintf(stderr, "%s\n", job.status().ToString().c_str());
    std::abort();
  }
  const std::string job_dir = dir + "/job";
  std::filesystem::remove_all(job_dir);
  std::filesystem::create_directories(job_dir);
  (*job)->EnablePersistence(job_dir);
  auto worker = (*job)->AddWorker("bench");
  Tensor gradient({(*job)->arena_size()});
  for (int64_t i = 0; i < gradient.size(); ++i) gradient[i] = 1e-6f * static_cast<float>(i % 7);
  int64_t step = 0;
  auto push = [&] {
    GradientPush p;
    p.worker_id = worker->worker_id;
    p.step = step++;
    p.sample_count = 4;
    p.gradients = &gradient;
    return Time([&] { (void)(*job)->PushGradients(p); });
  };
  Row row;
  row.state_bytes = 2 * (*job)->arena_size() * static_cast<int64_t>(sizeof(float));
  std::vector<double> stalls, writes, disk;
  for (int i = 0; i < kPairs; ++i) {
    const double plain = push();     // version 2i+1: no snapshot
    const double with = push();      // version 2i+2: a periodic snapshot's copy
    stalls.push_back(with - plain);
    // An on-demand snapshot waits for that write, then writes its own: time its files.
    (void)(*job)->TakeSnapshot(absl::Now() + absl::Minutes(10));
    writes.push_back(absl::ToDoubleSeconds((*job)->LastSnapshotWriteTime()));
    disk.push_back(DiskWrite(dir, row.state_bytes));  // alternating with the snapshot writes
  }
  row.stall = Median(stalls);
  row.write_time = Median(writes);
  row.disk_time = Median(disk);
  Tensor a({row.state_bytes / 4}), b({row.state_bytes / 4});
  std::memset(a.data(), 1, row.state_bytes);
  std::memset(b.data(), 0, row.state_bytes);  // touched: no page faults in the timing
  row.memcpy_time = Time([&] { std::memcpy(b.data(), a.data(), row.state_bytes); });
  std::filesystem::remove_all(job_dir);
  return row;
}

}  // namespace
}  // namespace psgrid

int main(int argc, char** argv) {
  std::vector<int64_t> sizes = {10, 100, 1000};
  std::string dir = std::filesystem::temp_directory_path().string() + "/psgrid-snapshot-bench";
  std::string out = "bench/results/snapshot.json";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--sizes-mb") {
      sizes.clear();
      for (absl::string_view v : absl::StrSplit(value, ',')) {
        int64_t mb = 0;
        if (absl::SimpleAtoi(v, &mb) && mb > 0) sizes.push_back(mb);
      }
    } else if (flag == "--dir") {
      dir = value;
    } else if (flag == "--out") {
      out = value;
    }
  }
  std::filesystem::create_directories(dir);
  nlohmann::json rows = nlohmann::json::array();
  std::printf("| parameters | stall / memcpy of the state | write / disk (fsync) | stall | memcpy "
              "| write MB/s | disk MB/s |\n|---|---|---|---|---|---|---|\n");
  for (int64_t mb : sizes) {
    const psgrid::Row r = psgrid::Measure(mb, dir);
    const double mbytes = r.state_bytes / 1e6;
    std::printf("| %lld MB | **%.2fx** | **%.0f%%** | %.1f ms | %.1f ms | %.0f | %.0f |\n",
                static_cast<long long>(mb), r.stall / r.memcpy_time,
                100.0 * r.disk_time / r.write_time, 1e3 * r.stall, 1e3 * r.memcpy_time,
                mbytes / r.write_time, mbytes / r.disk_time);
    std::fflush(stdout);
    rows.push_back({{"parameters_mb", mb}, {"state_bytes", r.state_bytes},
                    {"stall_s", r.stall}, {"memcpy_s", r.memcpy_time},
                    {"write_s", r.write_time}, {"disk_write_fsync_s", r.disk_time},
                    {"stall_over_memcpy", r.stall / r.memcpy_time},
                    {"write_over_disk", r.disk_time / r.write_time}});
  }
  std::printf("\nState = parameters + momentum buffer. Stall: extra time of the step that takes "
              "a periodic snapshot (median of 5). Write: the files of an on-demand snapshot (written, "
              "fsynced, renamed).\n");
  const bool written =
      psgrid::WriteJsonResult(out, {{"benchmark", "snapshot"}, {"dir", dir}, {"rows", rows}});
  std::filesystem::remove_all(dir);
  return written ? 0 : 1;
}
