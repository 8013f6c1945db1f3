//! The desktop app, driven through egui_kittest: no window, no GPU, no file dialogs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use toylens::app::session::RunState;
use toylens::app::views::DataView;
use toylens::app::{Settings, Tab, ToylensApp};

fn harness_with(settings: Settings) -> Harness<'static, ToylensApp> {
    Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(move |cc| {
            let mut app = ToylensApp::with_settings(cc.egui_ctx.clone(), settings);
            app.dialogs_enabled = false;
            app
        })
}

fn harness() -> Harness<'static, ToylensApp> {
    harness_with(Settings::default())
}

/// Steps the UI until `done` holds, or fails after `secs` (reported at the caller's line).
#[track_caller]
fn step_until(
    h: &mut Harness<'_, ToylensApp>,
    secs: u64,
    mut done: impl FnMut(&ToylensApp) -> bool,
) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out; status: {:?}, run: {:?}, epochs: {}",
            h.state().status,
            h.state().run_state(),
            h.state().session.history.len()
        );
        h.run_steps(2);
        std::thread::sleep(Duration::from_millis(10));
    }
    h.run_steps(2);
}

/// Steps the UI until every background view has delivered the result for what is on screen.
#[track_caller]
fn settle(h: &mut Harness<'_, ToylensApp>) {
    h.run_steps(1);
    step_until(h, 60, |app| {
        let a = &app.analysis;
        !app.views_busy()
            && match app.settings.tab {
                Tab::Data => a.data.is_current(&app.data_key()),
                Tab::Evaluate if app.session.config.task.sequences().is_some() => {
                    a.sequence_report.is_current(&app.exhaustive_key())
                }
                Tab::Evaluate => a.exhaustive.is_current(&app.exhaustive_key()),
                Tab::Circuits => a.circuits.is_current(&app.circuits_key()),
                Tab::Inspect => app.inspector_current(),
                Tab::Analyze => {
                    app.analyze_key().is_ok_and(|k| a.analyze.is_current(&k))
                        && a.head_circuits.is_current(&app.view_key())
                }
                _ => true,
            }
    });
}

/// The window's close button, as the windowing layer reports it.
fn request_close(h: &mut Harness<'_, ToylensApp>) {
    h.input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(egui::ViewportEvent::Close);
}

/// Whether the button labelled `label` is enabled.
fn enabled(h: &Harness<'_, ToylensApp>, label: &str) -> bool {
    !h.get_by_role_and_label(Role::Button, label)
        .accesskit_node()
        .is_disabled()
}

fn set_sequence(h: &mut Harness<'_, ToylensApp>, text: &str) {
    h.state_mut().settings.sequence.clear();
    h.run();
    h.get_by_label("Sequence").focus();
    h.run();
    h.get_by_label("Sequence").type_text(text);
    settle(h);
}

#[test]
fn opens_on_the_bundled_model_and_predicts_2_5_3_0() {
    let mut h = harness();
    settle(&mut h);
    h.get_by_label("Predicted 5");
    h.get_by_label("expected 5: correct");
    let inspection = h.state().inspector.last_valid.clone().unwrap();
    assert_eq!(inspection.tokens, vec![2, 5, 3, 0]);
    assert!(h.state().session.history.len() == 60);
    h.get_by_label_contains("opened fast-seed0.safetensors (bundled)");
}

#[test]
fn typing_updates_the_inspector_and_an_invalid_sequence_shows_why() {
    let mut h = harness();
    h.run();
    set_sequence(&mut h, "1 9 4 0");
    h.get_by_label("Predicted 3");
    set_sequence(&mut h, "2 x 3 0");
    h.get_by_label_contains("\"x\" is not a token id");
    h.get_by_label("showing the last valid sequence");
    // The last valid view stays.
    h.get_by_label("Predicted 3");
    set_sequence(&mut h, "1 2 3 4 5");
    h.get_by_label_contains("the model takes 1 to 4");
    set_sequence(&mut h, "4, 8, 4, 0");
    h.get_by_label("Predicted 9");
    assert!(h.state().inspector.error.is_none());
}

#[test]
fn data_tab_shows_the_label_histogram_of_the_current_settings() {
    let mut h = harness();
    h.run();
    h.get_by_label("Data").click();
    settle(&mut h);
    h.get_by_label_contains("Training set of seed 0: 100000 samples");
    h.get_by_label_contains("Labels of signal samples");
    let Some(Ok(DataView::SkipTrigram(summary))) = h.state().analysis.data.latest() else {
        panic!("no skip-trigram data set");
    };
    let signal = &summary.signal_histogram;
    // Pairs with a == b (label 0) are half as frequent as a != b (label 1).
    assert!((signal[0] as f64 / signal[1] as f64 - 0.5).abs() < 0.05);
    // Changing the seed regenerates what is shown.
    h.state_mut().settings.config.seed = 3;
    settle(&mut h);
    h.get_by_label_contains("Training set of seed 3");
}

fn quick_settings(epochs: usize) -> Settings {
    let mut s = Settings::default();
    s.config.task.skip_trigram_mut().unwrap().train_size = 20_000;
    s.config.train.batch_size = 2_000;
    s.config.train.epochs = epochs;
    s.tab = Tab::Training;
    // Head metrics fill in over many frames in a debug build; they have their own test.
    s.show_head_traces = false;
    s
}

#[test]
fn training_adds_points_and_advances_the_epoch_counter() {
    let mut h = harness_with(quick_settings(40));
    h.run();
    h.get_by_role_and_label(Role::Button, "Train").click();
    h.run_steps(2);
    assert!(h.state().session.is_training());
    step_until(&mut h, 60, |app| app.session.history.len() >= 3);
    let points = h.state().session.series.val_loss.len();
    assert!(points >= 3);
    assert!(!h.state().session.series.step_loss.is_empty());
    assert!(
        !h.get_all_by_label_contains("/40 · step")
            .collect::<Vec<_>>()
            .is_empty()
    );
    step_until(&mut h, 60, |app| app.session.series.val_loss.len() > points);
    // Run to the end: the model is kept, marked unsaved, and the inspector is live on it.
    step_until(&mut h, 120, |app| !app.session.is_training());
    assert_eq!(h.state().session.history.len(), 40);
    assert!(h.state().session.dirty);
    h.get_by_label_contains("40 epochs trained");
    h.get_by_label_contains("untitled •");
}

#[test]
fn pause_and_resume() {
    let mut h = harness_with(quick_settings(100_000));
    h.run();
    h.get_by_role_and_label(Role::Button, "Train").click();
    step_until(&mut h, 60, |app| !app.session.history.is_empty());
    click_until(&mut h, "Pause", |app| {
        app.run_state() == Some(RunState::Paused)
    });
    h.get_by_label_contains("paused");
    // The worker acknowledged the pause and now waits for a command: whatever it sent before
    // has arrived once a few frames have drained the channel, and nothing comes after.
    h.run_steps(3);
    let step = |app: &ToylensApp| {
        app.session
            .run
            .as_ref()
            .and_then(|r| r.last_step)
            .map(|s| s.step)
    };
    let (epochs, paused_at) = (h.state().session.history.len(), step(h.state()));
    h.run_steps(20);
    assert_eq!(step(h.state()), paused_at, "kept training while paused");
    assert_eq!(h.state().session.history.len(), epochs);
    click_until(&mut h, "Resume", |app| {
        app.run_state() == Some(RunState::Running)
    });
    step_until(&mut h, 60, |app| app.session.history.len() > epochs + 1);
    click_until(&mut h, "Stop", |app| !app.session.is_training());
    h.get_by_label_contains("stopped after");
}

/// Clicks `button` until `done` holds, or fails after 30 s. While a run streams events a
/// debug-build frame can take long enough that a simulated mouse press and release no longer
/// count as a click, so the accessibility action is used; that one targets the widget's id as
/// of the last frame, and a frame whose layout changed under it (a new line of status text
/// above the button) drops it. The button is found again before each try.
#[track_caller]
fn click_until(
    h: &mut Harness<'_, ToylensApp>,
    button: &str,
    mut done: impl FnMut(&ToylensApp) -> bool,
) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "clicking {button} did not take; status: {:?}",
            h.state().status
        );
        if let Some(node) = h.query_by_role_and_label(Role::Button, button) {
            node.click_accesskit();
        }
        h.run_steps(3);
        std::thread::sleep(Duration::from_millis(20));
    }
    h.run_steps(2);
}

/// Clicks `button`, then types `path` into the path field labelled `field` that appears.
fn type_path(h: &mut Harness<'_, ToylensApp>, button: &str, field: &str, path: &Path) {
    h.get_by_role_and_label(Role::Button, button).click();
    h.run();
    h.get_by_label(field).focus();
    h.run();
    h.get_by_label(field).type_text(path.to_str().unwrap());
    h.run();
}

fn open_by_path(h: &mut Harness<'_, ToylensApp>, path: &Path) {
    type_path(h, "Open…", "Open path", path);
    h.get_by_role_and_label(Role::Button, "Open").click();
    h.run_steps(2);
    step_until(h, 30, |app| !app.busy_io);
    settle(h);
}

