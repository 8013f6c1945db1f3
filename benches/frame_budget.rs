//! How long the UI thread's frames take at the largest settings the side panel allows:
//! `cargo bench --bench frame_budget`.
//!
//! The real app runs in egui_kittest (no window, no rasteriser): every widget is set to the top of
//! its range (lowered only where the config would be refused), the model is reset to that size,
//! every tab is visited until its background views have delivered, a 64-token sequence is typed,
//! the scrubber moved, and a run started, paused, resumed and stopped. A frame here is the app's
//! own `logic()` + `ui()` (what `frame_times` records); the GPU or software rasteriser comes on top.

mod common;

use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use toylens::app::{Action, Settings, Tab, ToylensApp};

/// As in the app's `main`: mimalloc (purging only on request), and candle on one thread unless
/// RAYON_NUM_THREADS says.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bench {
    h: Harness<'static, ToylensApp>,
    /// (phase, frame ms) of every frame.
    frames: Vec<(String, f32)>,
    /// When each frame of `frames` ran.
    spans: Vec<(Instant, Instant)>,
}

impl Bench {
    fn step(&mut self, phase: &str) {
        let start = Instant::now();
        self.h.step();
        if let Some(&ms) = self.h.state().frame_times.recent_ms.back() {
            self.frames.push((phase.to_string(), ms));
            self.spans.push((start, Instant::now()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }

    /// Steps until `done` or `limit` passes.
    fn until(&mut self, phase: &str, limit: Duration, done: impl Fn(&ToylensApp) -> bool) -> bool {
        let start = Instant::now();
        while !done(self.h.state()) {
            if start.elapsed() > limit {
                return false;
            }
            self.step(phase);
        }
        self.step(phase);
        true
    }

    fn set(&mut self, label: &str, value: f64) {
        let node = self
            .h
            .query_all_by_role_and_label(Role::SpinButton, label)
            .next()
            .unwrap_or_else(|| panic!("no field {label}"));
        node.set_value_accesskit(value);
        self.step("settings");
    }

    fn click(&mut self, label: &str) {
        if let Some(n) = self
            .h
            .query_all_by_role_and_label(Role::Button, label)
            .find(|n| !n.accesskit_node().is_disabled())
        {
            n.click_accesskit();
        }
        self.step(label);
    }
}

fn main() {
    // RUST_LOG=toylens=debug shows where each frame over 50 ms went.
    env_logger::init();
    toylens::memory::purge_only_on_request();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: first thing in main, before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    let h = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(|cc| {
            let mut app = ToylensApp::with_settings(cc.egui_ctx.clone(), Settings::default());
            app.dialogs_enabled = false;
            app
        });
    let mut b = Bench {
        h,
        frames: Vec::new(),
        spans: Vec::new(),
    };
    let steal = StealSampler::start();
    b.step("start");
    for (label, value) in [
        ("Sequence length", 64.0),
        ("Noise tokens up to", 999.0),
        ("Heads", 16.0),
        ("d_head", 64.0),
        ("Init range", 1.0),
        ("Signal probability", 1.0),
        ("Learning rate", 10.0),
        ("Weight decay", 1.0),
        ("Epochs", 1_000_000.0),
    ] {
        b.set(label, value);
    }
    // The largest data sets and batch the config accepts (the widgets go further).
    let mut samples = 10_000_000.0;
    loop {
        b.set("Train samples", samples);
        b.set("Validation samples", samples.min(1_000_000.0));
        if b.h
            .state()
            .config_error()
            .is_none_or(|e| !e.contains("fit in memory"))
        {
            break;
        }
        samples = (samples * 0.9f64).floor();
    }
    // FRAME_BUDGET_BATCH caps the batch (default: the largest the config accepts).
    let mut batch: f64 = std::env::var("FRAME_BUDGET_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000.0);
    loop {
        b.set("Batch size", batch);
        match b.h.state().config_error() {
            Some(e) if e.contains("batch_size") => batch = (batch * 0.8f64).floor(),
            Some(e) => panic!("the largest settings are refused: {e}"),
            None => break,
        }
    }
    let cfg = b.h.state().settings.config.clone();
    println!(
        "largest settings: vocab {}, seq_len {}, {} heads of {}, train {} / val {} samples, batch {}",
        cfg.model.d_vocab,
        cfg.task.seq_len(),
        cfg.model.n_heads,
        cfg.model.d_head,
        cfg.task.skip_trigram().unwrap().train_size,
        cfg.task.skip_trigram().unwrap().val_size,
        cfg.train.batch_size
    );
    // The side panel has scrolled down to the fields; the buttons' actions are applied directly.
    b.h.state_mut().apply(Action::Reset);
    b.until("reset", Duration::from_secs(60), |app| !app.resetting);
    assert_eq!(
        b.h.state().session.config.model.d_vocab,
        1000,
        "reset did not apply: {:?}",
        b.h.state().status
    );

    for tab in Tab::ALL {
        b.h.state_mut().settings.tab = tab;
        let phase = format!("{tab:?} tab");
        let settled = b.until(&phase, Duration::from_secs(600), |app| !app.views_busy());
        // A few more frames with the result on screen.
        for _ in 0..20 {
            b.step(&phase);
        }
        println!("{phase}: views settled: {settled}");
    }
    b.h.state_mut().settings.tab = Tab::Inspect;
    let long: Vec<String> = (0..64).map(|i| ((i * 37) % 1000).to_string()).collect();
    b.h.state_mut().settings.sequence = long.join(" ");
    for _ in 0..10 {
        b.step("typing 64 tokens");
    }
    b.click("Random signal");
    b.click("Random noise");

    b.h.state_mut().apply(Action::Train);
    b.step("train clicked");
    b.until("training", Duration::from_secs(120), |app| {
        app.session
            .run
            .as_ref()
            .is_some_and(|r| r.last_step.is_some())
    });
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        b.step("training");
    }
    b.h.state_mut().apply(Action::Pause);
    b.step("pause");
    b.h.state_mut().apply(Action::Resume);
    b.step("resume");
    b.h.state_mut().apply(Action::Stop);
    b.until("stopping", Duration::from_secs(120), |app| {
        !app.session.is_training()
    });
    for tab in Tab::ALL {
        b.h.state_mut().settings.tab = tab;
        let phase = format!("{tab:?} after training");
        b.step(&phase);
        let a = &b.h.state().analysis;
        let running = format!(
            "mean z {}, evaluation {}, circuits {}, data {}",
            a.mean_z.is_running(),
            a.exhaustive.is_running(),
            a.circuits.is_running(),
            a.data.is_running()
        );
        let started = Instant::now();
        b.until(&phase, Duration::from_secs(600), |app| !app.views_busy());
        println!(
            "{phase}: views settled in {:.1} s (running at the switch: {running})",
            started.elapsed().as_secs_f64()
        );
    }

    // The largest modular-addition grid the side panel allows: 2048² pairs.
    {
        let cfg = &mut b.h.state_mut().settings.config;
        cfg.task =
            toylens::task::TaskConfig::ModularAddition(toylens::task::ModularAdditionConfig {
                p: toylens::task::MAX_P,
                train_frac: 0.3,
            });
        cfg.fit_model_to_task();
    }
    b.h.state_mut().settings.tab = Tab::Data;
    let phase = format!("Data tab, p = {}", toylens::task::MAX_P);
    b.until(&phase, Duration::from_secs(120), |app| !app.views_busy());
    for _ in 0..20 {
        b.step(&phase);
    }

    common::print_phases(&b.frames);
    let worst = b
        .frames
        .iter()
        .max_by(|a, c| a.1.total_cmp(&c.1))
        .expect("frames");
    println!("\nslowest frame: {:.1} ms ({})", worst.1, worst.0);

    // On a virtual machine the host can stop the vCPUs ("steal"): a frame that ran while it did
    // took longer for reasons outside the app.
    let samples = steal.stop();
    let slow: Vec<(usize, f64)> = (0..b.frames.len())
        .filter(|&i| b.frames[i].1 > 50.0)
        .map(|i| (i, stolen_ms(&samples, b.spans[i])))
        .collect();
    let clean = (0..b.frames.len())
        .filter(|&i| stolen_ms(&samples, b.spans[i]) == 0.0)
        .max_by(|&x, &y| b.frames[x].1.total_cmp(&b.frames[y].1));
    println!(
        "host steal over the run: {:.0} ms of CPU; frames over 50 ms: {}, of which {} ran while \
         the host stole CPU",
        samples.last().map_or(0.0, |s| s.1) - samples.first().map_or(0.0, |s| s.1),
        slow.len(),
        slow.iter().filter(|(_, ms)| *ms > 0.0).count()
    );
    for (i, ms) in &slow {
        println!(
            "  {:.1} ms ({}): {ms:.0} ms stolen from the machine meanwhile",
            b.frames[*i].1, b.frames[*i].0
        );
    }
    if let Some(i) = clean {
        println!(
            "slowest frame with no steal during it: {:.1} ms ({})",
            b.frames[i].1, b.frames[i].0
        );
    }
}

/// Samples the machine's total steal time (`/proc/stat`, all CPUs) every 20 ms.
struct StealSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Instant, f64)>>,
}

impl StealSampler {
    fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(ms) = steal_ms() {
                    samples.push((Instant::now(), ms));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        });
        Self { stop, thread }
    }

    fn stop(self) -> Vec<(Instant, f64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Steal time of all CPUs so far, in ms (`/proc/stat` counts in 10 ms ticks); `None` off Linux.
fn steal_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?;
    let steal: f64 = cpu.split_whitespace().nth(8)?.parse().ok()?;
    Some(steal * 10.0)
}

/// Steal that the samples around `span` saw grow (a sample's 10 ms ticks widen the window).
fn stolen_ms(samples: &[(Instant, f64)], span: (Instant, Instant)) -> f64 {
    let before = samples.iter().rev().find(|s| s.0 <= span.0);
    let after = samples.iter().find(|s| s.0 >= span.1);
    match (before, after) {
        (Some(b), Some(a)) => a.1 - b.1,
        _ => 0.0,
    }
}
