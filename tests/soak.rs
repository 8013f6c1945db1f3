//! The GUI soak test: the real app driven through thousands of random user actions, checking
//! after each that nothing panicked, the model in view is valid, every button is enabled exactly
//! when its action is possible, and no unsaved model was ever marked saved or dropped unasked.
//!
//! `TOYLENS_SOAK_STEPS=N` runs N actions (default 250, well under a minute in a debug build);
//! `TOYLENS_SOAK_SEED=S` picks another action sequence.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use toylens::app::{Action, Settings, Tab, ToylensApp, Workspace};
use toylens::checkpoint::Checkpoint;
use toylens::model::HeadMode;
use toylens::task::{TaskConfig, TaskKind};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A side-panel number field: its label and the widget's range.
struct Field {
    label: &'static str,
    min: f64,
    max: f64,
}

const FIELDS: [Field; 24] = [
    Field {
        label: "Vocabulary",
        min: 1.0,
        max: 1_000.0,
    },
    Field {
        label: "Half length",
        min: 1.0,
        max: 256.0,
    },
    Field {
        label: "Validation sequences",
        min: 0.0,
        max: 100_000.0,
    },
    Field {
        label: "Modulus p",
        min: 1.0,
        max: 1_000.0,
    },
    Field {
        label: "Train fraction",
        min: 0.0,
        max: 1.0,
    },
    Field {
        label: "Steps",
        min: 0.0,
        max: 10_000_000.0,
    },
    Field {
        label: "Evaluate every",
        min: 0.0,
        max: 1_000_000.0,
    },
    Field {
        label: "Seed",
        min: 0.0,
        max: 1e6,
    },
    Field {
        label: "Sequence length",
        min: 1.0,
        max: 64.0,
    },
    Field {
        label: "Signal probability",
        min: 0.0,
        max: 1.0,
    },
    Field {
        label: "Noise tokens up to",
        min: 5.0,
        max: 999.0,
    },
    Field {
        label: "Train samples",
        min: 0.0,
        max: 10_000_000.0,
    },
    Field {
        label: "Validation samples",
        min: 0.0,
        max: 1_000_000.0,
    },
    Field {
        label: "Layers",
        min: 1.0,
        max: 12.0,
    },
    Field {
        label: "d_model",
        min: 1.0,
        max: 1024.0,
    },
    Field {
        label: "Heads",
        min: 0.0,
        max: 16.0,
    },
    Field {
        label: "d_head",
        min: 0.0,
        max: 64.0,
    },
    Field {
        label: "Init range",
        min: 0.0,
        max: 1.0,
    },
    Field {
        label: "Learning rate",
        min: -1.0,
        max: 10.0,
    },
    Field {
        label: "Weight decay",
        min: -1.0,
        max: 10.0,
    },
    Field {
        label: "Batch size",
        min: 0.0,
        max: 1_000_000.0,
    },
    Field {
        label: "Epochs",
        min: 0.0,
        max: 1_000_000.0,
    },
    Field {
        label: "Beta 1",
        min: 0.0,
        max: 0.9999,
    },
    Field {
        label: "Beta 2",
        min: 0.0,
        max: 0.99999,
    },
];

/// The side panel's choices, each with its options as the combo box lists them.
const CHOICES: [(&str, &[&str]); 5] = [
    ("Embeddings", &["learned", "one-hot"]),
    ("Normalization", &["none", "LN", "LNPre"]),
    ("Positions", &["standard", "shortformer", "none"]),
    ("Activation", &["relu", "gelu", "gelu_new"]),
    ("Optimizer", &["Adam", "AdamW"]),
];

struct Soak {
    h: Harness<'static, ToylensApp>,
    rng: StdRng,
    dir: tempfile::TempDir,
    good_file: PathBuf,
    corrupt_file: PathBuf,
    /// The user answered "Discard and …" since the last check: a dirty model may be replaced.
    discard_confirmed: bool,
    actions: usize,
    trained: usize,
    /// Data files that became a task: of the settings, and of the model in view.
    data_read: (usize, usize),
    /// The slowest frame seen (logic and layout on the UI thread; no rasterising here), and
    /// where: reported, not asserted, since timings do not belong in tests.
    slowest_frame: (f32, String),
}

