//! Where a training step's time goes, phase by phase, for `toylens bench --profile`. Off unless
//! [`start`] is called on the training thread; each mark then synchronises the device, so that
//! a GPU's queued work is counted in the phase that queued it rather than wherever the host
//! next waits.

use std::cell::RefCell;
use std::time::Instant;

use candle_core::Device;

/// The phases of one step, in order, and the seconds each took.
pub type Phases = Vec<(&'static str, f64)>;

thread_local! {
    static CLOCK: RefCell<Option<(Instant, Phases)>> = const { RefCell::new(None) };
}

/// Starts timing a step on this thread.
pub fn start() {
    CLOCK.with(|c| *c.borrow_mut() = Some((Instant::now(), Vec::new())));
}

/// Ends the phase `name` once `device` has finished its queued work (nothing when not timing).
pub fn mark(name: &'static str, device: &Device) {
    CLOCK.with(|c| {
        if let Some((since, phases)) = c.borrow_mut().as_mut() {
            // A failed synchronisation surfaces at the step's next device call anyway.
            let _ = device.synchronize();
            phases.push((name, since.elapsed().as_secs_f64()));
            *since = Instant::now();
        }
    })
}

/// The phases timed since [`start`], and stops timing.
pub fn finish() -> Phases {
    CLOCK.with(|c| c.borrow_mut().take().map(|(_, p)| p).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_only_while_timing() {
        mark("ignored", &Device::Cpu);
        assert!(finish().is_empty());
        let outside = std::time::Instant::now();
        start();
        mark("a", &Device::Cpu);
        mark("b", &Device::Cpu);
        let phases = finish();
        let wall = outside.elapsed().as_secs_f64();
        assert_eq!(phases.iter().map(|p| p.0).collect::<Vec<_>>(), ["a", "b"]);
        // Each phase runs from the previous mark: together they fit inside the timed span.
        let total: f64 = phases.iter().map(|p| p.1).sum();
        assert!(total <= wall, "phases {total} s, span {wall} s");
        assert!(finish().is_empty());
        mark("after", &Device::Cpu);
        assert!(finish().is_empty());
    }
}
