// Failpoints: places in the crash-safe write paths where a test can have the process killed
// (SIGKILL, as by kill -9) to check that what is on disk stays consistent.
//
//   PSGRID_FAILPOINT=snapshot.before_rename psgrid-server ...   // dies at that point
//
// Names: snapshot.after_data (tensors.bin written and fsynced), snapshot.after_manifest
// (manifest.json written), snapshot.before_rename (the directory synced, not yet renamed into
// place), snapshot.during_prune (an old snapshot renamed away, its files not yet removed).
// Unset, a failpoint costs one getenv. Thread-safe.
#ifndef PSGRID_CORE_IO_FAILPOINT_H_
#define PSGRID_CORE_IO_FAILPOINT_H_

namespace psgrid {

inline constexpr char kFailpointVariable[] = "PSGRID_FAILPOINT";

// Kills this process with SIGKILL when PSGRID_FAILPOINT names `name`.
void Failpoint(const char* name);

}  // namespace psgrid

#endif  // PSGRID_CORE_IO_FAILPOINT_H_
