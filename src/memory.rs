//! When freed memory goes back to the OS, and which thread pays for it.
//!
//! mimalloc gives freed pages back to the OS a while after they are freed, and the thread that
//! does it is whichever one next frees a page of its own: in the app, usually the UI thread. A
//! training step at the largest settings frees gigabytes, and handing them back (madvise, with
//! the page-table work and cross-CPU TLB flushes that come with it) then stalled frames
//! (benches/MEASUREMENTS.md). So nothing is given back by itself: the threads that made the garbage (the trainer
//! after an evaluation, a background job when it ends) give it back with `release_freed`.

/// mimalloc's `mi_option_purge_delay` (its position in mimalloc 3's option enum, which
/// libmimalloc-sys does not name).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc 3's default purge delay, in ms: what `PURGE_DELAY` reads before it is changed.
#[cfg(test)]
const DEFAULT_PURGE_DELAY_MS: i64 = 1000;

/// Long enough that freed memory is never purged on a timer (a delay of -1 would also stop
/// `release_freed`, which purges only what a timer has been set for).
const DEFERRED_PURGE_DELAY_MS: i64 = 24 * 3600 * 1000;

/// Freed memory stays with the process until a thread calls `release_freed`. Call it once, first
/// thing in `main`.
pub fn purge_only_on_request() {
    // SAFETY: mi_option_set takes no pointers; options are atomics read on each purge.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, DEFERRED_PURGE_DELAY_MS as _) };
}

/// The current purge delay in ms.
#[cfg(test)]
fn purge_delay_ms() -> i64 {
    // SAFETY: as above.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) as i64 }
}

/// Gives the memory freed so far, by any thread, back to the OS, on the calling thread.
pub fn release_freed() {
    // SAFETY: mi_collect takes no pointers; it walks mimalloc's own heap of the calling thread
    // and the process's arenas. Where mimalloc is not the global allocator (the tests), both
    // are empty.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_mimallocs_purge_delay() {
        // Unset, the option at PURGE_DELAY holds mimalloc 3's purge delay (unless
        // MIMALLOC_PURGE_DELAY is set), so the index names that option.
        assert_eq!(purge_delay_ms(), DEFAULT_PURGE_DELAY_MS);
        purge_only_on_request();
        assert_eq!(purge_delay_ms(), DEFERRED_PURGE_DELAY_MS);
        // SAFETY: as in purge_only_on_request.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, DEFAULT_PURGE_DELAY_MS as _) };
    }
}