#[test]
fn open_a_checkpoint_by_path_with_the_dialog_bypassed() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/skip_trigram_tl/model.safetensors");
    let mut h = harness();
    h.run();
    open_by_path(&mut h, &fixture);
    // The fixture is TransformerLens's own state dict, without toylens metadata: the status
    // line says so and where its config came from.
    h.get_by_label_contains("a TransformerLens state dict (config from");
    h.get_by_label_contains("opens as toylens's one-hot model without positions");
    assert_eq!(h.state().session.file.as_deref(), Some(fixture.as_path()));
    assert!(
        h.state().session.history.is_empty(),
        "the fixture has no history"
    );
    h.get_by_label_contains("no training history · model.safetensors");
    // The fixture's model answers the notebook's example too.
    h.get_by_label("Predicted 5");
}

#[test]
fn a_pytorch_state_dict_opens_and_save_never_overwrites_it() {
    // A copy, beside its config, so that a wrong Save could not touch the fixture.
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tl_pth");
    let pth = dir.path().join("model.pth");
    std::fs::copy(fixtures.join("model.pth"), &pth).unwrap();
    std::fs::copy(fixtures.join("config.json"), dir.path().join("config.json")).unwrap();
    let original = std::fs::read(&pth).unwrap();
    let mut h = harness();
    h.run();
    open_by_path(&mut h, &pth);
    h.get_by_label_contains("a TransformerLens state dict (PyTorch state dict, config from");
    let reference = toylens::checkpoint::Checkpoint::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tl_general/mlp2_ln_gelu/model.safetensors"),
    )
    .unwrap();
    assert_eq!(h.state().session.weights, reference.weights);
    assert!(h.state().session.foreign_file);
    // Save asks where instead of writing toylens's format over the user's file.
    h.get_by_role_and_label(Role::Button, "Save…").click();
    h.run_steps(2);
    h.get_by_label("Save to path");
    assert_eq!(
        std::fs::read(&pth).unwrap(),
        original,
        "the .pth was overwritten"
    );
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run_steps(2);
    // Saved elsewhere, the model is toylens's own file from then on: Save writes there.
    let copy = dir.path().join("copy.safetensors");
    type_path(&mut h, "Save as…", "Save to path", &copy);
    h.get_by_role_and_label(Role::Button, "Save").click();
    h.run_steps(2);
    step_until(&mut h, 30, |app| !app.busy_io);
    assert!(!h.state().session.foreign_file);
    let saved = toylens::checkpoint::Checkpoint::load(&copy).unwrap();
    assert_eq!(saved.weights, reference.weights);
    assert_eq!(std::fs::read(&pth).unwrap(), original);
}

#[test]
fn a_model_without_a_task_shows_no_invented_data() {
    // TL's state dict names no task: nothing is guessed for it.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tl_general/mlp2_ln_gelu/model.safetensors");
    let mut h = harness();
    h.run();
    open_by_path(&mut h, &fixture);
    assert!(!h.state().session.config.task.has_data());
    h.get_by_label_contains("The model came without a task");
    assert!(!enabled(&h, "Train"), "Train must wait for a task");
    h.get_by_label_contains("the model has no task, so there is no data to train on");
    h.get_by_label("the model has no task: nothing is expected");
    for (tab, says) in [
        (Tab::Data, "so there are no data to show"),
        (Tab::Training, "so it has no training metrics"),
        (Tab::Evaluate, "so there is nothing to evaluate it on"),
    ] {
        h.state_mut().apply(toylens::app::Action::ShowTab(tab));
        h.run_steps(3);
        h.get_by_label_contains(says);
    }
    // Choosing a task makes the settings trainable: a new model of that task.
    h.state_mut().apply(toylens::app::Action::ApplyPreset(
        toylens::train::Preset::Induction,
    ));
    h.run_steps(2);
    assert!(enabled(&h, "Train"));
}

#[test]
fn a_corrupt_file_shows_an_error_and_keeps_the_old_model() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}").unwrap();
    let mut h = harness();
    h.run();
    let before = h.state().session.weights.clone();
    open_by_path(&mut h, &junk);
    h.get_by_label_contains("could not open: not a valid safetensors file");
    assert_eq!(h.state().session.weights, before);
    assert_eq!(h.state().session.file, None);
    h.get_by_label("Predicted 5");
}

#[test]
fn save_by_path_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("saved.safetensors");
    let mut h = harness();
    h.run();
    type_path(&mut h, "Save…", "Save to path", &path);
    h.get_by_role_and_label(Role::Button, "Save").click();
    h.run_steps(2);
    step_until(&mut h, 30, |app| !app.busy_io);
    h.get_by_label_contains(&format!("saved {}", path.display()));
    let saved = toylens::checkpoint::Checkpoint::load(&path).unwrap();
    assert_eq!(saved.weights, h.state().session.weights);
    assert_eq!(saved.history.len(), 60);
}

#[test]
fn an_invalid_setting_disables_train_and_says_why() {
    let mut settings = Settings::default();
    settings.config.task.skip_trigram_mut().unwrap().seq_len = 2;
    let mut h = harness_with(settings);
    h.run();
    h.get_by_label_contains("seq_len must be at least 3");
    assert!(!enabled(&h, "Train"), "Train must be disabled");
    assert!(!enabled(&h, "Reset"), "Reset must be disabled");
    // Asked for anyway (a stale click, a keyboard shortcut), both refuse and change nothing.
    let generation = h.state().session.generation;
    h.state_mut().apply(toylens::app::Action::Train);
    h.state_mut().apply(toylens::app::Action::Reset);
    h.run();
    assert!(!h.state().session.is_training());
    assert_eq!(h.state().session.generation, generation);
    h.get_by_label_contains("cannot reset: fix the settings first");
}

/// A file dropped onto the window, as the windowing layer hands it over.
#[derive(Debug)]
struct DroppedPath(std::path::PathBuf);

impl egui::DroppedFile for DroppedPath {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn fixture_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/skip_trigram_tl/model.safetensors")
}

#[test]
fn a_file_dropped_on_the_window_opens() {
    let mut h = harness();
    h.run();
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(DroppedPath(fixture_path())));
    h.run_steps(2);
    step_until(&mut h, 30, |app| !app.busy_io);
    assert_eq!(
        h.state().session.file.as_deref(),
        Some(fixture_path().as_path())
    );
}

#[test]
fn a_checkpoint_named_on_the_command_line_opens_at_start() {
    let path = fixture_path();
    let mut h = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(move |cc| ToylensApp::new(cc, Some(path)));
    h.run_steps(2);
    step_until(&mut h, 30, |app| !app.busy_io);
    assert_eq!(
        h.state().session.file.as_deref(),
        Some(fixture_path().as_path())
    );
    h.get_by_label_contains("no training history · model.safetensors");
}

#[test]
fn without_a_dialog_backend_a_path_field_appears() {
    let mut h = harness();
    h.run();
    h.state_mut().handle(toylens::app::Message::Picked {
        purpose: toylens::app::files::Purpose::Open,
        path: None,
        no_backend: true,
    });
    h.run();
    h.get_by_label_contains("no file dialog is available");
    h.get_by_label("Open path");
    // A cancelled dialog (a real backend that answered "no file") shows nothing.
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run();
    h.state_mut().handle(toylens::app::Message::Picked {
        purpose: toylens::app::files::Purpose::Open,
        path: None,
        no_backend: false,
    });
    h.run();
    assert!(h.query_by_label("Open path").is_none());
}

#[test]
fn a_new_run_over_unsaved_work_asks_first() {
    let mut h = harness_with(quick_settings(3));
    h.run();
    h.state_mut().session.dirty = true;
    h.get_by_role_and_label(Role::Button, "Train").click();
    h.run();
    h.get_by_label("Unsaved changes");
    assert!(!h.state().session.is_training());
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run();
    assert!(h.query_by_label("Unsaved changes").is_none());
    assert!(!h.state().session.is_training());
    h.get_by_role_and_label(Role::Button, "Train").click();
    h.run();
    let generation = h.state().session.generation;
    h.get_by_role_and_label(Role::Button, "Discard and train")
        .click();
    h.run_steps(2);
    // A new run replaced the bundled model (whose 60 epochs would satisfy a looser check).
    assert!(h.state().session.generation > generation);
    step_until(&mut h, 60, |app| !app.session.is_training());
    assert_eq!(h.state().session.history.len(), 3);
    assert!(h.state().session.dirty);
}

#[test]
fn closing_with_unsaved_work_asks_first() {
    let mut h = harness();
    h.run();
    h.state_mut().session.dirty = true;
    request_close(&mut h);
    h.run_steps(2);
    h.get_by_label("Quit and discard the unsaved model?");
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run();
    assert!(h.query_by_label("Unsaved changes").is_none());
}

