// The shared-memory step doorbell: requests and answers cross between two mappings of one
// segment (as between a worker and its server), errors keep their code, and waits end at
// their deadlines.
#include "core/step_doorbell.h"

#include <unistd.h>

#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

std::string UniqueName(const std::string& what) {
  static int counter = 0;
  return absl::StrCat("/psgrid-test-", getpid(), "-", what, "-", ++counter);
}

TEST(StepDoorbellTest, RequestsAndAnswersCrossBetweenTwoMappings) {
  auto server = StepDoorbell::Create(UniqueName("bell"));
  ASSERT_OK(server);
  auto worker = StepDoorbell::Open((*server)->name());
  ASSERT_OK(worker);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  uint32_t seen = (*server)->LatestRequest();  // before the worker rings
  std::thread serving([&] {
    for (int i = 0; i < 100; ++i) {
      std::optional<DoorbellRequest> r = (*server)->AwaitRequest(seen, deadline);
      if (!r.has_value()) return;
      seen = r->seq;
      DoorbellAnswer answer;
      answer.version = r->step + 1;
      answer.state = static_cast<int32_t>(r->sample_count);
      if (r->step == 50) answer.status = absl::FailedPreconditionError("step 50 is refused");
      (*server)->Answer(r->seq, answer);
    }
  });
  for (int step = 0; step < 100; ++step) {
    DoorbellRequest request;
    request.step = step;
    request.sample_count = 2 * step;
    request.loss_sum = 0.5 * step;
    const uint32_t seq = (*worker)->Ring(request);
    auto answer = (*worker)->AwaitAnswer(seq, deadline);
    EXPECT_OK(answer);
    if (!answer.ok()) break;
    if (step == 50) {
      EXPECT_STATUS(answer->status, absl::StatusCode::kFailedPrecondition, "step 50 is refused");
    } else {
      EXPECT_OK(answer->status);
    }
    EXPECT_EQ(answer->version, step + 1);
    EXPECT_EQ(answer->state, 2 * step);
  }
  serving.join();
}

TEST(StepDoorbellTest, WaitsEndAtTheirDeadlines) {
  auto server = StepDoorbell::Create(UniqueName("bell"));
  ASSERT_OK(server);
  auto worker = StepDoorbell::Open((*server)->name());
  ASSERT_OK(worker);
  const absl::Time start = absl::Now();
  EXPECT_FALSE((*server)->AwaitRequest((*server)->LatestRequest(), start + absl::Milliseconds(50))
                   .has_value());
  const uint32_t seq = (*worker)->Ring(DoorbellRequest());
  EXPECT_STATUS((*worker)->AwaitAnswer(seq, absl::Now() + absl::Milliseconds(50)),
                absl::StatusCode::kDeadlineExceeded, "no answer");
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // The request is still there for a server that looks later.
  auto request = (*server)->AwaitRequest(seq - 1, absl::Now());
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->seq, seq);
}

TEST(StepDoorbellTest, ALongErrorMessageIsCutNotOverrun) {
  auto server = StepDoorbell::Create(UniqueName("bell"));
  ASSERT_OK(server);
  auto worker = StepDoorbell::Open((*server)->name());
  ASSERT_OK(worker);
  const uint32_t seq = (*worker)->Ring(DoorbellRequest());
  DoorbellAnswer answer;
  answer.status = absl::InvalidArgumentError(std::string(5000, 'x'));
  (*server)->Answer(seq, answer);
  auto got = (*worker)->AwaitAnswer(seq, absl::Now() + absl::Seconds(5));
  ASSERT_OK(got);
  EXPECT_EQ(got->status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_GT(got->status.message().size(), 500u);
  EXPECT_LT(got->status.message().size(), 5000u);
}

TEST(StepDoorbellTest, OpeningWhatIsNotADoorbellFailsNamingIt) {
  const std::string name = UniqueName("not-a-bell");
  auto region = SharedRegion::Create(name, 1024);  // zero-filled: no magic
  ASSERT_OK(region);
  EXPECT_STATUS(StepDoorbell::Open(name), absl::StatusCode::kFailedPrecondition, name);
  EXPECT_STATUS(StepDoorbell::Open(UniqueName("missing")), absl::StatusCode::kNotFound,
                "cannot open shared memory");
}

}  // namespace
}  // namespace psgrid
