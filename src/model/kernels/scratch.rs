//! Buffers that the fused CPU ops reuse from step to step. A training step of a small model
//! needs the same few megabytes of scratch every time (saved q, k, v, z and patterns, gradient
//! scratch); allocating them zeroed each step cost a noticeable share of the step in `memset`, on
//! the thread that the other cores wait for. A buffer taken here holds whatever its last user
//! left: every caller overwrites all of it before reading.

use std::sync::Mutex;

/// At most this many idle buffers are kept, and at most this many floats in all; the training
/// worker drops them all (`release`) when its run ends.
const MAX_BUFFERS: usize = 32;
const MAX_FLOATS: usize = 64 << 20;

/// Idle buffers, by length.
struct Idle(Mutex<Vec<Vec<f32>>>);

static IDLE: Idle = Idle::new();

impl Idle {
    const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<f32>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, len: usize) -> Vec<f32> {
        let mut idle = self.lock();
        match idle.iter().position(|b| b.len() == len) {
            Some(i) => idle.swap_remove(i),
            None => {
                drop(idle);
                vec![0f32; len]
            }
        }
    }

    fn give(&self, buffer: Vec<f32>) {
        if buffer.is_empty() {
            return;
        }
        let mut idle = self.lock();
        let held: usize = idle.iter().map(Vec::len).sum();
        if idle.len() < MAX_BUFFERS && held + buffer.len() <= MAX_FLOATS {
            idle.push(buffer);
        }
    }
}

/// A buffer of exactly `len` floats with unspecified contents.
pub fn take(len: usize) -> Vec<f32> {
    IDLE.take(len)
}

/// Returns a buffer for a later [`take`].
pub fn give(buffer: Vec<f32>) {
    IDLE.give(buffer)
}

/// Frees every idle buffer (at the end of a run, before memory goes back to the OS; not after
/// each evaluation, which would make the next step allocate them all again).
pub fn release() {
    IDLE.lock().clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a pool of its own: the process-wide one is shared with tests running alongside.
    #[test]
    fn a_given_buffer_of_the_same_length_comes_back_and_others_are_fresh() {
        let pool = Idle::new();
        let mut a = pool.take(1234);
        assert_eq!(a.len(), 1234);
        a[7] = 3.5;
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take(1234);
        assert_eq!((b.as_ptr(), b[7]), (ptr, 3.5), "the same buffer, as left");
        let c = pool.take(1234);
        assert_ne!(c.as_ptr(), ptr);
        assert!(c.iter().all(|&x| x == 0.0), "a new buffer is zeroed");
        pool.give(b);
        pool.give(c);
        assert_eq!(pool.lock().len(), 2);
        for _ in 0..MAX_BUFFERS {
            pool.give(vec![1.0; 8]);
        }
        assert_eq!(
            pool.lock().len(),
            MAX_BUFFERS,
            "at most MAX_BUFFERS are kept"
        );
        pool.lock().clear();
        pool.give(vec![0.0; MAX_FLOATS + 1]);
        assert!(pool.lock().is_empty(), "nor more than MAX_FLOATS");
    }

    #[test]
    fn release_drops_the_idle_buffers() {
        give(vec![0.0; 4321]);
        release();
        assert!(IDLE.lock().iter().all(|b| b.len() != 4321));
    }
}
