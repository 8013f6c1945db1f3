//! The Data tab's view: the training data the settings describe, per task, regenerated on a
//! background thread when the task or the seed changes (for modular addition, graded by the
//! model in view when it was trained on that split).

use super::{ToylensApp, cpu_model};
use crate::app::jobs::Computed;
use crate::app::settings::DataFilter;
use crate::model::{ModelConfig, Weights};
use crate::objective::right_answers;
use crate::seed::{Stream, stream_rng};
use crate::task::sequences::{SequenceData, Split};
use crate::task::{Ceilings, Dataset, SkipTrigramConfig, TaskConfig, TaskError, TaskKind};

/// The Data tab's inputs: the task (as JSON) and the seed of the settings, and for modular
/// addition the weights in view (the grid shows which pairs the model gets right).
/// The Data tab's inputs: the task (as its JSON), the seed, and the weights it grades, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKey {
    pub task: String,
    pub seed: u64,
    pub graded: Option<super::ViewKey>,
}

/// What the Data tab draws, per task.
pub enum DataView {
    SkipTrigram(DataSummary),
    /// The first training sequences of the seed's stream, flat.
    Induction {
        sequences: Vec<u32>,
        task: crate::task::InductionConfig,
    },
    /// The p × p pairs: which are trained on, and (for the model in view, when it was trained
    /// on this task) which it answers correctly.
    ModularAddition(PairGrid),
    /// A data file's sequences, by split, graded by the model in view when it trained on them.
    Sequences(SequenceTable),
}

/// Sequences the Data tab grades with the model in view (the first ones of the file).
pub const GRADED_SEQUENCES: usize = 50_000;

/// A data file's sequences as the Data tab lists them.
pub struct SequenceTable {
    pub data: std::sync::Arc<SequenceData>,
    /// Each sequence's split for the seed.
    pub split: Vec<Split>,
    pub train: usize,
    /// The model's top prediction at each scored position of the first [`GRADED_SEQUENCES`]
    /// sequences (flat, `UNSCORED` elsewhere), and whether each sequence is wholly right.
    pub graded: Option<(Vec<u32>, Vec<bool>)>,
}

impl SequenceTable {
    fn new(
        data: std::sync::Arc<SequenceData>,
        task: &crate::task::SequencesConfig,
        seed: u64,
        model: Option<&crate::model::Transformer>,
    ) -> Result<Self, String> {
        let (train, val) = data.split(task.val_frac, seed);
        let mut split = vec![Split::Train; data.len()];
        for &i in &val {
            split[i as usize] = Split::Val;
        }
        let graded = match model {
            Some(model) => {
                let ids: Vec<u32> = (0..data.len().min(GRADED_SEQUENCES) as u32).collect();
                let grades = crate::objective::grade_sequences(model, &data, &ids)
                    .map_err(|e| crate::device::error_line(&e))?;
                Some((grades.predictions, grades.right))
            }
            None => None,
        };
        Ok(Self {
            train: train.len(),
            data,
            split,
            graded,
        })
    }
}

/// The modular-addition pairs, counted and drawn once by the job: at p = 2048 there are 4 M,
/// which a frame could neither count nor colour in time.
pub struct PairGrid {
    pub p: usize,
    pub train_mask: Vec<bool>,
    pub correct: Option<Vec<bool>>,
    /// Training pairs.
    pub train: usize,
    /// Training and test pairs answered right, where `correct` is known.
    pub right: Option<(usize, usize)>,
    /// One pixel per pair (row a, column b), coloured by [`pair_colour`].
    pub image: egui::ColorImage,
    /// Unique to this result: the Data tab uploads `image` once per id.
    pub id: u64,
}

impl PairGrid {
    fn new(p: usize, train_mask: Vec<bool>, correct: Option<Vec<bool>>) -> Self {
        let known = |i: usize| correct.as_ref().map(|c| c[i]);
        let pixels = (0..train_mask.len())
            .map(|i| pair_colour(train_mask[i], known(i)))
            .collect();
        let right = correct.as_ref().map(|c| {
            let right = |train: bool| {
                (0..c.len())
                    .filter(|&i| c[i] && train_mask[i] == train)
                    .count()
            };
            (right(true), right(false))
        });
        Self {
            p,
            train: train_mask.iter().filter(|&&t| t).count(),
            right,
            image: egui::ColorImage::new([p, p], pixels),
            id: GRIDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            train_mask,
            correct,
        }
    }
}

/// The colours of the modular-addition grid.
pub const TRAIN_PAIR: egui::Color32 = egui::Color32::from_rgb(66, 133, 244);
pub const TEST_PAIR: egui::Color32 = egui::Color32::from_gray(90);
pub const RIGHT: egui::Color32 = egui::Color32::from_rgb(52, 168, 83);
pub const WRONG: egui::Color32 = egui::Color32::from_rgb(220, 60, 60);

