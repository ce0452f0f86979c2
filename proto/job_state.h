// Facts about psgrid.v1.JobState shared by server, worker and client.
#ifndef PSGRID_PROTO_JOB_STATE_H_
#define PSGRID_PROTO_JOB_STATE_H_

#include "psgrid/v1/service.pb.h"

namespace psgrid {

// Completed, failed or stopped: the job will not change again.
inline bool IsEndedState(v1::JobState state) {
  return state == v1::JOB_STATE_COMPLETED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_STOPPED;
}

}  // namespace psgrid

#endif  // PSGRID_PROTO_JOB_STATE_H_