#[test]
fn scrubbing_to_epoch_k_shows_exactly_the_weights_saved_at_epoch_k() {
    let bundled =
        toylens::checkpoint::Checkpoint::from_bytes(toylens::app::BUNDLED_CHECKPOINT).unwrap();
    let mut h = harness();
    h.run();
    for k in [0usize, 1, 17, 60] {
        h.state_mut()
            .apply(toylens::app::Action::ViewEpoch(Some(k)));
        settle(&mut h);
        assert_eq!(h.state().view_weights(), &bundled.snapshots[k].weights);
        assert_eq!(bundled.snapshots[k].epoch, k);
        h.get_by_label_contains(&format!("showing epoch {k}"));
        // The inspector re-renders from that epoch's weights.
        let model = toylens::model::Transformer::new(
            &bundled.config.model,
            &bundled.snapshots[k].weights,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let want = toylens::analysis::inspect(&model, &bundled.config.task, &[2, 5, 3, 0]).unwrap();
        assert_eq!(h.state().inspector.last_valid.as_deref(), Some(&want));
    }
    // Epoch 0 is the initialisation: it cannot answer yet.
    h.state_mut()
        .apply(toylens::app::Action::ViewEpoch(Some(0)));
    settle(&mut h);
    assert!(h.query_by_label("expected 5: correct").is_none());
    h.state_mut().apply(toylens::app::Action::ViewEpoch(None));
    settle(&mut h);
    h.get_by_label("expected 5: correct");
}

#[test]
fn the_scrubber_plays_through_the_epochs() {
    let mut h = harness();
    h.run();
    h.get_by_role_and_label(Role::Button, "Play").click();
    h.run_steps(2);
    assert!(h.state().scrubber.playing);
    let start = h.state().view_index().unwrap();
    step_until(&mut h, 30, |app| app.view_index().unwrap() > start);
}

#[test]
fn circuits_and_evaluate_tabs_show_the_bundled_model() {
    let mut h = harness();
    h.run();
    h.get_by_label("Circuits").click();
    settle(&mut h);
    h.get_by_label_contains("OV: row = source token");
    h.get_by_label("head 2");
    h.get_by_label("Evaluate").click();
    settle(&mut h);
    h.get_by_label_contains("All 96 signal sequences: accuracy 1.0000");
    // Zero-ablating head 0 breaks the task, and the view says an ablation is active.
    h.state_mut().analysis.ablation = vec![
        toylens::model::HeadMode::Zero,
        toylens::model::HeadMode::Active,
        toylens::model::HeadMode::Active,
    ];
    settle(&mut h);
    h.get_by_label_contains("ABLATION ACTIVE: head 0 zero-ablated");
    h.get_by_label_contains("All 96 signal sequences: accuracy 0.3750");
}

#[test]
fn enter_in_the_path_field_submits_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enter.safetensors");
    let mut h = harness();
    h.run();
    type_path(&mut h, "Save…", "Save to path", &path);
    h.key_press(egui::Key::Enter);
    h.run_steps(2);
    step_until(&mut h, 30, |app| !app.busy_io && app.path_field.is_none());
    step_until(&mut h, 30, |_| path.exists());
}

#[test]
fn head_metrics_cover_every_snapshot() {
    let mut h = harness_with(Settings {
        tab: Tab::Training,
        ..Settings::default()
    });
    step_until(&mut h, 120, |app| {
        !app.analysis.traces.is_empty() && app.analysis.traces.len() == app.session.snapshots.len()
    });
    let traces = &h.state().analysis.traces;
    assert_eq!(traces.first().unwrap().0, 0);
    assert_eq!(traces.last().unwrap().0, 60);
    // By the end of the bundled run every head attends almost only to the triggers.
    assert!(
        traces
            .last()
            .unwrap()
            .1
            .iter()
            .all(|t| t.attn_to_triggers > 0.9)
    );
}

/// An in-memory eframe storage, as the native one behaves minus the disk.
#[derive(Default)]
struct MemoryStorage(std::collections::HashMap<String, String>);

impl eframe::Storage for MemoryStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

#[test]
fn settings_tab_and_plot_options_persist_through_eframe_storage() {
    use eframe::App;
    let mut h = harness();
    h.run();
    h.get_by_label("Circuits").click();
    settle(&mut h);
    {
        let app = h.state_mut();
        app.settings.log_loss = true;
        app.settings.sequence = "1 9 4 0".into();
        app.settings.config.seed = 42;
    }
    let mut storage = MemoryStorage::default();
    h.state_mut().save(&mut storage);
    let restored: Settings = eframe::get_value(&storage, eframe::APP_KEY).expect("settings saved");
    assert_eq!(restored, h.state().settings);
    assert_eq!(restored.tab, Tab::Circuits);
    assert!(restored.log_loss);
    assert_eq!(restored.config.seed, 42);
    // A restored app starts where the last one stopped.
    let mut h = harness_with(restored);
    settle(&mut h);
    h.get_by_label_contains("OV: row = source token");
}

/// Issue: Reset with Sequence length 2 made the invalid task the model's, and the Evaluate tab
/// then panicked (capacity overflow); the inspector and Random signal reached other panics.
#[test]
fn an_invalid_setting_never_becomes_the_model_in_view() {
    let mut h = harness();
    h.run();
    for seq_len in [2, 1] {
        h.state_mut()
            .settings
            .config
            .task
            .skip_trigram_mut()
            .unwrap()
            .seq_len = seq_len;
        h.state_mut().settings.config.fit_model_to_task();
        h.run();
        assert!(!enabled(&h, "Reset"));
        // Even with unsaved work and the confirmation answered, Reset refuses.
        h.state_mut().session.dirty = true;
        h.state_mut().apply(toylens::app::Action::Reset);
        h.state_mut().confirm = Some(toylens::app::Confirm::Reset);
        h.state_mut().apply(toylens::app::Action::ConfirmYes);
        h.run();
        assert_eq!(h.state().session.config.task.seq_len(), 4);
        assert!(h.state().session.config.validate().is_ok());
        for tab in Tab::ALL {
            h.state_mut().settings.tab = tab;
            settle(&mut h);
        }
        h.state_mut().settings.tab = Tab::Inspect;
        set_sequence(&mut h, "2 0");
        h.get_by_role_and_label(Role::Button, "Random signal")
            .click();
        h.run_steps(2);
        // A signal sequence of the model's task, not of the invalid settings.
        let sequence = h.state().settings.sequence.clone();
        assert_eq!(sequence.split_whitespace().count(), 4, "{sequence}");
        assert!(h.state().inspector.error.is_none());
    }
}

/// Issue: after divergence the run never ended, so Train, Reset and Save stayed disabled.
#[test]
fn a_diverged_run_can_be_saved_reset_or_trained_again() {
    let mut h = harness_with(Settings {
        tab: Tab::Training,
        show_head_traces: false,
        ..Settings::default()
    });
    h.run();
    // The lr field stops at 10, which trains; a run that blows up is set up between frames.
    h.state_mut().settings.config.train.lr = 1e30;
    h.state_mut().apply(toylens::app::Action::Train);
    h.state_mut().apply(toylens::app::Action::ConfirmYes);
    h.run_steps(2);
    step_until(&mut h, 60, |app| !app.session.is_training());
    let status = h.state().status.clone().unwrap();
    assert!(
        status.is_error() && status.text().contains("diverged"),
        "{status:?}"
    );
    assert!(h.state().session.weights.all_finite());
    for button in ["Train", "Reset", "Save…", "Save as…"] {
        assert!(enabled(&h, button), "{button} is disabled after divergence");
    }
    // The last good weights can be saved.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("diverged.safetensors");
    type_path(&mut h, "Save…", "Save to path", &path);
    h.get_by_role_and_label(Role::Button, "Save").click();
    h.run_steps(2);
    step_until(&mut h, 30, |app| !app.busy_io);
    let saved = toylens::checkpoint::Checkpoint::load(&path).unwrap();
    assert_eq!(saved.weights, h.state().session.weights);
    assert!(!h.state().session.dirty);
    // And a new run starts.
    h.state_mut().settings.config.train.lr = 1e-2;
    h.get_by_role_and_label(Role::Button, "Train").click();
    h.run_steps(2);
    assert!(h.state().session.is_training());
}

/// Issue: confirming "discard" before Open cleared the dirty flag before the dialog appeared, so
/// cancelling it left unsaved work marked saved.
#[test]
fn cancelling_open_after_confirming_the_discard_keeps_the_work_unsaved() {
    let mut h = harness();
    h.run();
    h.state_mut().session.dirty = true;
    h.get_by_role_and_label(Role::Button, "Open…").click();
    h.run();
    h.get_by_role_and_label(Role::Button, "Discard and open")
        .click();
    h.run();
    h.get_by_label("Open path");
    assert!(h.state().session.dirty, "nothing was discarded yet");
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run();
    assert!(h.query_by_label("Open path").is_none());
    assert!(h.state().session.dirty);
    // Closing still asks.
    request_close(&mut h);
    h.run_steps(2);
    h.get_by_label("Quit and discard the unsaved model?");
    // A failed open after the discard keeps the work too.
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run();
    h.state_mut().apply(toylens::app::Action::OpenPath(
        "/no/such.safetensors".into(),
    ));
    step_until(&mut h, 30, |app| !app.busy_io);
    assert!(h.state().session.dirty);
    h.get_by_label_contains("could not open");
}