/// Pair `i`'s colour: its split, and once a model answered, whether it got it right (train
/// pairs answered wrong and test pairs answered right stand out).
pub fn pair_colour(train: bool, correct: Option<bool>) -> egui::Color32 {
    match (correct, train) {
        (None, true) | (Some(true), true) => TRAIN_PAIR,
        (None, false) | (Some(false), false) => TEST_PAIR,
        (Some(false), true) => WRONG,
        (Some(true), false) => RIGHT,
    }
}

static GRIDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sequences the induction Data tab lists.
const INDUCTION_ROWS: usize = 200;

impl DataView {
    pub fn compute(
        task: &TaskConfig,
        seed: u64,
        model: Option<(ModelConfig, Weights)>,
    ) -> Result<Self, String> {
        task.validate().map_err(|e| e.to_string())?;
        Ok(match task {
            TaskConfig::None(_) => return Err(TaskError::NoData("show").to_string()),
            TaskConfig::SkipTrigram(t) => Self::SkipTrigram(DataSummary::compute(t, seed)?),
            TaskConfig::Induction(t) => Self::Induction {
                sequences: t.generate(INDUCTION_ROWS, &mut stream_rng(seed, Stream::TrainData)),
                task: t.clone(),
            },
            TaskConfig::Sequences(t) => {
                let data = t
                    .data()
                    .ok_or_else(|| TaskError::NoData("show").to_string())?;
                let model = match model {
                    Some((cfg, weights)) => Some(cpu_model(&cfg, &weights)?),
                    None => None,
                };
                Self::Sequences(SequenceTable::new(data.clone(), t, seed, model.as_ref())?)
            }
            TaskConfig::ModularAddition(t) => {
                let split = t.split(seed);
                let correct = match model {
                    Some((cfg, weights)) => {
                        let model = cpu_model(&cfg, &weights)?;
                        let all: Vec<u32> = (0..t.pairs() as u32).collect();
                        Some(right_answers(&model, &split, &all).map_err(|e| e.to_string())?)
                    }
                    None => None,
                };
                Self::ModularAddition(PairGrid::new(t.p, split.train_mask(), correct))
            }
        })
    }
}

/// The training set of the settings, with what the Data tab draws from it.
pub struct DataSummary {
    pub data: Dataset,
    pub ceilings: Ceilings,
    pub signal_histogram: Vec<usize>,
    pub noise_histogram: Vec<usize>,
    /// Indices of the signal and of the noise samples, for the table's filter.
    signal_rows: Vec<u32>,
    noise_rows: Vec<u32>,
}

impl DataSummary {
    pub fn compute(task: &SkipTrigramConfig, seed: u64) -> Result<Self, String> {
        let data = task.train_set(seed).map_err(|e| e.to_string())?;
        let (signal_histogram, noise_histogram) = data.label_histograms();
        // Data sets hold at most MAX_DATA_TOKENS tokens, so every index fits in u32.
        let (signal_rows, noise_rows): (Vec<u32>, Vec<u32>) =
            (0..data.len() as u32).partition(|&i| data.is_signal[i as usize]);
        Ok(Self {
            ceilings: data.ceilings(),
            data,
            signal_histogram,
            noise_histogram,
            signal_rows,
            noise_rows,
        })
    }

    pub fn row_count(&self, filter: DataFilter) -> usize {
        match filter {
            DataFilter::All => self.data.len(),
            DataFilter::Signal => self.signal_rows.len(),
            DataFilter::Noise => self.noise_rows.len(),
        }
    }

    /// The sample index of the `i`-th row of the table under `filter`.
    pub fn row(&self, filter: DataFilter, i: usize) -> usize {
        match filter {
            DataFilter::All => i,
            DataFilter::Signal => self.signal_rows[i] as usize,
            DataFilter::Noise => self.noise_rows[i] as usize,
        }
    }
}

impl ToylensApp {
    pub fn data_key(&self) -> DataKey {
        let cfg = &self.settings.config;
        DataKey {
            task: serde_json::to_string(&cfg.task).unwrap_or_default(),
            seed: cfg.seed,
            graded: self.data_model_in_view().then(|| self.view_key()),
        }
    }

    /// Whether the Data tab can grade the model in view: modular addition or a data file, and
    /// the model was trained on the very split the settings describe.
    fn data_model_in_view(&self) -> bool {
        let (settings, session) = (&self.settings.config, &self.session.config);
        matches!(
            settings.task.kind(),
            TaskKind::ModularAddition | TaskKind::Sequences
        ) && settings.task == session.task
            && settings.seed == session.seed
    }

    /// Starts regenerating the Data tab's training set if the task or seed of the settings changed.
    pub fn refresh_data_view(&mut self) {
        let key = self.data_key();
        if !self.analysis.data.claim(&key) {
            return;
        }
        let (task, seed) = (self.settings.config.task.clone(), self.settings.config.seed);
        let model = self.data_model_in_view().then(|| self.job_inputs());
        self.job(
            move || DataView::compute(&task, seed, model),
            move |r| Computed::Data(key, r),
        );
    }
}
