//! Giving freed heap back to the system.
//!
//! glibc keeps memory that was freed on the thread that used it, in that thread's arena; a
//! large export formats its batches (and Parquet its row groups) on one of tokio's blocking
//! threads, and without a trim each such thread would keep its peak for good (measured: about
//! 50 MiB more resident after every Parquet export of a million events, until every arena held
//! its own copy). `malloc_trim(0)` returns it (a few milliseconds on a heap of hundreds of MB,
//! BENCHMARKS.md). Other allocators and C libraries: nothing to do.

/// Returns freed heap to the system (glibc's `malloc_trim(0)`). Blocking: call it from a
/// blocking thread.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only walks glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Exports that produced at least this many bytes trim when they end.
pub const TRIM_AFTER_BYTES: u64 = 16 * 1024 * 1024;