#[test]
fn a_file_dropped_over_unsaved_work_asks_first() {
    let mut h = harness();
    h.run();
    h.state_mut().session.dirty = true;
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(DroppedPath(fixture_path())));
    h.run_steps(2);
    h.get_by_label("Open another file and discard the unsaved model?");
    assert!(h.state().session.file.is_none());
    h.get_by_role_and_label(Role::Button, "Discard and open")
        .click();
    h.run_steps(2);
    step_until(&mut h, 30, |app| !app.busy_io);
    assert_eq!(
        h.state().session.file.as_deref(),
        Some(fixture_path().as_path())
    );
    assert!(!h.state().session.dirty);
}

/// Issue: the exhaustive evaluation, mean z, the Data tab's data set and the circuits were
/// computed inside a frame. Now a frame only starts them: the first frame of each tab shows a
/// spinner, and the result arrives later.
#[test]
fn heavy_views_are_computed_off_the_ui_thread() {
    let mut h = harness();
    h.run();
    let cases: [(Tab, &str); 3] = [
        (Tab::Evaluate, "evaluating every signal sequence"),
        (Tab::Circuits, "computing the circuits"),
        (Tab::Data, "generating the data of the settings"),
    ];
    for (tab, spinner) in cases {
        h.state_mut().settings.tab = tab;
        h.state_mut().settings.config.seed += 1; // a data set not generated yet
        h.run_steps(1);
        assert!(
            h.state().views_busy(),
            "{tab:?}: nothing runs in the background"
        );
        h.get_by_label_contains(spinner);
        settle(&mut h);
        assert!(h.query_by_label_contains(spinner).is_none());
    }
    // Mean ablation: the inspector waits for the means, then shows the ablated model.
    h.state_mut().settings.tab = Tab::Inspect;
    h.state_mut().analysis.ablation = vec![
        toylens::model::HeadMode::Mean,
        toylens::model::HeadMode::Active,
        toylens::model::HeadMode::Active,
    ];
    h.run_steps(1);
    assert!(h.state().analysis.mean_z.is_running());
    step_until(&mut h, 60, |app| {
        !app.inspector.waiting && !app.views_busy()
    });
    h.get_by_label_contains("ABLATION ACTIVE: head 0 mean-ablated");
}

/// The last line of defence: a panic on the UI thread saves the model in view, and the next start
/// offers to reopen it.
#[test]
fn a_crash_saves_the_model_and_the_next_start_offers_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let recovery = dir.path().join("recovered.safetensors");
    let mut h = harness();
    h.run();
    h.state_mut().recovery_path = Some(recovery.clone());
    h.state_mut().session.dirty = true;
    let weights = h.state().session.weights.clone();
    h.state_mut().inject_panic = true;
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.run()));
    assert!(crashed.is_err(), "the injected panic did not happen");
    let saved = toylens::checkpoint::Checkpoint::load(&recovery).unwrap();
    assert_eq!(saved.weights, weights);
    assert_eq!(saved.history.len(), 60);
    drop(h);

    let mut h = harness();
    h.state_mut().recovery_path = Some(recovery.clone());
    h.state_mut().offer_recovery();
    h.run();
    h.get_by_label_contains("toylens crashed last time");
    h.get_by_role_and_label(Role::Button, "Reopen").click();
    h.run_steps(2);
    step_until(&mut h, 30, |app| !app.busy_io);
    assert_eq!(h.state().session.weights, weights);
    assert!(
        h.state().session.dirty,
        "recovered work is unsaved until saved"
    );
    assert!(h.state().session.file.is_none());
    assert!(!recovery.exists(), "the recovery file is consumed");
    h.get_by_label_contains("recovered after the crash");
}

#[test]
fn a_general_transformer_lens_model_opens_and_the_inspector_shows_every_layer() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tl_general/attn2_shortformer");
    let mut h = harness();
    h.run();
    open_by_path(&mut h, &dir.join("model.safetensors"));
    h.get_by_label_contains("config.json");
    assert_eq!(h.state().session.config.model.n_layers, 2);
    // The model summary lists every parameter under its TL name.
    h.get_by_label("blocks.1.attn.W_Q");
    h.get_by_label("pos_embed.W_pos");
    // A full-length sequence: a layer × head grid of patterns.
    set_sequence(&mut h, "3 1 4 1 5 9 2 6 5 3 5 8");
    let inspection = h
        .state()
        .inspector
        .last_valid
        .clone()
        .expect("an inspection");
    assert_eq!(inspection.tokens.len(), 12);
    assert_eq!(inspection.patterns.len(), 2);
    assert_eq!(inspection.patterns[1].len(), 4);
    h.get_by_label("layer 1");
    assert!(h.query_all_by_label("head 3").count() >= 1);
    // Two layers: the one-layer decomposition does not apply, and the tab says why.
    h.get_by_label_contains("exact only for one-layer models without LayerNorm");
    // Logits at an earlier position.
    h.state_mut().inspector.position = Some(4);
    h.run_steps(2);
    h.get_by_label("token 5");
    // The model matches TL on the last logits of the fixture's full-length case.
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let case = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tokens"].as_array().unwrap().len() == 12)
        .unwrap();
    let tokens: Vec<u32> = serde_json::from_value(case["tokens"].clone()).unwrap();
    set_sequence(
        &mut h,
        &tokens
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" "),
    );
    let r = h.state().inspector.last_valid.clone().unwrap();
    let want: Vec<f32> = serde_json::from_value(case["cache"]["logits"][11].clone()).unwrap();
    for (a, b) in r.logits_last.iter().zip(&want) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

/// The task presets: each brings its task, model and training; its run trains in the app; the
/// Training, Data and Inspect tabs show the task's own metrics, data and answers.
#[test]
fn task_presets_train_and_show_their_own_views() {
    use toylens::app::Action;
    use toylens::task::{ModularAdditionConfig, TaskConfig};
    use toylens::train::Preset;
    let mut h = harness();
    h.run();
    // Induction, shortened.
    h.state_mut().apply(Action::ApplyPreset(Preset::Induction));
    {
        let cfg = &mut h.state_mut().settings.config;
        assert_eq!(cfg.task.kind().name(), "induction");
        assert_eq!(cfg.model.n_layers, 2);
        cfg.train.steps = 20;
        cfg.train.eval_every = 10;
    }
    h.state_mut().settings.tab = Tab::Training;
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Train").click();
    step_until(&mut h, 120, |app| {
        !app.session.is_training() && app.session.history.len() == 2
    });
    let series = &h.state().session.series;
    assert_eq!(series.induction_score.len(), 2);
    assert_eq!(series.induction_score[1].len(), 4);
    assert_eq!(series.loss_repeated_half.len(), 2);
    h.run_steps(2);
    h.get_by_label_contains("floors: first half ln V");
    h.get_by_label_contains("20 steps trained");
    h.state_mut().settings.tab = Tab::Data;
    settle(&mut h);
    h.get_by_label_contains("repeated half: predictable by induction");
    h.state_mut().settings.tab = Tab::Inspect;
    h.state_mut().settings.sequence = "1 2 3 4 5 6 7 8 9 10 1 2".into();
    settle(&mut h);
    h.get_by_label_contains("expected 3");
    // Modular addition, small.
    h.state_mut()
        .apply(Action::ApplyPreset(Preset::GrokkingFast));
    {
        let cfg = &mut h.state_mut().settings.config;
        cfg.task = TaskConfig::ModularAddition(ModularAdditionConfig {
            p: 11,
            train_frac: 0.5,
        });
        cfg.model.d_model = 16;
        cfg.model.d_head = 4;
        cfg.model.d_mlp = Some(32);
        cfg.fit_model_to_task();
        cfg.train.epochs = 20;
        cfg.train.eval_every = 10;
    }
    h.state_mut().settings.tab = Tab::Training;
    h.run_steps(2);
    // The induction model is unsaved: a new run asks first.
    h.get_by_role_and_label(Role::Button, "Train").click();
    h.run_steps(2);
    assert!(h.state().confirm.is_some());
    h.state_mut().apply(Action::ConfirmYes);
    step_until(&mut h, 120, |app| {
        !app.session.is_training() && app.session.series.test_acc.len() == 2
    });
    h.run_steps(2);
    h.get_by_label_contains("chance accuracy 1/p");
    h.state_mut().settings.tab = Tab::Data;
    settle(&mut h);
    h.get_by_label_contains("All 121 pairs");
    h.get_by_label_contains("train, right");
    // The grid is drawn from an image the data job made, one pixel per pair, coloured by split
    // and by the model's answers.
    match h.state().analysis.data.latest() {
        Some(Ok(toylens::app::views::DataView::ModularAddition(grid))) => {
            let correct = grid.correct.as_ref().expect("graded by the model");
            assert_eq!(grid.image.size, [11, 11]);
            for (i, &ok) in correct.iter().enumerate() {
                let want = toylens::app::views::pair_colour(grid.train_mask[i], Some(ok));
                assert_eq!(grid.image.pixels[i], want, "pair {i}");
            }
            assert!(grid.image.pixels.contains(&toylens::app::views::TRAIN_PAIR));
            // The counts the legend shows, made by the job.
            let right = |train: bool| {
                (0..121)
                    .filter(|&i| correct[i] && grid.train_mask[i] == train)
                    .count()
            };
            assert_eq!(grid.right, Some((right(true), right(false))));
            assert_eq!(grid.train, grid.train_mask.iter().filter(|&&t| t).count());
        }
        _ => panic!("no graded modular-addition data view"),
    }
    h.state_mut().settings.tab = Tab::Inspect;
    h.state_mut().settings.sequence = "3 4".into();
    settle(&mut h);
    h.get_by_label_contains("expected 7");
    // The Evaluate tab says where this task's evaluation lives instead of enumerating.
    h.state_mut().settings.tab = Tab::Evaluate;
    h.run_steps(2);
    h.get_by_label_contains("enumerates skip-trigram sequences");
}

