//! How long the UI thread's frames take at the largest settings the side panel allows:
//! `cargo bench --bench frame_budget`.
//!
//! The real app runs in egui_kittest (no window, no rasteriser): every widget is set to the top of
//! its range (lowered only where the config would be refused), the model is reset to that size,
//! every tab is visited until its background views have delivered, a 64-token sequence is typed,
//! the scrubber moved, and a run started, paused, resumed and stopped. A frame here is the app's
//! own `logic()` + `ui()` (what `frame_times` records); the GPU or software rasteriser comes on top.

use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use toylens::app::{Action, Settings, Tab, ToylensApp};

/// As in the app's `main`: mimalloc, and candle on one thread unless RAYON_NUM_THREADS says.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bench {
    h: Harness<'static, ToylensApp>,
    /// (phase, frame ms) of every frame.
    frames: Vec<(String, f32)>,
}

impl Bench {
    fn step(&mut self, phase: &str) {
        self.h.step();
        if let Some(&ms) = self.h.state().frame_times.recent_ms.back() {
            self.frames.push((phase.to_string(), ms));
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
    };
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
    b.step("reset");
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

    let mut phases: Vec<String> = Vec::new();
    for (p, _) in &b.frames {
        if !phases.contains(p) {
            phases.push(p.clone());
        }
    }
    println!("\n| phase | frames | median ms | slowest ms |\n|---|---|---|---|");
    for p in &phases {
        let mut ms: Vec<f32> = b
            .frames
            .iter()
            .filter(|(q, _)| q == p)
            .map(|f| f.1)
            .collect();
        ms.sort_by(f32::total_cmp);
        println!(
            "| {p} | {} | {:.1} | {:.1} |",
            ms.len(),
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        );
    }
    let worst = b
        .frames
        .iter()
        .max_by(|a, c| a.1.total_cmp(&c.1))
        .expect("frames");
    println!("\nslowest frame: {:.1} ms ({})", worst.1, worst.0);
}