/// Data files for "From a file…" and "Attach a dataset…": a copy task (ids below 10, 7 tokens:
/// it fits the TransformerLens state dict the soak opens) and files that are wrong in one way
/// each.
fn write_data_files(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let copy: Vec<String> = (0..120)
        .map(|i| {
            let w = [i % 9, (i / 9) % 9, (i + 4) % 9];
            format!(
                "{{\"tokens\": [{}, {}, {}, 9, {}, {}, {}], \"loss_mask\": [0, 0, 0, 1, 1, 1, 0]}}",
                w[0], w[1], w[2], w[0], w[1], w[2]
            )
        })
        .collect();
    std::fs::write(dir.join("copy.jsonl"), copy.join("\n")).unwrap();
    std::fs::write(
        dir.join("ragged.jsonl"),
        "{\"tokens\": [1, 2]}\n{\"tokens\": [1]}\n",
    )
    .unwrap();
    std::fs::write(dir.join("latin1.jsonl"), b"{\"tokens\": [\"\xe9\"]}\n").unwrap();
    std::fs::write(dir.join("empty.jsonl"), "").unwrap();
    std::fs::write(
        dir.join("long.jsonl"),
        format!(
            "{{\"tokens\": {:?}}}\n",
            (0..40).map(|i| i % 9).collect::<Vec<_>>()
        ),
    )
    .unwrap();
    // A .npy of float32, not token ids.
    std::fs::write(
        dir.join("floats.npy"),
        common::npy_bytes("<f4", "(2, 3)", 24),
    )
    .unwrap();
}