/// The analysis the Analyze tab shows.
fn shown_analysis(h: &Harness<'_, ToylensApp>) -> std::sync::Arc<toylens::analysis::Analysis> {
    let shown = h.state().analysis.analyze.latest().expect("an analysis");
    shown.clone().expect("a successful analysis")
}

#[test]
fn the_analyze_tab_takes_a_two_layer_model_apart() {
    let mut h = harness();
    h.run();
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tl_general/mlp2_ln_gelu/model.safetensors");
    open_by_path(&mut h, &model);
    // The inspector has no exact split of this model's logits, and points to the attribution.
    assert_eq!(h.state().settings.tab, Tab::Inspect);
    h.get_by_role_and_label(Role::Button, "Direct logit attribution")
        .click();
    h.run_steps(2);
    assert_eq!(h.state().settings.tab, Tab::Analyze);
    h.state_mut().settings.sequence = "4 7 9 7 4 2 5".into();
    settle(&mut h);
    h.get_by_label("Direct logit attribution");
    h.get_by_label_contains("rows + constant = ");
    for label in [
        "L1H2",
        "1_mlp_out",
        "pos_embed",
        "bias",
        "Logit lens",
        "Head detectors",
    ] {
        assert!(h.query_all_by_label(label).count() >= 1, "{label} missing");
    }
    let a = shown_analysis(&h);
    assert!(a.attribution.sum_error() < 1e-5);
    assert!(a.patching.is_none());
    h.get_by_label_contains("Type a corrupted sequence");
    // A corrupted sequence of another length is refused with the reason; the same length patches.
    // Typed key by key: the message that appears after the first key must not take the focus.
    h.get_by_label("Corrupted sequence").focus();
    h.run_steps(2);
    for key in ["4", " ", "7", " ", "9"] {
        h.event(egui::Event::Text(key.into()));
        h.run_steps(2);
    }
    assert_eq!(h.state().analyze.corrupt, "4 7 9");
    h.get_by_label_contains("patching needs the same length");
    h.state_mut().analyze.corrupt = "4 7 9 7 3 2 5".into();
    settle(&mut h);
    h.get_by_label_contains("at the last position: clean");
    let a = shown_analysis(&h);
    let p = a.patching.as_ref().unwrap();
    assert_eq!(p.resid_pre.len(), 2);
    assert_eq!(p.resid_pre[0].len(), 7);
    assert_ne!(
        p.answer, p.wrong,
        "auto tokens: the clean answer against another"
    );
    // Every layer's heads can be ablated, and the analysis follows.
    h.get_by_label("Composition scores");
    h.get_by_label_contains("copying scores:");
    let heads = h.state().analysis.ablation.len();
    assert_eq!(heads, 6, "ablation switches for both layers");
    h.state_mut().analysis.ablation[4] = toylens::model::HeadMode::Zero;
    settle(&mut h);
    h.get_by_label_contains("ABLATION ACTIVE: L1H1 zero-ablated");
    let ablated = shown_analysis(&h);
    assert!(
        ablated
            .attribution
            .row("L1H1")
            .unwrap()
            .iter()
            .all(|&x| x == 0.0)
    );
    assert_ne!(ablated.attribution.logits, a.attribution.logits);
}

#[test]
fn the_analyze_tab_follows_the_weights_live_while_training() {
    let mut settings = quick_settings(200);
    settings.tab = Tab::Analyze;
    let mut h = harness_with(settings);
    h.run();
    h.get_by_role_and_label(Role::Button, "Train").click();
    h.run_steps(2);
    assert!(h.state().session.is_training());
    // While the run goes on, analyses of newer and newer weights arrive; each one is of the
    // weights it was keyed by, and they differ.
    let mut seen: Vec<(toylens::app::views::ViewKey, f32)> = Vec::new();
    step_until(&mut h, 120, |app| {
        app.session.is_training()
            && app
                .analysis
                .analyze
                .latest()
                .and_then(|r| r.as_ref().ok())
                .is_some_and(|a| a.attribution.sum_error() < 1e-5)
            && app.session.history.len() >= 3
    });
    step_until(&mut h, 120, |app| {
        if let Ok(key) = app.analyze_key()
            && let Some(Ok(a)) = app.analysis.analyze.get(&key)
            && seen.last().is_none_or(|(v, _)| *v != key.view)
        {
            seen.push((key.view.clone(), a.attribution.logits[0]));
        }
        seen.len() >= 3 || !app.session.is_training()
    });
    assert!(seen.len() >= 2, "analyses of only {seen:?} while training");
    assert!(
        seen.windows(2).any(|w| w[0].1 != w[1].1),
        "the logits did not change with the weights: {seen:?}"
    );
    h.state_mut().apply(toylens::app::Action::Stop);
    step_until(&mut h, 60, |app| !app.session.is_training());
}

/// Writes `lines` of a JSON Lines data file and a vocabulary beside it.
fn write_data(dir: &Path, name: &str, lines: &[String], vocab: &[&str]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n")).unwrap();
    std::fs::write(
        dir.join("vocab.json"),
        serde_json::to_string(vocab).unwrap(),
    )
    .unwrap();
    path
}

/// Three letters of nine, `|`, then the three reversed; the reversal scored.
fn reverse_lines(samples: usize) -> Vec<String> {
    (0..samples)
        .map(|i| {
            let word = [i % 9, (i / 9) % 9, (i / 81 + i) % 9];
            let tokens: Vec<usize> = word
                .iter()
                .copied()
                .chain([9])
                .chain(word.iter().rev().copied())
                .collect();
            format!("{{\"tokens\": {tokens:?}, \"loss_mask\": [0, 0, 0, 1, 1, 1, 0]}}")
        })
        .collect()
}

const LETTERS: [&str; 10] = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "|"];

#[test]
fn a_data_file_trains_with_named_tokens_in_every_view() {
    use toylens::app::Action;
    use toylens::app::files::Purpose;
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path(), "rev.jsonl", &reverse_lines(500), &LETTERS);
    let mut h = harness();
    h.run();
    // The Task menu's "From a file…": without dialogs, a path field.
    h.state_mut().apply(Action::ChooseData);
    h.run();
    h.get_by_label("Data file path");
    h.state_mut()
        .apply(Action::PathChosen(Purpose::TrainData, data.clone()));
    step_until(&mut h, 30, |app| {
        app.settings.config.task.sequences().is_some()
    });
    h.get_by_label_contains("rev.jsonl: 500 sequences of 7 tokens; Train trains a new model");
    {
        let cfg = &mut h.state_mut().settings.config;
        assert_eq!((cfg.model.d_vocab, cfg.model.n_ctx), (10, 7));
        cfg.train.epochs = 4;
        cfg.train.batch_size = 32;
        cfg.train.lr = 3e-3;
    }
    h.state_mut().settings.tab = Tab::Training;
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Train").click();
    step_until(&mut h, 120, |app| {
        !app.session.is_training() && app.session.history.len() == 4
    });
    h.get_by_label_contains("rev.jsonl: evaluated every 1 epochs on the");
    let series = &h.state().session.series;
    assert_eq!(series.val_seq_acc.len(), 4);
    assert_eq!(series.acc_by_position.len(), 7);
    assert!(series.acc_by_position[3].len() == 4 && series.acc_by_position[0].is_empty());
    // The Data tab lists the sequences by name, graded by the model.
    h.state_mut().settings.tab = Tab::Data;
    settle(&mut h);
    h.get_by_label_contains("500 sequences of 7 tokens, 10 token ids: ");
    match h.state().analysis.data.latest() {
        Some(Ok(DataView::Sequences(table))) => {
            let (_, right) = table.graded.as_ref().expect("graded by the model in view");
            assert_eq!(right.len(), 500);
        }
        _ => panic!("the Data tab shows no sequences"),
    }
    h.get_by_label_contains("right (");
    h.get_by_label_contains("a a a | a a a");
    // Evaluate: accuracy by position, the confusion of targets by name, the worst sequences.
    h.state_mut().settings.tab = Tab::Evaluate;
    settle(&mut h);
    h.get_by_label_contains("validation sequences of rev.jsonl");
    h.get_by_label_contains("Sequences with the highest loss");
    let report = h
        .state()
        .analysis
        .sequence_report
        .latest()
        .unwrap()
        .as_ref()
        .unwrap();
    assert_eq!(report.tokens, (0..9).collect::<Vec<u32>>());
    // Inspect takes a sequence typed by name; the expected token comes from the data.
    h.state_mut().settings.tab = Tab::Inspect;
    h.state_mut().settings.sequence = "b c d | d c".into();
    settle(&mut h);
    h.get_by_label_contains("expected b");
}

