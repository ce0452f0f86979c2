#include "core/step_doorbell.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/strings/str_cat.h"

namespace psgrid {
namespace {

constexpr uint32_t kMagic = 0x42445350;  // "PSDB"
constexpr uint32_t kLayoutVersion = 1;
constexpr size_t kMessageBytes = 1024;
// How long a worker polls for its answer before it sleeps on the futex.
constexpr absl::Duration kSpinTime = absl::Microseconds(300);

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Sleeps while *word == expected, at most `timeout` (woken by FutexWake, or spuriously).
// Shared (not FUTEX_PRIVATE): the other side is another process.
void FutexWait(uint32_t* word, uint32_t expected, absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) return;
  const timespec ts = absl::ToTimespec(timeout);
  syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void FutexWake(uint32_t* word) { syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0); }

template <typename T>
std::atomic_ref<T> Relaxed(T& field) {
  return std::atomic_ref<T>(field);
}

uint32_t Load(uint32_t* word) { return std::atomic_ref<uint32_t>(*word).load(std::memory_order_acquire); }
void Store(uint32_t* word, uint32_t value) {
  std::atomic_ref<uint32_t>(*word).store(value, std::memory_order_release);
}

// Waits until *word != unwanted, or the deadline passes; returns the last value seen.
uint32_t AwaitChange(uint32_t* word, uint32_t unwanted, absl::Time deadline) {
  uint32_t now_value = Load(word);
  while (now_value == unwanted) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    FutexWait(word, unwanted, left);
    now_value = Load(word);
  }
  return now_value;
}

}  // namespace

// Requests and answers sit on separate cache lines: each side writes only its own.
struct StepDoorbell::Block {
  uint32_t magic;
  uint32_t layout_version;
  alignas(64) uint32_t request_seq;  // futex word, written by the worker
  uint32_t write_guard;              // odd while the worker writes the fields below
  uint32_t request_id;               // the request_seq these fields belong to
  uint32_t request_kind;
  int64_t step;
  int64_t sample_count;
  double loss_sum;
  int64_t correct;
  int64_t ready_from;
  alignas(64) uint32_t answer_seq;  // futex word, written by the server
  int32_t code;
  int32_t state;
  int64_t version;
  char message[kMessageBytes];
};
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free);

int64_t StepDoorbell::BlockFloats() {
  return static_cast<int64_t>((sizeof(Block) + sizeof(float) - 1) / sizeof(float));
}

StepDoorbell::StepDoorbell(std::unique_ptr<SharedRegion> region) : region_(std::move(region)) {}
StepDoorbell::~StepDoorbell() = default;

StepDoorbell::Block* StepDoorbell::block() const {
  return reinterpret_cast<Block*>(region_->data());
}

absl::StatusOr<std::unique_ptr<StepDoorbell>> StepDoorbell::Create(const std::string& name) {
  absl::StatusOr<std::unique_ptr<SharedRegion>> region = SharedRegion::Create(name, BlockFloats());
  if (!region.ok()) return region.status();
  std::unique_ptr<StepDoorbell> bell(new StepDoorbell(std::move(*region)));
  Block* b = bell->block();  // zero-filled by the system
  b->layout_version = kLayoutVersion;
  Store(&b->magic, kMagic);
  return bell;
}

absl::StatusOr<std::unique_ptr<StepDoorbell>> StepDoorbell::Open(const std::string& name) {
  absl::StatusOr<std::unique_ptr<SharedRegion>> region = SharedRegion::Open(name, BlockFloats());
  if (!region.ok()) return region.status();
  std::unique_ptr<StepDoorbell> bell(new StepDoorbell(std::move(*region)));
  Block* b = bell->block();
  if (Load(&b->magic) != kMagic || b->layout_version != kLayoutVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("shared memory ", name, " is not a psgrid step doorbell of layout version ",
                     kLayoutVersion));
  }
  return bell;
}

uint32_t StepDoorbell::Ring(const DoorbellRequest& request) {
  Block* b = block();
  const uint32_t seq = Load(&b->request_seq) + 1;
  const uint32_t guard = Load(&b->write_guard);
  Relaxed(b->write_guard) = guard + 1;
  std::atomic_thread_fence(std::memory_order_release);
  Relaxed(b->request_id) = seq;
  Relaxed(b->request_kind) = static_cast<uint32_t>(request.kind);
  Relaxed(b->step) = request.step;
  Relaxed(b->sample_count) = request.sample_count;
  Relaxed(b->loss_sum) = request.loss_sum;
  Relaxed(b->correct) = request.correct;
  Relaxed(b->ready_from) = request.ready_from;
  Store(&b->write_guard, guard + 2);
  Store(&b->request_seq, seq);
  FutexWake(&b->request_seq);
  return seq;
}

