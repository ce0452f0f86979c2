// Tensors, parameter arenas, optimizer state and pinned buffers in a device's memory, on
// FakeDeviceBackend (tests/fake_device_backend.h): allocation through the memory, the
// no-reallocation rule of Resize, copies in every direction, host element access refused, and
// the fake's own checks.
#include <cstring>
#include <memory>
#include <vector>

#include "core/backend/cpu_backend.h"
#include "core/optimizer.h"
#include "core/parameters.h"
#include "core/pinned_buffer.h"
#include "core/tensor.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "tests/fake_device_backend.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::FakeDeviceBackend;

std::vector<float> Iota(int64_t n, float start = 1.0f) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
  return v;
}

std::vector<float> HostValues(const Tensor& t) {
  const Tensor host = t.ToHost();
  return std::vector<float>(host.span().begin(), host.span().end());
}

TEST(DeviceTensor, OwnsZeroFilledDeviceStorageFreedWithIt) {
  FakeDeviceBackend device;
  {
    Tensor t({3, 4}, &device);
    EXPECT_TRUE(t.on_device());
    EXPECT_EQ(t.memory(), &device);
    EXPECT_TRUE(device.IsDevice(t.data(), 12 * sizeof(float)));
    EXPECT_EQ(device.live_allocations(), 1);
    EXPECT_EQ(HostValues(t), std::vector<float>(12, 0.0f));
  }
  EXPECT_EQ(device.live_allocations(), 0);
  EXPECT_EQ(device.violations(), 0);
}

TEST(DeviceTensor, HostMemoryGivesPlainHostTensors) {
  CpuBackend cpu;
  Tensor t({5}, &cpu);
  EXPECT_FALSE(t.on_device());
  EXPECT_EQ(t.memory(), nullptr);
  t[2] = 7.0f;  // host element access as ever
  EXPECT_EQ(t.span()[2], 7.0f);
  Tensor empty;
  empty.SetMemory(&cpu);
  EXPECT_EQ(empty.memory(), nullptr);
}

TEST(DeviceTensor, ResizeReallocatesOnlyToGrow) {
  FakeDeviceBackend device;
  Tensor t({8, 8}, &device);
  const float* first = t.data();
  t.Resize({4, 8});
  EXPECT_EQ(t.data(), first);
  t.Resize({8, 8});
  EXPECT_EQ(t.data(), first);
  EXPECT_EQ(device.live_allocations(), 1);
  t.Resize({9, 8});
  EXPECT_TRUE(device.IsDevice(t.data(), 72 * sizeof(float)));
  EXPECT_EQ(device.live_allocations(), 1);  // the old storage went back
}

TEST(DeviceTensor, CopiesGoThroughTheDeviceInEveryDirection) {
  FakeDeviceBackend device;
  const Tensor host({2, 3}, Iota(6));
  Tensor d({2, 3}, &device);
  d.CopyFrom(host);
  EXPECT_EQ(HostValues(d), Iota(6));

  const Tensor copy = d;  // a device copy of a device tensor
  EXPECT_TRUE(copy.on_device());
  EXPECT_NE(copy.data(), d.data());
  EXPECT_EQ(HostValues(copy), Iota(6));

  Tensor back({6});
  back.CopyFrom(copy);
  EXPECT_EQ(std::vector<float>(back.span().begin(), back.span().end()), Iota(6));

  d.Write(2, std::vector<float>{-1.0f, -2.0f});
  std::vector<float> out(3);
  d.Read(1, out);
  EXPECT_EQ(out, (std::vector<float>{2.0f, -1.0f, -2.0f}));

  d.SetZero();
  EXPECT_EQ(HostValues(d), std::vector<float>(6, 0.0f));
  EXPECT_EQ(device.violations(), 0);
}

TEST(DeviceTensor, SetMemoryMovesStorageAndContentsBothWays) {
  FakeDeviceBackend device;
  Tensor t({4}, Iota(4, 10.0f));
  t.SetMemory(&device);
  EXPECT_TRUE(t.on_device());
  EXPECT_EQ(t.shape(), Shape({4}));
  EXPECT_EQ(HostValues(t), Iota(4, 10.0f));
  t.SetMemory(nullptr);
  EXPECT_FALSE(t.on_device());
  EXPECT_EQ(t[3], 13.0f);
  EXPECT_EQ(device.live_allocations(), 0);

  Tensor later;  // empty: placed now, allocated on the device by its first Resize
  later.SetMemory(&device);
  later.Resize({16});
  EXPECT_TRUE(device.IsDevice(later.data(), 16 * sizeof(float)));
}

