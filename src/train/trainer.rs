//! The training loop, one step at a time, so a driver (CLI, worker thread, test) can pause or
//! stop between any two steps. The task decides what a step and an evaluation are; the trainer
//! keeps the model, the optimiser and the counts.

use std::time::Instant;

use candle_core::{Device, Tensor};
use thiserror::Error;

use super::induction::InductionRun;
use super::modular::ModularRun;
use super::sequences::SequencesRun;
use super::skip_trigram::SkipTrigramRun;
use super::{Adam, RunConfig};
use crate::config::ConfigError;
use crate::metrics::{Metrics, StepMetrics};
use crate::model::{ModelError, Plan, Transformer, Weights};
use crate::task::sequences::SequenceData;
use crate::task::{Dataset, TaskConfig, TaskError};

use crate::objective::ForwardPath;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    #[error(
        "training diverged at epoch {epoch}, step {step}: the loss became {loss}. The weights are \
         the last finite ones; lower the learning rate and train again"
    )]
    Diverged {
        epoch: usize,
        step: usize,
        loss: f64,
    },
    #[error("training is already complete")]
    Finished,
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

/// What one call to [`Trainer::step`] did.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub step: StepMetrics,
    /// Set when the step ended an evaluation period (and the last one).
    pub evaluation: Option<Metrics>,
}

/// What a task's step reports back.
pub(super) struct StepOutcome {
    pub loss: f64,
    pub acc: Option<f64>,
    pub samples: usize,
    /// Whether the step completed an epoch (every step, for step-counted tasks).
    pub unit_done: bool,
}

/// Checks the loss, backpropagates it and takes an optimiser step. A non-finite loss leaves
/// the weights untouched. `at` is the (1-based) epoch and step, for the divergence message.
pub(super) fn descend(
    loss: &Tensor,
    adam: &mut Adam,
    (epoch, step): (usize, usize),
) -> Result<f64, TrainError> {
    super::profile::mark("forward and loss", loss.device());
    let value = loss.to_scalar::<f32>()? as f64;
    check_finite(value, (epoch, step))?;
    let grads = loss.backward()?;
    super::profile::mark("backward", loss.device());
    update(value, &grads, adam, loss.device(), (epoch, step))
}

/// [`descend`]'s last part, for a loss whose gradients are already taken: an optimiser step
/// unless the loss is not finite.
pub(super) fn update(
    value: f64,
    grads: &impl super::adam::GradSource,
    adam: &mut Adam,
    device: &Device,
    at: (usize, usize),
) -> Result<f64, TrainError> {
    check_finite(value, at)?;
    adam.step(grads)?;
    super::profile::mark("optimizer", device);
    Ok(value)
}

fn check_finite(value: f64, (epoch, step): (usize, usize)) -> Result<(), TrainError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(TrainError::Diverged {
            epoch,
            step,
            loss: value,
        })
    }
}

/// Returns the memory an evaluation freed to the OS. An evaluation's temporaries (modular
/// addition's progress measures are large) come and go between steps' small allocations, and
/// mimalloc keeps the pages they leave behind, so a long run's peak memory would grow with every
/// evaluation. A forced collection on each thread is not free, so it follows only evaluations
/// long enough to have made such temporaries; purging after every free instead slowed training
/// badly (figures: benches/MEASUREMENTS.md).
fn release_freed_memory(plan: &Plan) {
    crate::memory::release_freed();
    if plan.fused() {
        // The fused ops' threads free their own share of the work's buffers.
        crate::model::cpu_pool().broadcast(|_| crate::memory::release_freed());
    }
}

/// Evaluations shorter than this leave too little behind to be worth a collection.
const COLLECT_AFTER: std::time::Duration = std::time::Duration::from_millis(20);

/// The task's data and its place in it.
enum TaskRun {
    SkipTrigram(Box<SkipTrigramRun>),
    Induction(InductionRun),
    ModularAddition(ModularRun),
    Sequences(SequencesRun),
}

pub struct Trainer {
    cfg: RunConfig,
    device: Device,
    model: Transformer,
    adam: Adam,
    run: TaskRun,
    /// Epochs (or steps, for step-counted tasks) completed.
    units: usize,
    step: usize,
    /// Training loss summed since the last evaluation, and its step count.
    loss_since_eval: (f64, usize),
    started: Instant,
    samples: u64,
    busy_s: f64,
}

impl Trainer {
    /// A fresh run: data, init and shuffling all from `cfg.seed`.
    pub fn new(cfg: RunConfig, device: &Device) -> Result<Self, TrainError> {
        cfg.validate()?;
        let init = Weights::init(&cfg.model, cfg.seed);
        Self::with_weights(cfg, init, device)
    }

    /// A run that starts from given weights (for example a loaded checkpoint).
    pub fn with_weights(
        cfg: RunConfig,
        weights: Weights,
        device: &Device,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        let model = Transformer::new(&cfg.model, &weights, device)?;
        let run =
            match &cfg.task {
                TaskConfig::SkipTrigram(task) => TaskRun::SkipTrigram(Box::new(
                    SkipTrigramRun::new(task, &cfg, model.plan(), device)?,
                )),
                TaskConfig::Induction(task) => TaskRun::Induction(InductionRun::new(task, &cfg)),
                TaskConfig::ModularAddition(task) => {
                    TaskRun::ModularAddition(ModularRun::new(task, &cfg, model.plan(), device)?)
                }
                TaskConfig::Sequences(task) => TaskRun::Sequences(SequencesRun::new(task, &cfg)?),
                TaskConfig::None(_) => {
                    return Err(TrainError::Config(ConfigError::Task(TaskError::NoData(
                        "train on",
                    ))));
                }
            };
        // Frozen parameters stay out of the optimiser: no update, no weight decay.
        let trainable = model
            .specs()
            .iter()
            .zip(model.vars())
            .filter(|(spec, _)| !cfg.train.is_frozen(&spec.name))
            .map(|(_, var)| var.clone())
            .collect();
        let adam = Adam::new(trainable, &cfg.train, model.plan().adam)?;
        Ok(Self {
            units: 0,
            step: 0,
            loss_since_eval: (0.0, 0),
            started: Instant::now(),
            samples: 0,
            busy_s: 0.0,
            device: device.clone(),
            cfg,
            model,
            adam,
            run,
        })
    }