#[test]
fn a_dataset_attaches_to_an_opened_model_which_train_fine_tunes() {
    use toylens::app::Action;
    use toylens::app::files::Purpose;
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tl_pth");
    let pth = dir.path().join("model.pth");
    std::fs::copy(fixtures.join("model.pth"), &pth).unwrap();
    std::fs::copy(fixtures.join("config.json"), dir.path().join("config.json")).unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let data = write_data(&data_dir, "rev.jsonl", &reverse_lines(200), &LETTERS);
    let long = data_dir.join("long.jsonl");
    std::fs::write(&long, "{\"tokens\": [1, 2, 3, 4, 5, 6, 7, 8, 9]}\n").unwrap();
    let mut h = harness();
    h.run();
    open_by_path(&mut h, &pth);
    let opened = h.state().session.weights.clone();
    assert!(!h.state().session.config.task.has_data());
    // The tabs without data offer to attach some.
    h.state_mut().settings.tab = Tab::Evaluate;
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Attach a dataset…")
        .click();
    h.run();
    h.get_by_label("Data file path");
    // A file the model cannot take: one message, nothing changes.
    h.state_mut()
        .apply(Action::PathChosen(Purpose::AttachData, long));
    step_until(&mut h, 30, |app| !app.busy_io);
    h.get_by_label_contains(
        "cannot attach long.jsonl: the data's sequences have 9 tokens; the model takes at most 8",
    );
    assert!(!h.state().session.config.task.has_data());
    // A file it can: the model in view takes it as its task, and is measured on it.
    h.state_mut()
        .apply(Action::PathChosen(Purpose::AttachData, data));
    step_until(&mut h, 30, |app| !app.busy_io);
    h.get_by_label_contains("attached rev.jsonl: 200 sequences of 7 tokens to the model in view");
    assert!(h.state().session.config.task.sequences().is_some());
    assert_eq!(h.state().session.weights, opened);
    settle(&mut h);
    h.get_by_label_contains("validation sequences of rev.jsonl");
    // Train fine-tunes the opened weights: the run starts from them.
    assert!(h.state().settings.train_from_view && h.state().fine_tunes());
    h.state_mut().settings.config.train.epochs = 2;
    h.state_mut().settings.tab = Tab::Training;
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Train").click();
    h.run_steps(2);
    // Unsaved (the data attached), yet nothing to lose: the weights are the run's start.
    assert!(h.state().confirm.is_none());
    step_until(&mut h, 120, |app| {
        !app.session.is_training() && app.session.history.len() == 2
    });
    assert_eq!(h.state().session.snapshots[0].weights, opened);
    assert_ne!(h.state().session.weights, opened);
    // Saved, it remembers its data: reopened, the task is back.
    let saved = dir.path().join("tuned.safetensors");
    h.state_mut().apply(Action::SavePath(saved.clone()));
    step_until(&mut h, 30, |app| !app.busy_io);
    let ckpt = toylens::checkpoint::Checkpoint::load(&saved).unwrap();
    assert_eq!(ckpt.config.task, h.state().session.config.task);
    assert!(ckpt.config.task.sequence_data().is_some());
}

#[test]
fn every_bad_data_file_says_why_and_changes_nothing() {
    use toylens::app::Action;
    use toylens::app::files::Purpose;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, bytes: &[u8]| {
        let path = d.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    std::fs::write(d.join("vocab.json"), r#"["a", "b", "|"]"#).unwrap();
    let npy_floats = common::npy_bytes("<f4", "(1, 2)", 8);
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (write("empty.jsonl", b""), "holds no sequences"),
        (
            write(
                "ragged.jsonl",
                b"{\"tokens\": [\"a\", \"b\"]}\n{\"tokens\": [\"a\"]}\n",
            ),
            "line 2, \"tokens\"",
        ),
        (
            write("unknown.jsonl", b"{\"tokens\": [\"a\", \"z\"]}\n"),
            "\"z\"",
        ),
        (
            write("outside.jsonl", b"{\"tokens\": [0, 7]}\n"),
            "token 7 is outside the vocabulary",
        ),
        (
            write(
                "mask.jsonl",
                b"{\"tokens\": [\"a\", \"b\"], \"loss_mask\": [1, 0, 0]}\n",
            ),
            "\"loss_mask\": has 3 entries for 2 tokens",
        ),
        (
            write(
                "nothing.jsonl",
                b"{\"tokens\": [\"a\", \"b\"], \"loss_mask\": [0, 0]}\n",
            ),
            "no position is scored",
        ),
        (
            write("latin1.jsonl", b"{\"tokens\": [\"\xe9\"]}\n"),
            "not UTF-8",
        ),
        (write("floats.npy", &npy_floats), "floats.npy"),
        (write("data.csv", b"a,b\n"), "unknown data format \".csv\""),
        (d.join("missing.jsonl"), "cannot read it"),
        (d.to_path_buf(), "a folder, not a data file"),
    ];
    let mut h = harness();
    h.run();
    let (settings, task) = (
        h.state().settings.config.clone(),
        h.state().session.config.task.clone(),
    );
    for (path, needle) in cases {
        for purpose in [Purpose::TrainData, Purpose::AttachData] {
            h.state_mut()
                .apply(Action::PathChosen(purpose, path.clone()));
            step_until(&mut h, 30, |app| !app.busy_io);
            let status = h.state().status.as_ref().map(|s| s.text().to_string());
            let status = status.unwrap_or_default();
            assert!(
                status.starts_with("could not read the data: ") && status.contains(needle),
                "{}: {status}",
                path.display()
            );
            h.get_by_label_contains(needle);
            assert_eq!(h.state().settings.config, settings, "{}", path.display());
            assert_eq!(h.state().session.config.task, task, "{}", path.display());
        }
    }
}

/// Settings name their data file, not its contents: a restarted app reads the file again off the
/// UI thread, or falls back to the defaults and says why when it is gone.
#[test]
fn restored_settings_read_their_data_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path(), "rev.jsonl", &reverse_lines(50), &LETTERS);
    let mut task = toylens::task::SequencesConfig::file(data.clone(), None);
    task.load(dir.path()).unwrap();
    let settings = Settings {
        config: toylens::train::RunConfig::for_sequences(task, 3),
        ..Settings::default()
    };
    // Through storage, as eframe keeps them: the data are not in it.
    let stored: Settings =
        serde_json::from_str(&serde_json::to_string(&settings).unwrap()).unwrap();
    assert!(stored.config.task.sequence_data().is_none());
    let mut h = harness_with(stored.clone());
    step_until(&mut h, 30, |app| {
        app.settings.config.task.sequence_data().is_some()
    });
    assert_eq!(h.state().settings.config, settings.config);
    assert!(h.state().train_blocker().is_none());
    std::fs::remove_file(&data).unwrap();
    let mut h = harness_with(stored);
    step_until(&mut h, 30, |app| !app.busy_io);
    assert_eq!(
        h.state().settings.config,
        toylens::train::RunConfig::default()
    );
    h.get_by_label_contains("could not read the data");
}