impl Soak {
    fn new(seed: u64) -> Self {
        let h = Harness::builder()
            .with_size([1280.0, 800.0])
            // Users type emoji too; the app draws them as boxes, as it does outside tests.
            .allow_missing_glyphs()
            .build_eframe(|cc| {
                let mut app = ToylensApp::with_settings(cc.egui_ctx.clone(), Settings::default());
                app.dialogs_enabled = false;
                app
            });
        let dir = tempfile::tempdir().unwrap();
        let good_file = dir.path().join("good.safetensors");
        std::fs::write(&good_file, toylens::app::BUNDLED_CHECKPOINT).unwrap();
        write_data_files(&dir.path().join("data"));
        let corrupt_file = dir.path().join("corrupt.safetensors");
        let mut bytes = toylens::app::BUNDLED_CHECKPOINT.to_vec();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&corrupt_file, bytes).unwrap();
        Self {
            h,
            rng: StdRng::seed_from_u64(seed),
            dir,
            good_file,
            corrupt_file,
            discard_confirmed: false,
            actions: 0,
            trained: 0,
            data_read: (0, 0),
            slowest_frame: (0.0, String::new()),
        }
    }

    fn app(&self) -> &ToylensApp {
        self.h.state()
    }

    /// A few frames, with a pause so workers and jobs can answer.
    fn frames(&mut self, n: usize) {
        for _ in 0..=n {
            self.h.step();
            self.note_frame_time();
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    fn note_frame_time(&mut self) {
        let app = self.h.state();
        if let Some(&ms) = app.frame_times.recent_ms.back()
            && ms > self.slowest_frame.0
        {
            let c = &app.session.config;
            if app.workspace == Workspace::Features {
                let sae = &app.sae.draft;
                self.slowest_frame = (
                    ms,
                    format!(
                        "Features workspace, an SAE of {} latents on {}",
                        sae.run.d_sae, sae.hook
                    ),
                );
                return;
            }
            if let Some(tms) = app
                .tms
                .as_ref()
                .filter(|_| app.workspace == Workspace::Superposition)
            {
                let model = &tms.run.model;
                self.slowest_frame = (
                    ms,
                    format!(
                        "Superposition workspace, {} instances of {} features into {}",
                        model.n_instances, model.n_features, model.n_hidden
                    ),
                );
                return;
            }
            self.slowest_frame = (
                ms,
                format!(
                    "{:?} tab, model vocab {} × {} heads of {}, seq_len {}",
                    app.settings.tab,
                    c.model.d_vocab,
                    c.model.n_heads,
                    c.model.d_head,
                    c.task.seq_len()
                ),
            );
        }
    }

    /// Clicks the first enabled button labelled `label`; false if there is none.
    fn click(&mut self, label: &str) -> bool {
        let node = self
            .h
            .query_all_by_role_and_label(Role::Button, label)
            .find(|n| !n.accesskit_node().is_disabled());
        match node {
            Some(n) => {
                n.click_accesskit();
                self.frames(1);
                true
            }
            None => false,
        }
    }

    fn button_enabled(&self, label: &str) -> Option<bool> {
        self.h
            .query_all_by_role_and_label(Role::Button, label)
            .next()
            .map(|n| !n.accesskit_node().is_disabled())
    }

    /// Answers a confirmation dialog if one is open: discard or cancel, at random.
    fn answer_confirmation(&mut self) {
        if self.app().confirm.is_none() {
            return;
        }
        let yes = [
            "Discard and train",
            "Discard and reset",
            "Discard and open",
            "Reopen",
        ];
        if self.rng.random_bool(0.6)
            && let Some(label) = yes.iter().find(|l| self.button_enabled(l) == Some(true))
        {
            self.discard_confirmed = true;
            self.click(label);
        } else {
            self.click("Cancel");
        }
    }

    fn set_field(&mut self) {
        let field = &FIELDS[self.rng.random_range(0..FIELDS.len())];
        // Each task shows its own fields, and the training length in its own unit.
        let kind = self.app().settings.config.task.kind();
        let shown = match field.label {
            "Sequence length" | "Signal probability" | "Noise tokens up to" | "Train samples"
            | "Validation samples" => kind == TaskKind::SkipTrigram,
            "Vocabulary" | "Half length" | "Validation sequences" | "Steps" => {
                kind == TaskKind::Induction
            }
            "Modulus p" | "Train fraction" => kind == TaskKind::ModularAddition,
            "Epochs" => kind != TaskKind::Induction,
            _ => true,
        };
        if !shown {
            return;
        }
        // The widget's edges a third of the time, values just past them (which the widget clamps)
        // sometimes, otherwise anywhere in between (mostly small, where most settings are).
        let value = match self.rng.random_range(0..10) {
            0 | 1 => field.min,
            2 | 3 => field.max,
            4 => field.min - 1.0,
            5 => field.max * 2.0 + 1.0,
            6 | 7 => self.rng.random_range(field.min..=field.max),
            _ => {
                let small = field.min + (field.max - field.min) * 0.01;
                self.rng.random_range(field.min..=small)
            }
        };
        let Some(node) = self
            .h
            .query_all_by_role_and_label(Role::SpinButton, field.label)
            .next()
        else {
            panic!("no field \"{}\" in the side panel", field.label);
        };
        node.set_value_accesskit(value);
        self.frames(1);
    }

    /// Whether training the settings would finish its first epochs quickly (the soak trains only
    /// those; the heavy ones are covered by validation and the views).
    fn light_settings(&self) -> bool {
        let c = &self.app().settings.config;
        let data = match &c.task {
            TaskConfig::SkipTrigram(t) => {
                t.train_size * t.seq_len <= 400_000 && t.val_size * t.seq_len <= 100_000
            }
            TaskConfig::Induction(t) => {
                c.train.batch_size * t.seq_len() <= 4_000 && t.val_size * t.seq_len() <= 20_000
            }
            TaskConfig::ModularAddition(t) => t.p <= 60,
            TaskConfig::Sequences(t) => t.data().is_some_and(|d| d.tokens.len() <= 400_000),
            // Nothing trains without a task.
            TaskConfig::None(_) => true,
        };
        data && c.task.vocab_size() <= 64
            && c.model.n_heads * c.model.d_head <= 64
            && c.model.n_layers * c.model.d_model <= 256
            && (!c.model.has_mlp() || c.model.d_mlp() <= 256)
    }

    /// Picks an option of a combo box by clicking it open and clicking the option, toggles the
    /// MLP checkbox, or sets d_mlp when the MLP is on.
    fn choose_architecture(&mut self) {
        match self.rng.random_range(0..4) {
            0 => {
                if let Some(n) = self
                    .h
                    .query_all_by_role_and_label(Role::CheckBox, "MLP")
                    .next()
                {
                    n.click_accesskit();
                }
                self.frames(1);
            }
            1 => {
                let value = [1.0, 8.0, 64.0, 4096.0, 9999.0][self.rng.random_range(0..5)];
                if let Some(n) = self
                    .h
                    .query_all_by_role_and_label(Role::SpinButton, "d_mlp")
                    .next()
                {
                    n.set_value_accesskit(value);
                }
                self.frames(1);
            }
            _ => {
                let (label, options) = CHOICES[self.rng.random_range(0..CHOICES.len())];
                let Some(combo) = self.h.query_all_by_label(label).last() else {
                    return; // Activation shows only with an MLP.
                };
                combo.click_accesskit();
                self.frames(2);
                let option = options[self.rng.random_range(0..options.len())];
                if let Some(n) = self.h.query_all_by_label(option).last() {
                    n.click_accesskit();
                }
                self.frames(2);
            }
        }
    }

    fn random_text(&mut self) -> String {
        match self.rng.random_range(0..8) {
            0 => String::new(),
            1 => "2 x 3 0".into(),
            2 => "-1 5".into(),
            3 => "99999999999999999999 0".into(),
            4 => "1,,2, ,0".into(),
            5 => "ü 😀 \u{0} 3".into(),
            6 => (0..self.rng.random_range(1..80))
                .map(|_| self.rng.random_range(0..1200).to_string())
                .collect::<Vec<_>>()
                .join(" "),
            _ => (0..self.rng.random_range(1..6))
                .map(|_| self.rng.random_range(0..12).to_string())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    fn type_sequence(&mut self) {
        let text = self.random_text();
        self.select_tab(Tab::Inspect);
        let Some(node) = self.h.query_by_label("Sequence") else {
            return;
        };
        node.focus();
        self.frames(1);
        if let Some(node) = self.h.query_by_label("Sequence") {
            node.set_text_value_accesskit(&text);
        }
        self.frames(1);
    }

    /// The Analyze tab's inputs: a corrupted sequence typed or made, metric tokens and a
    /// position, in range or not.
    fn analyze_inputs(&mut self) {
        self.select_tab(Tab::Analyze);
        match self.rng.random_range(0..4) {
            0 => {
                let text = self.random_text();
                if let Some(node) = self.h.query_by_label("Corrupted sequence") {
                    node.focus();
                    self.frames(1);
                }
                if let Some(node) = self.h.query_by_label("Corrupted sequence") {
                    node.set_text_value_accesskit(&text);
                }
            }
            1 => {
                self.click("Corrupt the answer");
            }
            2 => {
                let pick = |rng: &mut StdRng| match rng.random_range(0..3) {
                    0 => None,
                    1 => Some(rng.random_range(0..12)),
                    _ => Some(rng.random_range(0..u32::MAX)),
                };
                let (answer, wrong) = (pick(&mut self.rng), pick(&mut self.rng));
                let a = &mut self.app_mut().analyze;
                a.answer = answer;
                a.wrong = wrong;
            }
            _ => {
                let position = match self.rng.random_range(0..3) {
                    0 => None,
                    1 => Some(self.rng.random_range(0..4)),
                    _ => Some(usize::MAX),
                };
                self.app_mut().analyze.position = position;
                self.app_mut().analyze.head = (self.rng.random_range(0..3), usize::MAX);
            }
        }
        self.frames(1);
    }

    /// The tab bar's selectable labels write `settings.tab`, as this does ("Training" also names
    /// a side-panel section, so a click by label could hit either).
    fn select_tab(&mut self, tab: Tab) {
        self.app_mut().settings.tab = tab;
        self.frames(1);
    }

    fn open_file(&mut self) {
        let pth = |name: &str| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/tl_pth")
                .join(name)
        };
        let path = match self.rng.random_range(0..7) {
            0 => self.good_file.clone(),
            1 => self.corrupt_file.clone(),
            2 => self.dir.path().join("missing.safetensors"),
            // PyTorch state dicts: one that opens, one in float16, two that are refused.
            3 => pth("model.pth"),
            4 => pth("half.pth"),
            5 => pth(if self.rng.random_bool(0.5) {
                "legacy.pth"
            } else {
                "object.pth"
            }),
            _ => PathBuf::from("/proc/self"),
        };
        if self.rng.random_bool(0.5) {
            // Through the Open… button, the confirmation and the path field.
            if !self.click("Open…") {
                return;
            }
            self.answer_confirmation();
            if self.h.query_by_label("Open path").is_some() {
                if self.rng.random_bool(0.8) {
                    self.app_mut().apply(toylens::app::Action::PathChosen(
                        toylens::app::files::Purpose::Open,
                        path,
                    ));
                } else {
                    self.click("Cancel");
                }
            }
        } else {
            // Dropped on the window.
            self.app_mut().apply(Action::OpenDropped(path));
            self.frames(1);
            self.answer_confirmation();
        }
        self.wait_for_io();
    }

    /// "From a file…" or "Attach a dataset…" with a data file, good or bad: a good one becomes
    /// the settings' task or the model in view's (where it fits), a bad one says why and changes
    /// nothing.
    fn read_data_file(&mut self) {
        let files = self.dir.path().join("data");
        let name = [
            "copy.jsonl",
            "copy.jsonl",
            "ragged.jsonl",
            "latin1.jsonl",
            "floats.npy",
            "empty.jsonl",
            "long.jsonl",
            "missing.jsonl",
        ][self.rng.random_range(0..8)];
        let path = files.join(name);
        let attach = self.rng.random_bool(0.5);
        let (action, purpose) = if attach {
            (Action::AttachData, toylens::app::files::Purpose::AttachData)
        } else {
            (Action::ChooseData, toylens::app::files::Purpose::TrainData)
        };
        let task_before = self.app().session.config.task.clone();
        self.app_mut().apply(action);
        self.frames(1);
        if self.h.query_by_label("Data file path").is_none() {
            return; // refused (training): the status says why
        }
        self.app_mut()
            .apply(toylens::app::Action::PathChosen(purpose, path));
        self.wait_for_io();
        let task = &self.app().session.config.task;
        if task != &task_before && task.sequences().is_some() {
            self.data_read.1 += 1;
        } else if !attach && self.app().settings.config.task.sequences().is_some() {
            self.data_read.0 += 1;
        }
        // A long file is data all the same: too long only for the model in view.
        let bad = !name.starts_with("copy") && (attach || name != "long.jsonl");
        if bad {
            assert_eq!(
                self.app().session.config.task,
                task_before,
                "a bad data file ({name}) changed the model in view's task"
            );
            let status = self.app().status.as_ref().map(|s| s.text().to_string());
            assert!(
                status
                    .as_deref()
                    .is_some_and(|s| s.contains("could not read") || s.contains("cannot attach")),
                "no message for {name}: {status:?}"
            );
        }
    }

    fn save_file(&mut self) {
        let path = match self.rng.random_range(0..3) {
            0 => self
                .dir
                .path()
                .join(format!("saved-{}.safetensors", self.actions)),
            1 => PathBuf::from("/proc/cannot-write-here.safetensors"),
            _ => self.dir.path().join("no/such/dir/x.safetensors"),
        };
        self.app_mut().apply(Action::SavePath(path));
        self.wait_for_io();
    }

    fn wait_for_io(&mut self) {
        let start = Instant::now();
        while self.app().busy_io && start.elapsed() < Duration::from_secs(30) {
            self.frames(1);
        }
        assert!(!self.app().busy_io, "a file operation never finished");
    }

    /// A Reset builds its model on a worker; it arrives within a few frames.
    fn wait_for_reset(&mut self) {
        let start = Instant::now();
        while self.app().resetting && start.elapsed() < Duration::from_secs(30) {
            self.frames(1);
        }
        assert!(!self.app().resetting, "a reset never finished");
    }

    fn app_mut(&mut self) -> &mut ToylensApp {
        self.h.state_mut()
    }

    /// One random action.
    fn act(&mut self) {
        self.actions += 1;
        match self.rng.random_range(0..112) {
            0..24 => self.set_field(),
            24..30 => self.choose_architecture(),
            30..36 => {
                let presets = [
                    "notebook",
                    "fast",
                    "induction",
                    "grokking",
                    "grokking-fast",
                    "sort",
                    "reverse",
                ];
                let preset = presets[self.rng.random_range(0..presets.len())];
                if let Some(n) = self.h.query_all_by_label(preset).next() {
                    n.click_accesskit();
                }
                self.frames(1);
            }
            36..44 => {
                if self.light_settings() && self.click("Train") {
                    self.answer_confirmation();
                    self.trained += 1;
                }
            }
            44..50 => {
                let label = ["Pause", "Resume", "Stop"][self.rng.random_range(0..3)];
                self.click(label);
            }
            50..55 => {
                if self.click("Reset") {
                    self.answer_confirmation();
                    self.wait_for_reset();
                }
            }
            55..65 => {
                let tab = Tab::ALL[self.rng.random_range(0..Tab::ALL.len())];
                self.select_tab(tab);
            }
            65..73 => {
                if self.rng.random_bool(0.5) {
                    self.type_sequence();
                } else {
                    self.analyze_inputs();
                }
            }
            73..76 => {
                self.select_tab(Tab::Inspect);
                let labels = [
                    "Random signal",
                    "Random noise",
                    "Random repeated sequence",
                    "Random pair",
                    "Random sequence from the data",
                ];
                // Only the current task's buttons exist; the others click nothing.
                let label = labels[self.rng.random_range(0..labels.len())];
                self.click(label);
            }
            76..81 => {
                let model = &self.app().session.config.model;
                // Now and then a stale length, as after a model with other layers or heads.
                let heads = model.n_layers * model.n_heads + self.rng.random_range(0..2);
                let modes = [HeadMode::Active, HeadMode::Zero, HeadMode::Mean];
                let ablation = (0..heads)
                    .map(|_| modes[self.rng.random_range(0..3)])
                    .collect();
                self.app_mut().analysis.ablation = ablation;
                self.frames(1);
            }
            81..86 => {
                let n = self.app().session.snapshots.len();
                let index = match self.rng.random_range(0..4) {
                    0 => None,
                    1 => Some(n + 5), // past the end, as a stale index would be
                    _ => Some(self.rng.random_range(0..n.max(1))),
                };
                self.app_mut().apply(Action::ViewEpoch(index));
                if self.rng.random_bool(0.3) {
                    self.click("Play");
                }
                self.frames(1);
            }
            86..90 => self.open_file(),
            90..93 => self.save_file(),
            93..96 => {
                let s = &mut self.app_mut().settings;
                s.circuits_no_bias ^= true;
                s.circuits_mean_subtract ^= true;
                s.log_loss ^= true;
                s.data_filter = toylens::app::DataFilter::Signal;
                self.frames(1);
            }
            96..98 => self.read_data_file(),
            100..104 => self.superposition(),
            104..108 => self.features(),
            108.. => self.sweep(),
            _ => {
                self.h
                    .input_mut()
                    .viewports
                    .entry(egui::ViewportId::ROOT)
                    .or_default()
                    .events
                    .push(egui::ViewportEvent::Close);
                self.frames(1);
                self.click("Cancel");
            }
        }
    }

    fn tms(&self) -> &toylens::app::superposition::TmsWorkspace {
        self.app().tms.as_ref().expect("the workspace is open")
    }

    /// A few random actions in the Superposition workspace, each followed by its invariants,
    /// then back to the transformer's (a run may go on training there).
    fn superposition(&mut self) {
        use toylens::app::superposition::TmsAction;
        use toylens::superposition::{Probability, TmsPreset};
        self.click("Superposition");
        for _ in 0..self.rng.random_range(2..8) {
            self.actions += 1;
            match self.rng.random_range(0..9) {
                0 => {
                    let presets = [TmsPreset::Intro, TmsPreset::Geometry, TmsPreset::Phase];
                    let preset = presets[self.rng.random_range(0..3)];
                    self.app_mut().apply(Action::Tms(TmsAction::Preset(preset)));
                }
                1 => {
                    // Edits as the form would make them, bad ones included.
                    let mut draft = self.tms().draft.clone();
                    match self.rng.random_range(0..7) {
                        0 => draft.model.n_hidden = self.rng.random_range(0..30),
                        5 => {
                            draft.task.correlated_pairs = self.rng.random_range(0..3);
                            draft.task.anticorrelated_pairs = self.rng.random_range(0..3);
                        }
                        1 => draft.model.n_features = self.rng.random_range(0..300),
                        2 => draft.model.n_instances = self.rng.random_range(0..12),
                        3 => {
                            let p = [0.0, 1e-4, 0.05, 0.5, 1.0, 1.5][self.rng.random_range(0..6)];
                            draft.task.feature_probability = Probability::LogSpaced([1.0, p]);
                        }
                        4 => draft.train.lr = [1e-3, 1e30, 0.0][self.rng.random_range(0..3)],
                        _ => draft.train.eval_every = self.rng.random_range(0..50),
                    }
                    self.app_mut()
                        .apply(Action::Tms(TmsAction::Edit(Box::new(draft))));
                }
                2 => {
                    // Light runs only: a few hundred small steps.
                    let mut draft = self.tms().draft.clone();
                    draft.train.steps = draft.train.steps.min(self.rng.random_range(1..300));
                    draft.train.batch_size = draft.train.batch_size.min(128);
                    self.app_mut()
                        .apply(Action::Tms(TmsAction::Edit(Box::new(draft))));
                    self.frames(1);
                    if self.click("Train") {
                        self.trained += 1;
                    }
                }
                3 => {
                    self.click("Stop");
                }
                4 => {
                    let label = ["Play", "Pause", "Latest"][self.rng.random_range(0..3)];
                    self.click(label);
                }
                5 => {
                    let n = self.tms().snapshots.len();
                    let index = [None, Some(n + 3), Some(self.rng.random_range(0..n))]
                        [self.rng.random_range(0..3)];
                    self.app_mut().apply(Action::Tms(TmsAction::View(index)));
                }
                6 => {
                    let i = self.rng.random_range(0..300);
                    self.app_mut().apply(Action::Tms(TmsAction::Select(i)));
                }
                7 => {
                    let path = self.dir.path().join("tms.safetensors");
                    self.app_mut().apply(Action::Tms(TmsAction::SaveAs));
                    self.app_mut().apply(Action::PathChosen(
                        toylens::app::files::Purpose::SaveTms,
                        path,
                    ));
                    self.wait_for_io();
                }
                _ => {
                    let path = self.dir.path().join("tms.safetensors");
                    if path.exists() {
                        self.app_mut().apply(Action::OpenPath(path));
                        self.wait_for_io();
                    }
                }
            }
            self.frames(1);
            let tms = self.tms();
            let shown = tms.shown();
            assert!(
                shown.weights.all_finite(),
                "non-finite superposition weights"
            );
            assert_eq!(
                shown.weights.w.len(),
                tms.run.model.n_instances * tms.run.model.n_features * tms.run.model.n_hidden,
                "the weights in view are not the run's shape"
            );
            let training = tms.is_training();
            let can_train = !training && tms.draft.validate().is_ok();
            let train = self.button_enabled("Train");
            let stop = self.button_enabled("Stop");
            assert_eq!(
                (train, stop),
                ((!training).then_some(can_train), training.then_some(true)),
                "Train and Stop after action {}: {:?}",
                self.actions,
                self.app().tms.as_ref().unwrap().train_blocker()
            );
        }
        self.click("Transformer");
    }

    /// A few random actions in the Sweep workspace (on a small sweep made once, or on folders
    /// that are no sweep), each followed by its invariants, then back to the transformer's.
    fn sweep(&mut self) {
        use toylens::app::files::Purpose;
        use toylens::app::sweeps::SweepAction;
        let root = self.dir.path().join("sweep");
        if !root.exists() {
            let o = std::process::Command::new(env!("CARGO_BIN_EXE_toylens"))
                .args(["sweep", "--preset", "fast", "--grid", "train.lr=0.01,0.03"])
                .args(["--grid", "train.batch_size=100,200", "--seeds", "0..2"])
                .args(["--epochs", "1", "--out"])
                .arg(&root)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        self.click("Sweep");
        for _ in 0..self.rng.random_range(2..8) {
            self.actions += 1;
            let n = self.rng.random_range(0..4usize);
            let action = match self.rng.random_range(0..10) {
                0 | 1 => {
                    let path = [
                        root.clone(),
                        self.dir.path().to_path_buf(),
                        self.dir.path().join("missing"),
                    ][self.rng.random_range(0..3)]
                    .clone();
                    Action::PathChosen(Purpose::OpenSweep, path)
                }
                2 => Action::Sweep(SweepAction::SetX(n)),
                3 => Action::Sweep(SweepAction::SetY([None, Some(n)][n % 2])),
                4 => Action::Sweep(SweepAction::Fix { axis: n, value: n }),
                5 => Action::Sweep(SweepAction::Metric(
                    ["regime", "score", "loss", "nonsense", "wall_s"][self.rng.random_range(0..5)]
                        .into(),
                )),
                6 => Action::Sweep(SweepAction::Select(
                    [None, Some((0, 0)), Some((1, 1)), Some((9, 0))][n],
                )),
                7 => Action::Sweep(if n % 2 == 0 {
                    SweepAction::CurveMetric("val_acc".into())
                } else {
                    SweepAction::LogScale(n == 1)
                }),
                8 => Action::Sweep(SweepAction::OpenRun([0, 3, 7, 1000][n])),
                _ => {
                    self.app_mut().apply(Action::Sweep(SweepAction::ExportCsv));
                    Action::PathChosen(Purpose::ExportCsv, self.dir.path().join("sweep.csv"))
                }
            };
            self.app_mut().apply(action);
            self.frames(2);
            self.wait_for_io();
            if let Some(sweep) = &self.app().sweep {
                let map = &sweep.map;
                assert_eq!(map.cells.len(), map.cols.len() * map.rows.len());
                if let Some((c, r)) = sweep.selected {
                    assert!(
                        c < map.cols.len() && r < map.rows.len(),
                        "{:?}",
                        sweep.selected
                    );
                }
                assert!(sweep.y != Some(sweep.x), "x and y are one axis");
            }
        }
        self.click("Transformer");
    }

    /// A few random actions in the Features workspace, each followed by its invariants, then
    /// back to the transformer's (an SAE may go on training there).
    fn features(&mut self) {
        use toylens::app::features::{FeatureSort, SaeAction, SaeTarget};
        use toylens::sae::Architecture;
        self.click("Features");
        for _ in 0..self.rng.random_range(2..8) {
            self.actions += 1;
            match self.rng.random_range(0..9) {
                0 => {
                    // Edits as the form would make them, bad ones included.
                    let mut draft = self.app().sae.draft.clone();
                    match self.rng.random_range(0..6) {
                        0 => draft.run.d_sae = [0, 1, 16, 100_000][self.rng.random_range(0..4)],
                        1 => {
                            draft.run.architecture = Architecture::TopK {
                                k: self.rng.random_range(0..40),
                                aux_coefficient: 1.0,
                            }
                        }
                        2 => draft.run.lr = [1e-3, 0.0, 1e30][self.rng.random_range(0..3)],
                        3 => {
                            draft.hook = ["blocks.0.hook_resid_post", "blocks.7.mlp.hook_post", "x"]
                                [self.rng.random_range(0..3)]
                            .into()
                        }
                        4 => draft.target = SaeTarget::Superposition,
                        _ => draft.target = SaeTarget::Transformer,
                    }
                    self.app_mut()
                        .apply(Action::Sae(SaeAction::Edit(Box::new(draft))));
                }
                1 => {
                    // Light runs only.
                    let mut draft = self.app().sae.draft.clone();
                    draft.run.steps = draft.run.steps.min(self.rng.random_range(1..60));
                    draft.run.batch_size = draft.run.batch_size.min(256);
                    draft.run.d_sae = draft.run.d_sae.min(64);
                    self.app_mut()
                        .apply(Action::Sae(SaeAction::Edit(Box::new(draft))));
                    self.frames(1);
                    if self.click("Train") {
                        self.trained += 1;
                    }
                }
                2 => {
                    self.click("Stop");
                }
                3 => {
                    let latent = [None, Some(0), Some(1_000_000)][self.rng.random_range(0..3)];
                    self.app_mut().apply(Action::Sae(SaeAction::Select(latent)));
                }
                4 => {
                    let sort = [
                        FeatureSort::Index,
                        FeatureSort::Density,
                        FeatureSort::MaxActivation,
                    ][self.rng.random_range(0..3)];
                    self.app_mut().apply(Action::Sae(SaeAction::Sort(sort)));
                }
                5 => {
                    let path = self.dir.path().join("sae");
                    self.app_mut().apply(Action::Sae(SaeAction::SaveAs));
                    self.app_mut().apply(Action::PathChosen(
                        toylens::app::files::Purpose::SaveSae,
                        path,
                    ));
                    self.wait_for_io();
                }
                6 => {
                    let path = [self.dir.path().join("sae"), self.dir.path().to_path_buf()]
                        [self.rng.random_range(0..2)]
                    .clone();
                    self.app_mut().apply(Action::PathChosen(
                        toylens::app::files::Purpose::OpenSae,
                        path,
                    ));
                    self.wait_for_io();
                }
                7 => {
                    self.click("Detach");
                }
                _ => {
                    self.click("Summarise again");
                }
            }
            self.frames(1);
            let app = self.app();
            let sae = &app.sae;
            if let Some(a) = &sae.attached {
                assert!(a.sae.weights.all_finite(), "non-finite SAE weights");
                if let Some(features) = sae.features() {
                    assert_eq!(features.len(), a.sae.weights.d_sae);
                }
            }
            let training = sae.is_training();
            let inputs = app.sae_inputs(sae.draft.target);
            let can_train = sae.train_blocker(inputs.as_ref()).is_none();
            let (train, stop) = (self.button_enabled("Train"), self.button_enabled("Stop"));
            assert_eq!(
                (train, stop),
                (Some(can_train), Some(training)),
                "Train and Stop after action {}: {:?}",
                self.actions,
                sae.train_blocker(inputs.as_ref())
            );
        }
        self.click("Transformer");
    }

    /// The invariants, given the state before the action.
    fn check(&mut self, before: &Before) {
        let app = self.app();
        let session = &app.session;
        // A model may be in view without a task (a TL state dict); nothing else may be wrong.
        session
            .config
            .validate_to_view()
            .unwrap_or_else(|e| panic!("invalid model in view after action {}: {e}", self.actions));
        assert!(session.weights.all_finite(), "non-finite weights in view");
        // A view's computation that panics is shown as an error, but it is a bug all the same.
        assert_eq!(
            toylens::app::jobs::crashed_jobs(),
            0,
            "a background job crashed by action {} (its panic is printed above)",
            self.actions
        );
        // Buttons are enabled exactly when their action is possible (no modal in the way).
        if app.confirm.is_none() {
            let training = session.is_training();
            let config_ok = app.settings.config.validate().is_ok() && !app.resetting;
            assert_eq!(
                self.button_enabled("Train"),
                Some(!training && config_ok),
                "Train, after action {}: settings {:?}",
                self.actions,
                app.settings.config.validate()
            );
            assert_eq!(
                self.button_enabled("Reset"),
                Some(!training && config_ok),
                "Reset"
            );
            assert_eq!(self.button_enabled("Stop"), Some(training), "Stop");
            let can_save = !training && !app.busy_io && !app.resetting;
            assert_eq!(self.button_enabled("Save…"), Some(can_save), "Save");
        }
        // No unsaved model is marked saved, and none is replaced without a "Discard".
        if before.dirty && session.generation == before.generation && !session.dirty {
            let file = session.file.as_ref().expect("marked saved without a file");
            let saved = Checkpoint::load(file).expect("marked saved, but the file does not load");
            assert_eq!(
                saved.weights, session.weights,
                "marked saved, but the file holds other weights"
            );
        }
        if before.dirty && session.generation != before.generation {
            assert!(
                self.discard_confirmed || before.fine_tunes,
                "an unsaved model was replaced without asking (action {})",
                self.actions
            );
        }
    }
}

struct Before {
    dirty: bool,
    generation: u64,
    /// Train would fine-tune the weights in view, which keeps them (as the run's epoch 0).
    fine_tunes: bool,
}

#[test]
fn thousands_of_random_user_actions() {
    // RUST_LOG=toylens=debug logs each frame over 50 ms with where its time went.
    let _ = env_logger::builder().is_test(true).try_init();
    let steps = env_number("TOYLENS_SOAK_STEPS", 250) as usize;
    let seed = env_number("TOYLENS_SOAK_SEED", 7);
    let mut soak = Soak::new(seed);
    soak.frames(2);
    let started = Instant::now();
    for _ in 0..steps {
        let before = Before {
            dirty: soak.app().session.dirty,
            generation: soak.app().session.generation,
            fine_tunes: soak.app().fine_tunes(),
        };
        soak.discard_confirmed = false;
        soak.act();
        soak.check(&before);
    }
    // End any run: nothing may panic on the way out either. (Views still computing are left to
    // finish on their own threads.)
    soak.app_mut().apply(Action::Stop);
    let deadline = Instant::now() + Duration::from_secs(60);
    while soak.app().session.is_training() && Instant::now() < deadline {
        soak.frames(1);
    }
    assert!(!soak.app().session.is_training(), "a run never stopped");
    if let Some(tms) = soak.app_mut().tms.as_mut() {
        tms.stop();
    }
    while soak.app().tms.as_ref().is_some_and(|t| t.is_training()) && Instant::now() < deadline {
        soak.frames(1);
    }
    assert!(
        !soak.app().tms.as_ref().is_some_and(|t| t.is_training()),
        "a superposition run never stopped"
    );
    soak.app_mut()
        .apply(Action::Sae(toylens::app::features::SaeAction::Stop));
    while soak.app().sae.is_training() && Instant::now() < deadline {
        soak.frames(1);
    }
    assert!(!soak.app().sae.is_training(), "an SAE run never stopped");
    eprintln!(
        "soak: {} actions (seed {seed}, {} runs started, data files read for a new run {} and \
         attached {} times) in {:.1} s; slowest frame {:.1} ms ({})",
        soak.actions,
        soak.trained,
        soak.data_read.0,
        soak.data_read.1,
        started.elapsed().as_secs_f64(),
        soak.slowest_frame.0,
        soak.slowest_frame.1
    );
}