TEST(DeviceTensorDeathTest, HostElementAccessToADeviceTensorAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        FakeDeviceBackend device;
        Tensor t({4}, &device);
        const float v = t[0];
        (void)v;
      },
      "device tensor");
  EXPECT_DEATH(
      {
        FakeDeviceBackend device;
        Tensor t({4}, &device);
        (void)t.span();
      },
      "device tensor");
}

// The fake's own checks: a host pointer given to an operation, or a device pointer given as
// the host side of a copy, is a failure naming the operation.
TEST(FakeDeviceBackend, FlagsHostPointersAndCrossedCopies) {
  FakeDeviceBackend device;
  Tensor d({8}, &device);
  std::vector<float> host(8, 1.0f);
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    device.ReluForward(8, host.data(), d.data());         // x on the host
    device.ReluForward(9, d.data(), d.data());            // past the end of the allocation
    device.CopyToHost(d.data() + 4, d.data(), 4);         // dst on the device
    device.CopyToDevice(host.data(), host.data() + 4, 4);  // dst on the host
  }
  ASSERT_EQ(failures.size(), 5);
  EXPECT_THAT(failures.GetTestPartResult(0).message(), ::testing::HasSubstr("ReluForward"));
  EXPECT_THAT(failures.GetTestPartResult(2).message(), ::testing::HasSubstr("ReluForward"));
  EXPECT_THAT(failures.GetTestPartResult(3).message(), ::testing::HasSubstr("CopyToHost"));
  EXPECT_THAT(failures.GetTestPartResult(4).message(), ::testing::HasSubstr("CopyToDevice"));
  EXPECT_EQ(device.violations(), 5);
}

TEST(DeviceParameters, ArenasAndViewsLiveOnTheDevice) {
  FakeDeviceBackend device;
  ParameterSet params;
  params.Declare("0.weight", {3, 5}, ParamKind::kWeight, 5, 3);
  params.Declare("0.bias", {3}, ParamKind::kBias, 5, 3);
  params.Allocate(&device);
  EXPECT_EQ(params.memory(), &device);
  EXPECT_TRUE(params.values().on_device());
  EXPECT_TRUE(params.grads().on_device());
  const Tensor bias = params.Value(1);
  EXPECT_TRUE(bias.on_device());
  EXPECT_TRUE(device.IsDevice(bias.data(), 3 * sizeof(float)));
  EXPECT_TRUE(params.Grad(0).on_device());
  EXPECT_EQ(HostValues(params.values()), std::vector<float>(params.total_size(), 0.0f));
}

// The optimizer's state lives beside the device arena and the update equals the CPU's.
TEST(DeviceOptimizer, StateOnTheDeviceAndTheSameUpdate) {
  FakeDeviceBackend device;
  CpuBackend cpu;
  v1::OptimizerSpec spec;
  spec.set_type("adam");
  spec.set_learning_rate(0.01);
  constexpr int64_t kN = 37;
  auto on_device = CreateOptimizer(spec, kN, 0, &device);
  auto on_host = CreateOptimizer(spec, kN, 0, &cpu);
  ASSERT_OK(on_device);
  ASSERT_OK(on_host);
  for (auto& [name, state] : (*on_device)->State()) EXPECT_TRUE(state->on_device()) << name;
  for (auto& [name, state] : (*on_host)->State()) EXPECT_FALSE(state->on_device()) << name;
  Tensor w_host({kN}, Iota(kN)), g_host({kN}, Iota(kN, -5.0f));
  Tensor w({kN}, &device), g({kN}, &device);
  w.CopyFrom(w_host);
  g.CopyFrom(g_host);
  for (int step = 0; step < 3; ++step) {
    EXPECT_TRUE((*on_device)->Step(device, w, g, 0.5f));
    EXPECT_TRUE((*on_host)->Step(cpu, w_host, g_host, 0.5f));
  }
  const Tensor back = w.ToHost();
  EXPECT_EQ(0, std::memcmp(back.data(), w_host.data(), kN * sizeof(float)));
  EXPECT_EQ(device.violations(), 0);
}

TEST(PinnedBuffer, IsHostMemoryTheDeviceCopiesInto) {
  FakeDeviceBackend device;
  Tensor d({6}, &device);
  d.CopyFrom(Tensor({6}, Iota(6)));
  {
    PinnedBuffer staging(&device, 6);
    Tensor host = staging.View({6});
    EXPECT_FALSE(host.on_device());
    EXPECT_EQ(host[0], 0.0f);  // zero-filled
    d.Read(0, host.span());
    EXPECT_EQ(host[5], 6.0f);
    EXPECT_EQ(device.copies_to_pinned_host(), 1);
    PinnedBuffer moved = std::move(staging);
    EXPECT_EQ(moved.floats(), 6);
    EXPECT_EQ(staging.data(), nullptr);
  }
  EXPECT_EQ(device.violations(), 0);
}

}  // namespace
}  // namespace psgrid
