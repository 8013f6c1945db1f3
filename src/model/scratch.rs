//! Buffers that the fused CPU ops reuse from step to step. A training step of a small model
//! needs the same few megabytes of scratch every time (saved q, k, v, z and patterns, gradient
//! scratch); allocating them zeroed each step cost a tenth of the LM step in `memset` alone, on
//! the thread that the other cores wait for. A buffer taken here holds whatever its last user
//! left: every caller overwrites all of it before reading.

use std::sync::Mutex;

/// At most this many idle buffers are kept, and at most this many floats in all; the training
/// worker drops them all (`release`) when its run ends.
const MAX_BUFFERS: usize = 32;
const MAX_FLOATS: usize = 64 << 20;

static IDLE: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A buffer of exactly `len` floats with unspecified contents.
pub fn take(len: usize) -> Vec<f32> {
    let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
    match idle.iter().position(|b| b.len() == len) {
        Some(i) => idle.swap_remove(i),
        None => {
            drop(idle);
            vec![0f32; len]
        }
    }
}

/// Returns a buffer for a later [`take`].
pub fn give(buffer: Vec<f32>) {
    if buffer.is_empty() {
        return;
    }
    let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
    let held: usize = idle.iter().map(Vec::len).sum();
    if idle.len() < MAX_BUFFERS && held + buffer.len() <= MAX_FLOATS {
        idle.push(buffer);
    }
}

/// Frees every idle buffer (at the end of a run, before memory goes back to the OS; not after
/// each evaluation, which would make the next step allocate them all again).
pub fn release() {
    IDLE.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_of_the_same_length_comes_back_and_others_are_fresh() {
        let mut a = take(1234);
        assert_eq!(a.len(), 1234);
        a[7] = 3.5;
        let ptr = a.as_ptr();
        give(a);
        let b = take(1234);
        assert_eq!((b.as_ptr(), b[7]), (ptr, 3.5), "the same buffer, as left");
        let c = take(1234);
        assert_ne!(c.as_ptr(), ptr);
        assert!(c.iter().all(|&x| x == 0.0), "a new buffer is zeroed");
        give(b);
        give(c);
        release();
        let idle = IDLE.lock().unwrap();
        assert!(idle.iter().all(|b| b.len() != 1234), "release drops them");
    }
}