absl::StatusOr<DoorbellAnswer> StepDoorbell::AwaitAnswer(uint32_t seq, absl::Time deadline) {
  Block* b = block();
  uint32_t answered = Load(&b->answer_seq);
  // The answer usually comes within a server update (tens to hundreds of microseconds):
  // polling that long answers faster than a futex wake-up, which costs about as much again.
  if (answered != seq) {
    const absl::Time spin_end = std::min(deadline, absl::Now() + kSpinTime);
    do {
      for (int i = 0; i < 32 && answered != seq; ++i) {
        CpuRelax();
        answered = Load(&b->answer_seq);
      }
    } while (answered != seq && absl::Now() < spin_end);
  }
  while (answered != seq) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no answer to step request ", seq, " on ", name()));
    }
    answered = AwaitChange(&b->answer_seq, answered, deadline);
  }
  DoorbellAnswer answer;
  answer.version = b->version;
  answer.state = b->state;
  const int32_t code = b->code;
  if (code != 0) {
    const auto status_code = code > 0 && code <= static_cast<int32_t>(absl::StatusCode::kUnauthenticated)
                                 ? static_cast<absl::StatusCode>(code)
                                 : absl::StatusCode::kInternal;
    answer.status = absl::Status(status_code, std::string(b->message, strnlen(b->message, kMessageBytes)));
  }
  return answer;
}

uint32_t StepDoorbell::LatestRequest() const {
  return std::atomic_ref<uint32_t>(block()->request_seq).load(std::memory_order_acquire);
}

std::optional<DoorbellRequest> StepDoorbell::AwaitRequest(uint32_t seen, absl::Time deadline,
                                                          absl::Duration spin) {
  Block* b = block();
  uint32_t seq = Load(&b->request_seq);
  if (seq == seen && spin > absl::ZeroDuration()) {
    const absl::Time spin_end = std::min(deadline, absl::Now() + spin);
    do {
      for (int i = 0; i < 32 && seq == seen; ++i) {
        CpuRelax();
        seq = Load(&b->request_seq);
      }
    } while (seq == seen && absl::Now() < spin_end);
  }
  if (seq == seen) seq = AwaitChange(&b->request_seq, seen, deadline);
  if (seq == seen) return std::nullopt;
  // A consistent copy of the fields: retried while the worker is writing newer ones. A worker
  // that never finishes writing only stalls its own doorbell, until the deadline.
  DoorbellRequest r;
  while (true) {
    const uint32_t guard = Load(&b->write_guard);
    if (guard % 2 == 0) {
      r.seq = Relaxed(b->request_id).load(std::memory_order_relaxed);
      const uint32_t kind = Relaxed(b->request_kind).load(std::memory_order_relaxed);
      r.kind = kind == static_cast<uint32_t>(DoorbellRequestKind::kClose)  ? DoorbellRequestKind::kClose
               : kind == static_cast<uint32_t>(DoorbellRequestKind::kPart) ? DoorbellRequestKind::kPart
                                                                            : DoorbellRequestKind::kPush;
      r.step = Relaxed(b->step).load(std::memory_order_relaxed);
      r.sample_count = Relaxed(b->sample_count).load(std::memory_order_relaxed);
      r.loss_sum = Relaxed(b->loss_sum).load(std::memory_order_relaxed);
      r.correct = Relaxed(b->correct).load(std::memory_order_relaxed);
      r.ready_from = Relaxed(b->ready_from).load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (Relaxed(b->write_guard).load(std::memory_order_relaxed) == guard) break;
    }
    if (absl::Now() >= deadline) return std::nullopt;
    CpuRelax();
  }
  // The fields may belong to a request newer than request_seq said (the newest wins); ids that
  // are not newer than `seen` can only be scribbles: answer request_seq's number then.
  if (static_cast<int32_t>(r.seq - seen) <= 0) r.seq = seq;
  return r;
}

void StepDoorbell::Answer(uint32_t seq, const DoorbellAnswer& answer) {
  Block* b = block();
  b->version = answer.version;
  b->state = answer.state;
  b->code = static_cast<int32_t>(answer.status.code());
  const absl::string_view message = answer.status.message();
  const size_t n = std::min(message.size(), kMessageBytes - 1);
  std::memcpy(b->message, message.data(), n);
  b->message[n] = '\0';
  Store(&b->answer_seq, seq);
  FutexWake(&b->answer_seq);
}

}  // namespace psgrid
