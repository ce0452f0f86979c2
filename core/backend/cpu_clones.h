// PSGRID_CPU_CLONES: compile a CPU kernel loop for AVX-512 and AVX2 besides the baseline
// (x86-64 SSE2); the loader picks the copy for the CPU once, at load time (GCC target_clones
// over ifunc). The backend files are built with -ffp-contract=off, so no copy contracts a
// multiply and an add into an FMA: every copy rounds each operation as the source reads and
// their results are bit-identical. Empty where the attribute is not supported.
#ifndef PSGRID_CORE_BACKEND_CPU_CLONES_H_
#define PSGRID_CORE_BACKEND_CPU_CLONES_H_

#if defined(__x86_64__) && defined(__ELF__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define PSGRID_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef PSGRID_CPU_CLONES
#define PSGRID_CPU_CLONES
#endif

#endif  // PSGRID_CORE_BACKEND_CPU_CLONES_H_
