//! How many steps each slice of a run gets, where a run is driven in slices (the page's
//! engine: pause and stop are looked at between slices). A slice should take about a target
//! time, on the CPU (which computes as it is asked) as on WebGPU (where a step only queues
//! work, and the engine waits for the device one slice behind).

/// Slice sizes from two times per step: the host's (computing, or queueing, a slice) and the
/// device's (between two answers of the device, when the host had to wait for them).
pub struct SlicePace {
    target_ms: f64,
    slice: usize,
    last_answer: f64,
}

impl SlicePace {
    pub const MAX_SLICE: usize = 200;

    /// The first slice is one step: its time includes compiling the kernels.
    pub fn new(target_ms: f64, now: f64) -> Self {
        Self {
            target_ms,
            slice: 1,
            last_answer: now,
        }
    }

    /// The steps of the next slice.
    pub fn slice(&self) -> usize {
        self.slice
    }

    /// The device's time starts again from `now` (after a pause).
    pub fn restart(&mut self, now: f64) {
        self.last_answer = now;
    }

    /// The device answered at `now` for a slice of `steps` steps, after the host waited
    /// `waited_ms` for it. `host_ms_per_step` is the host's time per step for the slice it
    /// queued last; `evaluated` says whether either slice ended with an evaluation (whose
    /// read-back would count as steps), and then sizes nothing.
    ///
    /// Only where the host had to wait (a tenth of the time since the last answer or more)
    /// was the device busy all that time, so that the time is the device's. Where it did not
    /// wait, that time is the host's queueing of the next slice, and dividing it by this
    /// slice's steps made the sizes swing (a slice of 25 steps then 10, then 25…).
    pub fn answered(
        &mut self,
        now: f64,
        steps: usize,
        waited_ms: f64,
        host_ms_per_step: f64,
        evaluated: bool,
    ) {
        let since_last = now - self.last_answer;
        self.last_answer = now;
        if evaluated || steps == 0 {
            return;
        }
        let device_ms_per_step = if waited_ms >= 0.1 * since_last {
            since_last / steps as f64
        } else {
            0.0
        };
        let ms_per_step = host_ms_per_step.max(device_ms_per_step).max(0.01);
        let steps = (self.target_ms / ms_per_step).round() as usize;
        self.slice = steps.clamp(1, Self::MAX_SLICE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's loop on WebGPU, simulated: the host queues a slice at `host` ms a step, the
    /// device does a step in `device` ms once it is queued, and the host then waits for the
    /// slice before (the first slice it waits for itself). An answer reaches the host 1 ms
    /// after the device is done, and a turn ends with 1 ms of messages. Returns the sizes.
    fn webgpu(host: f64, device: f64, turns: usize) -> Vec<usize> {
        let mut now = 0.0;
        let mut device_free = 0.0f64;
        let mut pace = SlicePace::new(150.0, now);
        let mut in_flight: Option<(usize, f64)> = None;
        let mut sizes = Vec::new();
        for turn in 0..turns {
            let steps = pace.slice();
            sizes.push(steps);
            let queueing_from = now;
            now += host * steps as f64;
            // Step by step: the device cannot finish before the last step is queued.
            let done = (device_free.max(queueing_from) + device * steps as f64).max(now + device);
            device_free = done;
            let waited_for = if turn == 0 {
                Some((steps, done))
            } else {
                in_flight.replace((steps, done))
            };
            if let Some((steps_done, done)) = waited_for {
                let answer = now.max(done + 1.0);
                let waited = answer - now;
                now = answer;
                pace.answered(now, steps_done, waited, host, false);
            }
            now += 1.0;
        }
        sizes
    }

    /// The CPU: a slice is computed as it is asked, and answered at once.
    fn cpu(compute: f64, turns: usize) -> Vec<usize> {
        let mut now = 0.0;
        let mut pace = SlicePace::new(150.0, now);
        let mut sizes = Vec::new();
        for _ in 0..turns {
            let steps = pace.slice();
            sizes.push(steps);
            now += compute * steps as f64;
            pace.answered(now, steps, 0.0, compute, false);
            now += 1.0;
        }
        sizes
    }

    fn settled_within(sizes: &[usize], expected: f64, case: &str) {
        let last = &sizes[sizes.len() - 20..];
        assert!(
            last.iter()
                .all(|&s| (0.7 * expected..=1.3 * expected).contains(&(s as f64))),
            "{case}: expected about {expected} steps a slice, got {sizes:?}"
        );
    }

    #[test]
    fn slices_settle_near_the_target_whichever_side_is_slower() {
        // The host the slower (a real GPU): 150 / 6 steps.
        settled_within(&webgpu(6.0, 2.0, 60), 25.0, "host 6 ms, device 2 ms");
        // The device the slower (SwiftShader): 150 / 60 steps.
        settled_within(&webgpu(6.0, 60.0, 60), 2.5, "host 6 ms, device 60 ms");
        settled_within(&webgpu(0.5, 10.0, 60), 15.0, "host 0.5 ms, device 10 ms");
        settled_within(&cpu(25.0, 60), 6.0, "the CPU, 25 ms a step");
        // A fast step on both sides: the largest slice.
        assert_eq!(webgpu(0.2, 0.1, 60)[40..], [SlicePace::MAX_SLICE; 20]);
    }

    #[test]
    fn an_evaluation_sizes_nothing_and_a_pause_restarts_the_clock() {
        let mut pace = SlicePace::new(150.0, 0.0);
        pace.answered(5000.0, 1, 5000.0, 10.0, false);
        assert_eq!(pace.slice(), 1, "a first step that compiled the kernels");
        pace.answered(5150.0, 5, 140.0, 6.0, false);
        assert_eq!(pace.slice(), 5, "30 ms a step on the device");
        pace.answered(9000.0, 5, 3800.0, 6.0, true);
        assert_eq!(pace.slice(), 5, "an evaluation's read-back is not steps");
        pace.restart(60_000.0);
        pace.answered(60_150.0, 5, 140.0, 6.0, false);
        assert_eq!(pace.slice(), 5, "the pause is not the device's time");
    }
}
