//! rco-heap: hands the heap memory a process has freed back to the operating system.
//!
//! glibc's malloc keeps freed memory inside the process for reuse. A training step of a
//! 0.5B-parameter critic allocates and frees gigabytes of tensors (weights, gradients,
//! AdamW moments, activations), and those freed chunks, fragmented across the allocator's
//! arenas, stay resident: measured on `configs/paper/code.toml`'s DPCO training, 20.0 GB
//! resident at step 6 of 8, 12.1 GB right after `malloc_trim(0)`. A second training in the
//! same process (`rco run` trains RCO, then each baseline) added its own working set to the
//! first one's leftovers and was killed for memory on a 24 GB machine.
//!
//! [`release_free_memory`] is called between those phases. It is the only `unsafe` in the
//! workspace, a foreign call with no preconditions, kept in a crate of its own so the other
//! crates keep `unsafe_code = "forbid"`.

/// Returns the heap memory the allocator holds free to the operating system, where the
/// allocator keeps it (glibc: `malloc_trim(0)`, which releases free pages in every arena,
/// not only at the top of the heap). True if memory was released. Elsewhere (musl, macOS,
/// Windows) a no-op that returns false. Takes tens to hundreds of milliseconds after a
/// training step; the memory it returns is faulted in again when next allocated.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` has no preconditions: it takes the allocator's own locks
        // and only returns pages of chunks that are already free.
        #[allow(unsafe_code)]
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::release_free_memory;

    /// Freed blocks below glibc's mmap threshold stay in the heap until trimmed. Every
    /// other block is freed, so the holes cannot merge into the top of the heap (which
    /// `free` itself would give back); the trim releases their pages.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_heap_blocks_between_live_ones_are_released_on_glibc() {
        // 1024 blocks of 64 KB: under the default mmap threshold (128 KB), so they come
        // from the heap.
        let mut blocks: Vec<Option<Vec<u8>>> =
            (0..1024).map(|i| Some(vec![i as u8; 64 * 1024])).collect();
        for block in blocks.iter_mut().step_by(2) {
            *block = None;
        }
        let before = resident_kb();
        assert!(
            release_free_memory(),
            "malloc_trim released nothing after 32 MB of heap blocks between live ones were freed"
        );
        let after = resident_kb();
        // Most of the 32 MB freed leaves the resident set (each hole keeps its first page,
        // the chunk header's).
        assert!(
            before.saturating_sub(after) >= 16 * 1024,
            "resident {before} kB before the trim, {after} kB after"
        );
        // The live blocks were not touched.
        for (i, block) in blocks.iter().enumerate().skip(1).step_by(2) {
            let block = block.as_ref().map(|b| (b[0], b[b.len() - 1]));
            assert_eq!(block, Some((i as u8, i as u8)));
        }
    }

    /// This process's resident set size in kB, from `/proc/self/status`.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn resident_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line in /proc/self/status")
    }
}