    pub fn config(&self) -> &RunConfig {
        &self.cfg
    }
    pub fn model(&self) -> &Transformer {
        &self.model
    }
    /// The skip-trigram training set.
    pub fn train_data(&self) -> Option<&Dataset> {
        match &self.run {
            TaskRun::SkipTrigram(run) => Some(&run.train.data),
            _ => None,
        }
    }
    /// The skip-trigram validation set.
    pub fn val_data(&self) -> Option<&Dataset> {
        match &self.run {
            TaskRun::SkipTrigram(run) => Some(&run.val.data),
            _ => None,
        }
    }
    /// A data-file task's sequences and its training and validation ids.
    pub fn sequence_split(&self) -> Option<(&std::sync::Arc<SequenceData>, &[u32], &[u32])> {
        match &self.run {
            TaskRun::Sequences(run) => Some((run.data(), run.train_ids(), run.val_ids())),
            _ => None,
        }
    }

    /// The forward path training takes.
    pub fn path(&self) -> ForwardPath {
        match &self.run {
            TaskRun::SkipTrigram(run) => run.train.path,
            TaskRun::ModularAddition(run) if run.shortcut => ForwardPath::FixedQuery,
            TaskRun::ModularAddition(_) => ForwardPath::Full,
            TaskRun::Induction(_) | TaskRun::Sequences(_) => ForwardPath::NextToken,
        }
    }

    /// How training computes, in words: what the objective's path uses of the model's plan
    /// ("direct LM step, fused attention with the residual add, fused unembed + loss, …").
    pub fn describe_path(&self) -> String {
        self.path().describe(self.model.plan())
    }
    /// Distinct rows of the training set when training takes the multiset path.
    pub fn multiset_rows(&self) -> Option<usize> {
        match &self.run {
            TaskRun::SkipTrigram(run) => run.train.multiset_rows(),
            _ => None,
        }
    }
    /// Epochs (steps, for step-counted tasks) completed so far.
    pub fn epochs_done(&self) -> usize {
        self.units
    }
    pub fn is_finished(&self) -> bool {
        self.units >= self.cfg.total_units()
    }

    /// One optimiser step, and an evaluation when it ends an evaluation period. A non-finite
    /// loss leaves the weights untouched and returns [`TrainError::Diverged`].
    pub fn step(&mut self) -> Result<StepResult, TrainError> {
        if self.is_finished() {
            return Err(TrainError::Finished);
        }
        let step_started = Instant::now();
        let at = (self.units + 1, self.step + 1);
        let (model, adam, device) = (&self.model, &mut self.adam, &self.device);
        let outcome = match &mut self.run {
            TaskRun::SkipTrigram(run) => run.step(model, adam, device, at)?,
            TaskRun::Induction(run) => run.step(model, adam, device, at)?,
            TaskRun::ModularAddition(run) => run.step(model, adam, device, at)?,
            TaskRun::Sequences(run) => run.step(model, adam, device, at)?,
        };
        super::profile::mark("metrics", device);
        self.step += 1;
        self.samples += outcome.samples as u64;
        self.loss_since_eval.0 += outcome.loss;
        self.loss_since_eval.1 += 1;
        self.busy_s += step_started.elapsed().as_secs_f64();
        let step = StepMetrics {
            epoch: at.0,
            step: self.step,
            loss: outcome.loss,
            acc: outcome.acc,
            samples: self.samples,
            busy_s: self.busy_s,
        };
        if !outcome.unit_done {
            return Ok(StepResult {
                step,
                evaluation: None,
            });
        }
        self.units += 1;
        let due = self.units.is_multiple_of(self.cfg.train.eval_every) || self.is_finished();
        let evaluation = if due {
            let started = Instant::now();
            let metrics = self.evaluate()?;
            if started.elapsed() >= COLLECT_AFTER {
                release_freed_memory(self.model.plan());
            }
            Some(metrics)
        } else {
            None
        };
        Ok(StepResult { step, evaluation })
    }

    /// The task's metrics now.
    fn evaluate(&mut self) -> Result<Metrics, TrainError> {
        let (sum, n) = std::mem::take(&mut self.loss_since_eval);
        let train_loss = sum / n.max(1) as f64;
        Ok(match &self.run {
            TaskRun::SkipTrigram(run) => Metrics::SkipTrigram(run.evaluate(
                &self.model,
                &self.device,
                self.units,
                self.started.elapsed().as_secs_f64(),
            )?),
            TaskRun::Induction(run) => Metrics::Induction(run.evaluate(
                &self.model,
                self.units,
                train_loss,
                self.busy_s,
            )?),
            TaskRun::ModularAddition(run) => {
                Metrics::ModularAddition(run.evaluate(&self.model, self.units, self.busy_s)?)
            }
            TaskRun::Sequences(run) => {
                Metrics::Sequences(run.evaluate(&self.model, self.units, self.busy_s)?)
            }
        })
    }

    /// A host copy of the current weights.
    pub fn weights(&self) -> Result<Weights, TrainError> {
        Ok(self.model.weights()?)
    }
}
