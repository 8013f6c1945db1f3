//! How long the UI thread's frames take in the Superposition workspace:
//! `cargo bench --bench frame_budget_superposition`.
//!
//! The real app in egui_kittest (no window, no rasteriser): the geometry preset opened and
//! trained (200 features into 20, 20 instances) with every view on screen, its snapshots played
//! back, then the phase preset, then the largest model the form accepts (whose per-feature
//! geometry is past the budget: norms and D* only). A frame here is the app's own `logic()` +
//! `ui()`; the GPU or software rasteriser comes on top.

mod common;

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use toylens::app::superposition::TmsAction;
use toylens::app::{Action, Settings, ToylensApp};
use toylens::superposition::TmsPreset;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut h = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(|cc| {
            let mut app = ToylensApp::with_settings(cc.egui_ctx.clone(), Settings::default());
            app.dialogs_enabled = false;
            app
        });
    let mut frames: Vec<(String, f32)> = Vec::new();
    let mut step = |h: &mut Harness<'static, ToylensApp>, phase: &str| {
        h.step();
        if let Some(&ms) = h.state().frame_times.recent_ms.back() {
            frames.push((phase.to_string(), ms));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let tms = |a: TmsAction| Action::Tms(a);
    step(&mut h, "start");
    h.state_mut()
        .apply(tms(TmsAction::Preset(TmsPreset::Geometry)));
    for _ in 0..10 {
        step(&mut h, "geometry preset, untrained");
    }
    let mut draft = h.state().tms.as_ref().unwrap().draft.clone();
    draft.train.steps = 3000;
    h.state_mut().apply(tms(TmsAction::Edit(Box::new(draft))));
    h.state_mut().apply(tms(TmsAction::Train));
    while h.state().tms.as_ref().unwrap().is_training() {
        step(&mut h, "geometry, training");
    }
    h.state_mut().apply(tms(TmsAction::Select(7)));
    h.state_mut().apply(tms(TmsAction::Play(true)));
    while h.state().tms.as_ref().unwrap().playing.is_some() {
        step(&mut h, "geometry, playing back");
    }
    h.state_mut()
        .apply(tms(TmsAction::Preset(TmsPreset::Phase)));
    for _ in 0..20 {
        step(&mut h, "phase preset");
    }
    // The largest model the form accepts: 1024 instances of 48 828 features into 1.
    let mut draft = h.state().tms.as_ref().unwrap().draft.clone();
    draft.model.n_instances = 1024;
    draft.model.n_features = 48_828;
    draft.model.n_hidden = 1;
    draft.task.feature_probability = toylens::superposition::Probability::Constant(0.01);
    draft.task.importance = toylens::superposition::Importance::Decay(1.0);
    draft.train.batch_size = 2;
    draft.train.steps = 20;
    draft.train.eval_every = 10;
    assert_eq!(draft.validate(), Ok(()));
    h.state_mut().apply(tms(TmsAction::Edit(Box::new(draft))));
    let started = Instant::now();
    h.state_mut().apply(tms(TmsAction::Train));
    while h.state().tms.as_ref().unwrap().is_training() && started.elapsed().as_secs() < 300 {
        step(&mut h, "largest model, training");
    }
    for _ in 0..10 {
        step(&mut h, "largest model, trained");
    }
    common::print_phases(&frames);
}
