//! Heap tuning for the CPU backend.

/// Keeps freed heap memory in the process for reuse. burn-flex allocates a fresh buffer for
/// every op's output; with glibc's defaults the large ones become new memory mappings that are
/// page-faulted in and returned on free, which costs about a sixth of a CPU training step.
/// A no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// glibc's largest allowed mmap threshold on 64-bit targets.
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD: libc::c_int = 1 << 30;
        // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
        // exists and allocations made under the old parameters stay valid.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}