/// The Superposition workspace's intro run, shortened: trained from the window on a worker, a
/// snapshot per evaluation, each instance's arrows drawn, the scrubber playing back through
/// them, and the model saved and opened again by path.
#[test]
fn the_superposition_workspace_trains_scrubs_saves_and_reopens() {
    use toylens::app::superposition::TmsAction;
    let mut h = harness();
    h.run();
    h.get_by_label("Superposition").click();
    h.run();
    h.get_by_label("Feature directions W_i in the hidden plane");
    let mut draft = h.state().tms.as_ref().unwrap().draft.clone();
    assert_eq!(
        (draft.model.n_features, draft.model.n_hidden),
        (5, 2),
        "the intro preset"
    );
    draft.train.steps = 400;
    draft.train.eval_every = 20;
    h.state_mut()
        .apply(toylens::app::Action::Tms(TmsAction::Edit(Box::new(draft))));
    h.run();
    h.get_by_role_and_label(Role::Button, "Train").click();
    // A worker trains now and wakes the UI with each evaluation: frames, not settling.
    h.run_steps(2);
    step_until(&mut h, 120, |app| {
        app.tms.as_ref().is_some_and(|t| !t.is_training())
    });
    let tms = h.state().tms.as_ref().unwrap();
    assert_eq!(tms.history.len(), 20);
    assert_eq!(
        tms.snapshots.len(),
        21,
        "the untrained model and every evaluation"
    );
    assert_eq!(tms.snapshots.last().unwrap().step, 400);
    assert!(tms.dirty);
    h.get_by_label_contains("trained 400 steps");
    // Every view follows the scrubber: at the first snapshot the untrained weights are shown.
    h.state_mut()
        .apply(toylens::app::Action::Tms(TmsAction::View(Some(0))));
    h.run();
    h.get_by_label_contains("step 0 ·");
    // Played from there, one frame at a time (playback follows the wall clock, so a frame may
    // or may not advance it): every snapshot in turn, then the latest weights again.
    h.get_by_role_and_label(Role::Button, "Play").click();
    h.step();
    let mut shown = vec![h.state().tms.as_ref().unwrap().shown_index()];
    assert_eq!(shown, [0]);
    let start = Instant::now();
    while let Some(tms) = h.state().tms.as_ref().filter(|t| t.playing.is_some()) {
        if shown.last() != Some(&tms.shown_index()) {
            shown.push(tms.shown_index());
        }
        assert!(start.elapsed() < Duration::from_secs(30), "still playing");
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(shown, (0..21).collect::<Vec<_>>(), "each snapshot in turn");
    h.run();
    assert_eq!(
        h.state().tms.as_ref().unwrap().view,
        None,
        "played to the end"
    );
    h.get_by_label_contains("step 400 ·");
    // Saved, then opened in a fresh window: the same weights, history and settings.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intro.safetensors");
    type_path(&mut h, "Save…", "Save to path", &path);
    h.get_by_role_and_label(Role::Button, "Save").click();
    h.run_steps(2);
    step_until(&mut h, 30, |app| !app.busy_io);
    h.get_by_label_contains("saved");
    assert!(!h.state().tms.as_ref().unwrap().dirty);
    let saved = h.state().tms.as_ref().unwrap().checkpoint();
    let mut h = harness();
    h.run();
    open_by_path(&mut h, &path);
    assert!(
        h.state().workspace == toylens::app::Workspace::Superposition,
        "a superposition checkpoint opens its workspace"
    );
    let opened = h.state().tms.as_ref().unwrap().checkpoint();
    assert_eq!(opened.weights, saved.weights);
    assert_eq!(opened.history.len(), 20);
    assert_eq!(opened.run, saved.run);
    h.get_by_label_contains("(a superposition model)");
    // Back to the transformer's tabs, whose model was never touched.
    h.get_by_label("Transformer").click();
    h.run();
    h.get_by_label("Predicted 5");
}

/// Bad superposition settings say what to change, keep Train disabled, and change nothing when
/// asked anyway; a huge model is refused before anything is allocated.
#[test]
fn bad_superposition_settings_say_why_and_train_nothing() {
    use toylens::app::superposition::TmsAction;
    let mut h = harness();
    h.run();
    h.state_mut().apply(toylens::app::Action::Show(
        toylens::app::Workspace::Superposition,
    ));
    h.run();
    let good = h.state().tms.as_ref().unwrap().draft.clone();
    type Breaks = Box<dyn Fn(&mut toylens::superposition::TmsRun)>;
    let cases: [(&str, Breaks); 4] = [
        (
            "must not exceed n_features",
            Box::new(|r| r.model.n_hidden = 9),
        ),
        (
            "a feature probability must be in (0, 1]",
            Box::new(|r| {
                r.task.feature_probability = toylens::superposition::Probability::Constant(1.5)
            }),
        ),
        (
            "at most",
            Box::new(|r| {
                r.model.n_features = 1_000_000_000;
                r.task.importance = toylens::superposition::Importance::Decay(1.0);
            }),
        ),
        (
            "feature_probability lists 7 values for 8 instances",
            Box::new(|r| r.model.n_instances = 8),
        ),
    ];
    for (message, break_it) in cases {
        let mut draft = good.clone();
        break_it(&mut draft);
        h.state_mut()
            .apply(toylens::app::Action::Tms(TmsAction::Edit(Box::new(draft))));
        h.run();
        h.get_by_label_contains(message);
        assert!(!enabled(&h, "Train"), "{message}: Train must be disabled");
        h.state_mut()
            .apply(toylens::app::Action::Tms(TmsAction::Train));
        h.run();
        assert!(
            !h.state().tms.as_ref().unwrap().is_training(),
            "{message}: trained anyway; status {:?}",
            h.state().status
        );
        h.get_by_label_contains("cannot train: fix the settings first");
        assert_eq!(h.state().tms.as_ref().unwrap().run, good, "{message}");
    }
}

/// The phase-diagram preset's workspace draws its map (a cell per instance), and a click on a
/// cell selects that instance.
#[test]
fn the_phase_preset_draws_its_map() {
    use toylens::app::superposition::TmsAction;
    let mut h = harness();
    h.run();
    h.state_mut()
        .apply(toylens::app::Action::Tms(TmsAction::Preset(
            toylens::superposition::TmsPreset::Phase,
        )));
    h.run();
    h.get_by_label("Phase diagram: how the second feature is represented");
    h.get_by_label("superposition");
    assert_eq!(h.state().tms.as_ref().unwrap().run.model.n_instances, 256);
    h.state_mut()
        .apply(toylens::app::Action::Tms(TmsAction::Select(300)));
    h.run();
    assert_eq!(h.state().tms.as_ref().unwrap().instance, 255, "clamped");
}

/// The Features workspace on the bundled model: an SAE trained from the window on a worker, its
/// curves, the feature table and a latent's dashboard; an example opens in the Inspect tab,
/// which lists the latents at each position; the SAE saved as SAELens does and opened again;
/// SAE folders that do not fit are refused and change nothing.
#[test]
fn the_features_workspace_trains_an_sae_and_shows_its_latents() {
    use toylens::app::Workspace;
    use toylens::app::features::{SaeAction, Summary};
    use toylens::sae::Architecture;
    let mut h = harness();
    h.run();
    h.get_by_label("Features").click();
    h.run();
    assert_eq!(h.state().workspace, Workspace::Features);
    h.get_by_label("No SAE yet");
    let mut draft = h.state().sae.draft.clone();
    // The bundled model is attention-only: the last residual stream, at its answer position.
    assert_eq!(draft.hook, "blocks.0.hook_resid_post");
    assert_eq!(draft.positions, toylens::sae::Positions::Last);
    draft.run.d_sae = 24;
    draft.run.steps = 60;
    draft.run.eval_every = 20;
    draft.run.batch_size = 512;
    draft.run.architecture = Architecture::TopK {
        k: 3,
        aux_coefficient: 1.0,
    };
    h.state_mut()
        .apply(toylens::app::Action::Sae(SaeAction::Edit(Box::new(draft))));
    h.run();
    h.get_by_role_and_label(Role::Button, "Train").click();
    // A worker trains now and wakes the UI with each evaluation: frames, not settling.
    h.run_steps(2);
    step_until(&mut h, 120, |app| {
        !app.sae.is_training() && matches!(app.sae.summary, Summary::Ready(..))
    });
    let sae = &h.state().sae;
    assert_eq!(sae.history.len(), 3);
    assert!(sae.history.iter().all(|m| m.ce.is_some() && m.l0 <= 3.0));
    assert!(sae.attached.as_ref().unwrap().dirty);
    let features = sae.features().unwrap().clone();
    assert_eq!(features.len(), 24);
    h.get_by_label_contains("trained the SAE: step 60");
    // In the status line and over its curve.
    assert_eq!(
        h.query_all_by_label_contains("CE loss recovered").count(),
        2
    );
    h.get_by_label("24 latents");
    h.get_by_label("Feature density (log10 of each latent's firing rate)");
    // The densest latent's dashboard: its logit effect and top examples.
    let densest = (0..24)
        .max_by(|&a, &b| features[a].density.total_cmp(&features[b].density))
        .unwrap();
    h.state_mut()
        .apply(toylens::app::Action::Sae(SaeAction::Select(Some(densest))));
    h.run();
    h.get_by_label(&format!("Latent {densest}"));
    h.get_by_label("Logit effect (W_dec · W_U)");
    h.get_by_label("Top activating examples");
    let example = match &features[densest].top[0].origin {
        toylens::sae::Origin::Token { sequence, .. } => sequence.clone(),
        other => panic!("{other:?}"),
    };
    h.state_mut()
        .apply(toylens::app::Action::InspectSequence(example.clone()));
    h.run();
    assert_eq!(h.state().workspace, Workspace::Transformer);
    settle(&mut h);
    h.get_by_label("SAE latents at blocks.0.hook_resid_post");
    let latents = h.state().inspector.latents.clone().unwrap();
    let rows = latents.positions.as_ref().unwrap();
    assert_eq!(rows.len(), example.len());
    assert!(
        rows.last().unwrap().iter().any(|&(l, _)| l == densest),
        "the latent fires where its example did: {rows:?}"
    );
    // Saved as SAELens does, detached, and opened again: the same weights.
    h.get_by_label("Features").click();
    h.run();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("sae");
    type_path(&mut h, "Save SAE…", "Save SAE into folder", &folder);
    h.get_by_role_and_label(Role::Button, "Save").click();
    h.run_steps(2);
    step_until(&mut h, 30, |app| !app.busy_io);
    assert!(folder.join("cfg.json").exists() && folder.join("sae_weights.safetensors").exists());
    let saved = h.state().sae.attached.as_ref().unwrap().sae.clone();
    assert!(!h.state().sae.attached.as_ref().unwrap().dirty);
    h.get_by_role_and_label(Role::Button, "Detach").click();
    h.run();
    assert!(h.state().sae.attached.is_none());
    type_path(&mut h, "Open SAE…", "Open SAE folder", &folder);
    h.get_by_role_and_label(Role::Button, "Open").click();
    h.run_steps(2);
    step_until(&mut h, 30, |app| !app.busy_io);
    let opened = h.state().sae.attached.as_ref().unwrap().sae.clone();
    assert_eq!(opened.weights, saved.weights);
    assert_eq!(opened.history.len(), 3);
    // The opened SAE's feature table is computed on a worker; it must be in view before the
    // next clicks, or its arrival mid-way would change the frames they are checked on.
    step_until(&mut h, 60, |app| app.sae.features().is_some());
    h.run();
    assert_eq!(h.state().sae.features().unwrap().len(), 24);
    h.get_by_label("24 latents");
    // An SAE of another width, and a folder that is no SAE: refused, the SAE in view kept.
    let wide = dir.path().join("wide");
    toylens::checkpoint::SaeCheckpoint {
        weights: toylens::sae::SaeWeights::init(12, 8, 0.1, 0),
        ..(*saved).clone()
    }
    .save(&wide)
    .unwrap();
    for (folder, says) in [
        (&wide, "the SAE reads 12 values at blocks.0.hook_resid_post"),
        (&dir.path().to_path_buf(), "cannot open the SAE"),
    ] {
        type_path(&mut h, "Open SAE…", "Open SAE folder", folder);
        h.get_by_role_and_label(Role::Button, "Open").click();
        h.run_steps(2);
        step_until(&mut h, 30, |app| !app.busy_io);
        h.get_by_label_contains(says);
        assert_eq!(
            h.state().sae.attached.as_ref().unwrap().sae.weights,
            saved.weights
        );
        assert!(h.state().sae.features().is_some(), "the feature table kept");
    }
}

/// The Sweep workspace on a real sweep folder: opened by path before any run has finished (every
/// cell empty), filled in live while the runs go on in another process, mapped by regime or
/// by any metric (each cell the median of its seeds, checked against the runs' results); a
/// cell's runs overlaid and one opened with its history; the table exported; a folder that is
/// no sweep refused, the sweep in view kept.
#[test]
fn the_sweep_workspace_maps_a_sweep_live_and_opens_its_runs() {
    use toylens::app::Workspace;
    use toylens::app::sweeps::{CellValue, SweepAction};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("grid");
    let toylens = env!("CARGO_BIN_EXE_toylens");
    // Written, not run: `--dry-run` only writes the Slurm script.
    let o = std::process::Command::new(toylens)
        .args(["sweep", "--preset", "grokking-fast", "--grid", "task.p=11"])
        .args([
            "--grid",
            "train.lr=0.001,0.003",
            "--grid",
            "train.weight_decay=0.1,1",
        ])
        .args([
            "--epochs",
            "30",
            "--grid",
            "train.eval_every=5",
            "--seeds",
            "0..2",
        ])
        .args(["--executor", "slurm", "--dry-run", "--out"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut h = harness();
    h.run();
    type_path(&mut h, "Open…", "Open path", &root);
    h.get_by_role_and_label(Role::Button, "Open").click();
    h.run();
    step_until(&mut h, 30, |app| {
        app.workspace == Workspace::Sweep && app.sweep.as_ref().is_some_and(|s| s.read_once)
    });
    // Nothing has finished: the map shows the runs' status, every cell empty.
    h.get_by_label("status over train.lr × train.weight_decay");
    let sweep = h.state().sweep.as_ref().unwrap();
    assert_eq!((sweep.map.cols.len(), sweep.map.rows.len()), (2, 2));
    assert!(sweep.map.cells.iter().all(|c| c.value == CellValue::Empty));
    assert!(sweep.map.cells.iter().all(|c| c.runs.len() == 2));
    h.get_by_label_contains("8 runs: 0 finished, 0 started, 8 not started");
    // A run under way (a history, no result yet): its cell says how far it has come.
    std::fs::write(
        root.join("0/metrics.jsonl"),
        "{\"epoch\":5,\"train_loss\":2.0}\n{\"epoch\":10,\"train_loss\":1.5}\n",
    )
    .unwrap();
    step_until(&mut h, 30, |app| {
        app.sweep.as_ref().unwrap().summary.started.len() == 1
    });
    h.get_by_label_contains("8 runs: 0 finished, 1 started, 7 not started");
    let sweep = h.state().sweep.as_ref().unwrap();
    let under_way: Vec<_> = sweep.map.cells.iter().filter(|c| c.under_way()).collect();
    assert_eq!(under_way.len(), 1);
    assert_eq!(under_way[0].value, CellValue::Empty);
    let progress = under_way[0].runs.iter().find_map(|r| r.progress.clone());
    assert_eq!(progress.unwrap().at, Some(("epoch", 10)));
    // The runs, in another process; the map follows.
    let runner = std::process::Command::new(toylens)
        .args(["sweep", "resume"])
        .arg(&root)
        .output();
    let runner = runner.unwrap();
    assert!(
        runner.status.success(),
        "{}",
        String::from_utf8_lossy(&runner.stderr)
    );
    step_until(&mut h, 30, |app| {
        app.sweep.as_ref().unwrap().summary.rows.len() == 8
    });
    h.get_by_label_contains("8 runs: 8 finished, 0 started, 0 not started");
    h.get_by_label("regime over train.lr × train.weight_decay");
    let sweep = h.state().sweep.as_ref().unwrap();
    assert!(
        sweep
            .map
            .cells
            .iter()
            .all(|c| matches!(&c.value, CellValue::Category(r) if toylens::sweep::REGIMES.contains(&r.as_str()))),
        "{:?}",
        sweep.map.cells
    );
    // By test accuracy: each cell the median (mean of two) of its seeds' results.
    h.state_mut()
        .apply(toylens::app::Action::Sweep(SweepAction::Metric(
            "test_acc".into(),
        )));
    h.run();
    let sweep = h.state().sweep.as_ref().unwrap();
    for (k, cell) in sweep.map.cells.iter().enumerate() {
        let accs: Vec<f64> = cell
            .runs
            .iter()
            .map(|run| {
                let text =
                    std::fs::read_to_string(root.join(run.index.to_string()).join("result.json"))
                        .unwrap();
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                v["metrics"]["test_acc"].as_f64().unwrap()
            })
            .collect();
        let want = (accs[0] + accs[1]) / 2.0;
        assert_eq!(cell.value, CellValue::Number(want), "cell {k}");
    }
    h.get_by_label("test_acc over train.lr × train.weight_decay");
    // On a log colour scale, positions follow log10 of the values.
    h.state_mut()
        .apply(toylens::app::Action::Sweep(SweepAction::LogScale(true)));
    h.run();
    let map = &h.state().sweep.as_ref().unwrap().map;
    let (lo, hi) = map.range.unwrap();
    assert!(map.log && lo > 0.0);
    assert_eq!((map.position(lo), map.position(hi)), (0.0, 1.0));
    let mid = (lo * hi).sqrt();
    assert!((map.position(mid) - 0.5).abs() < 1e-9 || hi == lo);
    h.get_by_label("(log scale)");
    // A cell's runs and their curves.
    h.state_mut()
        .apply(toylens::app::Action::Sweep(SweepAction::Select(Some((
            1, 0,
        )))));
    step_until(&mut h, 10, |app| {
        app.sweep.as_ref().unwrap().histories.len() == 2
    });
    let sweep = h.state().sweep.as_ref().unwrap();
    assert!(sweep.histories.iter().all(|r| r.evaluations.len() == 6));
    h.get_by_label("Curves of");
    let first = sweep.map.cell(1, 0).unwrap().runs[0].index;
    // The table, exported.
    h.state_mut()
        .apply(toylens::app::Action::Sweep(SweepAction::ExportCsv));
    h.run();
    let csv = dir.path().join("table.csv");
    h.get_by_label("Save to path").focus();
    h.run();
    h.get_by_label("Save to path")
        .type_text(csv.to_str().unwrap());
    h.run();
    h.get_by_role_and_label(Role::Button, "Save").click();
    h.run();
    step_until(&mut h, 10, |_| csv.is_file());
    let written = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(written.lines().count(), 9, "{written}");
    assert!(
        written.starts_with(
            "index,task.p,train.lr,train.weight_decay,train.eval_every,train.epochs,seed,"
        ),
        "{written}"
    );
    // A folder that is no sweep: refused, the sweep stays.
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("sweep.json"), "{ not json").unwrap();
    type_path(&mut h, "Open…", "Open path", &plain);
    h.get_by_role_and_label(Role::Button, "Open").click();
    h.run();
    step_until(
        &mut h,
        10,
        |app| matches!(&app.status, Some(toylens::app::Status::Error(e)) if e.contains("cannot open the sweep")),
    );
    assert_eq!(h.state().sweep.as_ref().unwrap().root(), root.as_path());
    // A run opened with its history, in the transformer's tabs.
    h.state_mut()
        .apply(toylens::app::Action::Sweep(SweepAction::OpenRun(first)));
    step_until(&mut h, 30, |app| {
        !app.busy_io && app.workspace == Workspace::Transformer
    });
    let checkpoint = root.join(first.to_string()).join("checkpoint.safetensors");
    assert_eq!(
        h.state().session.file.as_deref(),
        Some(checkpoint.as_path())
    );
    assert_eq!(h.state().session.history.len(), 6);
}
