//! A training session driven step by step: the data order, the forward/backward of each
//! accumulation window, clipping and AdamW, checkpoints, metrics, and the control checked
//! between optimizer steps.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::chat::EncodedChat;
use crate::engine::Engine;
use crate::error::{io_err, EngineError, Result};
use crate::forward::{SteerPositions, Steering};
use crate::lora::LoraAdapter;
use crate::precision::host_f32;
use crate::train::checkpoint::{self, CheckpointMetrics, CheckpointState};
use crate::train::config::{Regularizer, TrainConfig};
use crate::train::data::{self, TrainData};
use crate::train::loss::{micro_loss, MicroStats, ResolvedRegularizer, WindowNorms};
use crate::train::optim::{clip_global, AdamState, AdamW};
use crate::train::params::HostAdapter;
use crate::train::steering::load_vectors;

/// One optimizer step's metrics (a line of `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepMetrics {
    /// Optimizer steps done (1-based index of this step).
    pub step: usize,
    /// Total steps of the run.
    pub total_steps: usize,
    /// Epoch of this step (0-based).
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// ce + kl + ldifs.
    pub loss: f64,
    /// Answer-token cross-entropy (per-token mean over the window).
    pub ce: f64,
    /// KL term (λ included).
    pub kl: f64,
    /// LDIFS term (λ included).
    pub ldifs: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Non-pad tokens through the model this step.
    pub tokens: usize,
    /// Answer tokens trained on this step.
    pub answer_tokens: usize,
    /// Fraction of answer tokens predicted by arg-max.
    pub mean_token_accuracy: f64,
    /// `tokens` per wall-clock second of this step.
    pub tokens_per_second: f64,
}

/// A checkpoint just written.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    /// Its directory (`out/checkpoints/step-N`).
    pub dir: PathBuf,
    /// Its metrics.
    pub metrics: CheckpointMetrics,
    /// The job's optimizer steps (`metrics.step == total_steps`: the final checkpoint).
    pub total_steps: usize,
}

/// Told about every step and checkpoint.
pub trait Observer {
    /// After each optimizer step.
    fn on_step(&mut self, _m: &StepMetrics) {}
    /// After each checkpoint is durable.
    fn on_checkpoint(&mut self, _c: &CheckpointInfo) {}
}

/// An observer that ignores everything.
impl Observer for () {}

/// What the session does next, asked between optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// Train the next step.
    Continue,
    /// Write a checkpoint and return.
    Pause,
    /// Return at once (every written checkpoint stays).
    Cancel,
}

/// Decides between optimizer steps.
pub trait Control {
    /// Checked before every optimizer step.
    fn check(&mut self) -> Directive;
}

/// Always continue.
impl Control for () {
    fn check(&mut self) -> Directive {
        Directive::Continue
    }
}

/// How [`Session::run`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every step done; the final adapter is in `out`.
    Finished {
        /// Steps done.
        step: usize,
    },
    /// Paused after writing the checkpoint of `step`.
    Paused {
        /// Steps done.
        step: usize,
    },
    /// Cancelled after `step` steps.
    Cancelled {
        /// Steps done.
        step: usize,
    },
}

/// What a session trains on and where it writes.
#[derive(Debug, Clone)]
pub struct SessionInputs<'a> {
    /// Training JSONL.
    pub data: &'a Path,
    /// Validation JSONL.
    pub validation: Option<&'a Path>,
    /// Output directory.
    pub out: &'a Path,
    /// Recorded as `base_model_name_or_path` in saved adapters.
    pub base_model: &'a str,
}

#[derive(Debug, Clone, Copy, Default)]
struct Since {
    steps: usize,
    loss: f64,
    ce: f64,
    kl: f64,
    ldifs: f64,
    correct: usize,
    answer: usize,
}

/// A training run in progress.
pub struct Session<'e, B: AutodiffBackend> {
    engine: &'e Engine<B>,
    config: TrainConfig,
    data: TrainData,
    valid: Option<TrainData>,
    params: HostAdapter,
    adam: AdamState,
    step: usize,
    total: usize,
    out: PathBuf,
    base_model: String,
    reg: ResolvedRegularizer<B>,
    since: Since,
    last_checkpoint: Option<usize>,
}

/// A splitmix64 mix of several words: per-use seeds that do not depend on any RNG's history.
pub fn mix_seed(words: &[u64]) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for &w in words {
        x ^= w.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
    }
    x
}

/// The example order of `epoch`: identity, or a seeded shuffle (ChaCha8, stable across
/// platforms and versions).
pub fn epoch_order(seed: u64, epoch: usize, n: usize, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(mix_seed(&[seed, 1, epoch as u64]));
        order.shuffle(&mut rng);
    }
    order
}

const CHECKPOINTS: &str = "checkpoints";
const METRICS: &str = "metrics.jsonl";

impl<'e, B: AutodiffBackend> Session<'e, B> {
    /// Starts a new run into `inputs.out`, from `init` (an existing adapter, whose shape wins
    /// over `config.lora`) or a fresh adapter (A Kaiming-uniform, B zero, seeded).
    pub fn start(
        engine: &'e Engine<B>,
        mut config: TrainConfig,
        inputs: &SessionInputs<'_>,
        init: Option<&Path>,
    ) -> Result<Self> {
        let out = inputs.out;
        if !checkpoint::list(&out.join(CHECKPOINTS))?.is_empty() {
            return Err(EngineError::Invalid(format!(
                "{} already holds checkpoints: resume it, or choose an empty output directory",
                out.display()
            )));
        }
        let model = &engine.weights.config;
        let params = match init {
            Some(dir) => {
                let a = LoraAdapter::<B>::load_peft(dir, model, &engine.device)?;
                config.lora = a.config.clone();
                HostAdapter::from_adapter(&a)?
            }
            None => {
                let a = LoraAdapter::<B>::init_seeded(
                    model,
                    config.lora.clone(),
                    mix_seed(&[config.seed, 0]),
                    &engine.device,
                );
                HostAdapter::from_adapter(&a)?
            }
        };
        let adam = AdamState::zeros(params.sizes());
        let s = Self::assemble(engine, config, inputs, params, adam, 0)?;
        std::fs::create_dir_all(out).map_err(io_err(out))?;
        let metrics = out.join(METRICS);
        std::fs::write(&metrics, "").map_err(io_err(&metrics))?;
        Ok(s)
    }

    /// Continues the run in `inputs.out` from its newest checkpoint. `config` must equal the
    /// checkpoint's (its LoRA shape and checkpoint cadence excepted), so the continuation is
    /// the same computation.
    pub fn resume(
        engine: &'e Engine<B>,
        config: TrainConfig,
        inputs: &SessionInputs<'_>,
    ) -> Result<Self> {
        let root = inputs.out.join(CHECKPOINTS);
        let Some(&newest) = checkpoint::list(&root)?.last() else {
            return Err(EngineError::Invalid(format!(
                "nothing to resume: {} holds no checkpoint",
                root.display()
            )));
        };
        let model = engine.weights.config.clone();
        let device = engine.device.clone();
        let ck = checkpoint::read(&checkpoint::step_dir(&root, newest), |dir| {
            HostAdapter::from_adapter(&LoraAdapter::<B>::load_peft(dir, &model, &device)?)
        })?;
        let mut wanted = config;
        wanted.lora = ck.state.config.lora.clone();
        let mut saved = ck.state.config.clone();
        saved.checkpoint_every = wanted.checkpoint_every;
        if let Some(d) = wanted.first_difference(&saved) {
            return Err(EngineError::Invalid(format!(
                "{}: the run config differs from the checkpoint's: {d}",
                ck.dir.display()
            )));
        }
        let s = Self::assemble(engine, wanted, inputs, ck.adapter, ck.adam, ck.state.step)?;
        let (n, tokens) = s.data_fingerprint();
        if (n, tokens) != (ck.state.examples, ck.state.example_tokens) {
            return Err(EngineError::Invalid(format!(
                "{}: the training file changed since the checkpoint ({n} examples / {tokens} tokens, checkpoint: {} / {})",
                inputs.data.display(),
                ck.state.examples,
                ck.state.example_tokens
            )));
        }
        // Steps after the checkpoint are trained again: drop their metric lines.
        let metrics = inputs.out.join(METRICS);
        let kept: String = std::fs::read_to_string(&metrics)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("step")?.as_u64())
                    .is_some_and(|st| st as usize <= newest)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&metrics, kept).map_err(io_err(&metrics))?;
        let mut s = s;
        s.last_checkpoint = Some(newest);
        Ok(s)
    }

    fn assemble(
        engine: &'e Engine<B>,
        config: TrainConfig,
        inputs: &SessionInputs<'_>,
        params: HostAdapter,
        adam: AdamState,
        step: usize,
    ) -> Result<Self> {
        let model = &engine.weights.config;
        config.validate(model.num_layers)?;
        params.check_fits(model)?;
        let data = data::load(
            inputs.data,
            &engine.tokenizer,
            config.max_length,
            config.inoculation.as_ref(),
        )?;
        let valid = inputs
            .validation
            .map(|p| data::load(p, &engine.tokenizer, config.max_length, None))
            .transpose()?;
        let reg = match &config.regularizer {
            Regularizer::None => ResolvedRegularizer::None,
            Regularizer::Kl {
                lambda,
                direction,
                tokens,
            } => ResolvedRegularizer::Kl {
                lambda: *lambda,
                direction: *direction,
                tokens: *tokens,
            },
            Regularizer::Ldifs { lambda, layers } => ResolvedRegularizer::Ldifs {
                lambda: *lambda,
                layers: layers.clone(),
            },
            Regularizer::Steering {
                alpha,
                layers,
                vector,
            } => {
                let v = load_vectors(vector, model)?;
                let hs = model.hidden_size;
                ResolvedRegularizer::Steering(
                    layers
                        .iter()
                        .map(|&l| Steering {
                            layer: l,
                            vector: Tensor::from_data(
                                TensorData::new(v[l * hs..(l + 1) * hs].to_vec(), [hs]),
                                &engine.device,
                            ),
                            alpha: *alpha as f32,
                            positions: SteerPositions::All,
                        })
                        .collect(),
                )
            }
        };
        let total = config.total_steps(data.examples.len());
        if step > total {
            return Err(EngineError::Invalid(format!(
                "the checkpoint is at step {step}, past the run's {total} steps"
            )));
        }
        Ok(Self {
            engine,
            config,
            data,
            valid,
            params,
            adam,
            step,
            total,
            out: inputs.out.to_path_buf(),
            base_model: inputs.base_model.to_string(),
            reg,
            since: Since::default(),
            last_checkpoint: None,
        })
    }

    fn data_fingerprint(&self) -> (usize, usize) {
        (
            self.data.examples.len(),
            self.data.examples.iter().map(|e| e.ids.len()).sum(),
        )
    }

    /// Optimizer steps done.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Total optimizer steps of the run.
    pub fn total_steps(&self) -> usize {
        self.total
    }

    /// The resolved run config (the adapter's own shape when started from one).
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The training data as tokenized.
    pub fn data(&self) -> &TrainData {
        &self.data
    }

    /// The current parameters.
    pub fn params(&self) -> &HostAdapter {
        &self.params
    }

    /// The current adapter as constants (for evaluation, scoring, generation).
    pub fn adapter<C: Backend>(&self, device: &C::Device) -> LoraAdapter<C> {
        self.params
            .to_adapter(self.engine.weights.config.num_layers, false, device)
    }

    /// (epoch, index of the window in it, the window's example indices) of 0-based step `k`.
    fn window(&self, k: usize) -> (usize, usize, Vec<usize>) {
        let n = self.data.examples.len();
        let spe = self.config.steps_per_epoch(n);
        let per = self.config.batch_size * self.config.gradient_accumulation_steps;
        let (epoch, w) = (k / spe, k % spe);
        let order = epoch_order(self.config.seed, epoch, n, self.config.shuffle);
        let idx = order[(w * per).min(n)..((w + 1) * per).min(n)].to_vec();
        (epoch, w, idx)
    }

    /// Trains one optimizer step.
    pub fn train_step(&mut self) -> Result<StepMetrics> {
        if self.step >= self.total {
            return Err(EngineError::Invalid("the run is already finished".into()));
        }
        let started = Instant::now();
        let k = self.step;
        let (epoch, _, idx) = self.window(k);
        let examples: Vec<&EncodedChat> = idx.iter().map(|&i| &self.data.examples[i]).collect();
        let kl_tokens = match &self.config.regularizer {
            Regularizer::Kl { tokens, .. } => Some(*tokens),
            _ => None,
        };
        let norms = WindowNorms::of(&examples, kl_tokens);
        let device = &self.engine.device;
        let model = &self.engine.weights.config;
        let adapter: LoraAdapter<B> = self.params.to_adapter(model.num_layers, true, device);
        let mut grads: Vec<Vec<f32>> = self.params.sizes().map(|n| vec![0.0; n]).collect();
        let mut total = MicroStats::default();
        for (mi, micro) in examples.chunks(self.config.batch_size).enumerate() {
            if adapter.config.dropout > 0.0 {
                B::seed(
                    device,
                    mix_seed(&[self.config.seed, 2, k as u64, mi as u64]),
                );
            }
            let (loss, st) = micro_loss(
                &self.engine.weights,
                &adapter,
                micro,
                self.engine.tokenizer.pad_id,
                &self.reg,
                norms,
                true,
                Some(mix_seed(&[self.config.seed, 2, k as u64, mi as u64])),
                device,
            )?;
            let g = loss.backward();
            let mut i = 0;
            for pairs in &adapter.layers {
                for pair in pairs.values() {
                    for t in [&pair.a, &pair.b] {
                        if let Some(gt) = t.grad(&g) {
                            let host = host_f32(gt, "gradient")?;
                            grads[i].iter_mut().zip(host).for_each(|(a, b)| *a += b);
                        }
                        i += 1;
                    }
                }
            }
            total.ce += st.ce;
            total.kl += st.kl;
            total.ldifs += st.ldifs;
            total.correct += st.correct;
            total.answer_tokens += st.answer_tokens;
            total.tokens += st.tokens;
        }
        let grad_norm = clip_global(&mut grads, self.config.max_grad_norm);
        let lr = self.config.learning_rate
            * self
                .config
                .schedule
                .factor(k, self.config.warmup_steps, self.total);
        self.adam.step(
            &mut self.params.data,
            &grads,
            AdamW {
                lr,
                beta1: self.config.adam_beta1,
                beta2: self.config.adam_beta2,
                eps: self.config.adam_epsilon,
                weight_decay: self.config.weight_decay,
            },
        );
        if let Some((i, _)) = self
            .params
            .data
            .iter()
            .enumerate()
            .find(|(_, d)| d.iter().any(|v| !v.is_finite()))
        {
            return Err(EngineError::Invalid(format!(
                "step {}: adapter tensor `{}` became non-finite (loss {}, grad norm {grad_norm}); lower the learning rate",
                k + 1,
                self.params.keys[i].name(),
                total.ce + total.kl + total.ldifs
            )));
        }
        self.step += 1;
        let loss = total.ce + total.kl + total.ldifs;
        let m = StepMetrics {
            step: self.step,
            total_steps: self.total,
            epoch,
            lr,
            loss,
            ce: total.ce,
            kl: total.kl,
            ldifs: total.ldifs,
            grad_norm,
            tokens: total.tokens,
            answer_tokens: total.answer_tokens,
            mean_token_accuracy: total.correct as f64 / total.answer_tokens.max(1) as f64,
            tokens_per_second: total.tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
        };
        self.since.steps += 1;
        self.since.loss += loss;
        self.since.ce += total.ce;
        self.since.kl += total.kl;
        self.since.ldifs += total.ldifs;
        self.since.correct += total.correct;
        self.since.answer += total.answer_tokens;
        let path = self.out.join(METRICS);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let line = serde_json::to_string(&m).map_err(|e| EngineError::Invalid(e.to_string()))?;
        writeln!(f, "{line}").map_err(io_err(&path))?;
        Ok(m)
    }

    /// Answer-token mean NLL and arg-max accuracy of the current adapter over `data`
    /// (no dropout, no steering, no inoculation).
    pub fn evaluate(&self, data: &TrainData) -> Result<(f64, f64)> {
        let device = &self.engine.device;
        let adapter: LoraAdapter<B> = self.adapter(device);
        let (mut nll, mut correct, mut n) = (0.0, 0usize, 0usize);
        let refs: Vec<&EncodedChat> = data.examples.iter().collect();
        for chunk in refs.chunks(self.config.batch_size.max(1)) {
            let norms = WindowNorms::of(chunk, None);
            let (_, st) = micro_loss(
                &self.engine.weights,
                &adapter,
                chunk,
                self.engine.tokenizer.pad_id,
                &ResolvedRegularizer::None,
                norms,
                false,
                None,
                device,
            )?;
            nll += st.nll_sum;
            correct += st.correct;
            n += st.answer_tokens;
        }
        Ok((nll / n.max(1) as f64, correct as f64 / n.max(1) as f64))
    }

    /// Writes the checkpoint of the current step (with validation metrics when a validation
    /// file was given).
    pub fn checkpoint(&mut self) -> Result<CheckpointInfo> {
        let s = self.since;
        let per = |v: f64| v / s.steps.max(1) as f64;
        let mut metrics = CheckpointMetrics {
            step: self.step,
            train_loss: per(s.loss),
            train_mean_token_accuracy: s.correct as f64 / s.answer.max(1) as f64,
            ce: per(s.ce),
            kl: per(s.kl),
            ldifs: per(s.ldifs),
            valid_loss: None,
            valid_mean_token_accuracy: None,
        };
        if let Some(v) = &self.valid {
            let (loss, acc) = self.evaluate(v)?;
            metrics.valid_loss = Some(loss);
            metrics.valid_mean_token_accuracy = Some(acc);
        }
        let n = self.data.examples.len();
        let spe = self.config.steps_per_epoch(n);
        let per_window = self.config.batch_size * self.config.gradient_accumulation_steps;
        let epoch = self.step / spe;
        let (examples, example_tokens) = self.data_fingerprint();
        let state = CheckpointState {
            version: checkpoint::STATE_VERSION,
            step: self.step,
            total_steps: self.total,
            epoch,
            cursor: ((self.step % spe) * per_window).min(n),
            order: epoch_order(self.config.seed, epoch, n, self.config.shuffle),
            seed: self.config.seed,
            adam_step: self.adam.t,
            examples,
            example_tokens,
            config: self.config.clone(),
            base_model: self.base_model.clone(),
            metrics: metrics.clone(),
        };
        let adapter: LoraAdapter<B> = self.adapter(&self.engine.device);
        let base = self.base_model.clone();
        let dir = checkpoint::write(
            &self.out.join(CHECKPOINTS),
            &state,
            &self.params,
            &self.adam,
            |d| adapter.save_peft(d, &base),
        )?;
        self.since = Since::default();
        self.last_checkpoint = Some(self.step);
        Ok(CheckpointInfo {
            dir,
            metrics,
            total_steps: self.total,
        })
    }

    /// Writes the final adapter (`adapter_config.json`, `adapter_model.safetensors`) into the
    /// output directory, atomically (a temp directory, then one rename per file).
    pub fn save_final(&self) -> Result<()> {
        let tmp = checkpoint::temp_dir(&self.out, "final")?;
        let adapter: LoraAdapter<B> = self.adapter(&self.engine.device);
        adapter.save_peft(&tmp, &self.base_model)?;
        for name in ["adapter_model.safetensors", "adapter_config.json"] {
            let (from, to) = (tmp.join(name), self.out.join(name));
            File::open(&from)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&from))?;
            std::fs::rename(&from, &to).map_err(io_err(&to))?;
        }
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        File::open(&self.out)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&self.out))
    }

    /// Trains until the end, a pause or a cancel. Checkpoints every `checkpoint_every` steps
    /// and at the end; `control` is asked before every step.
    pub fn run(
        &mut self,
        observer: &mut dyn Observer,
        control: &mut dyn Control,
    ) -> Result<Outcome> {
        loop {
            if self.step >= self.total {
                if self.last_checkpoint != Some(self.step) {
                    let c = self.checkpoint()?;
                    observer.on_checkpoint(&c);
                }
                self.save_final()?;
                return Ok(Outcome::Finished { step: self.step });
            }
            match control.check() {
                Directive::Continue => {}
                Directive::Cancel => return Ok(Outcome::Cancelled { step: self.step }),
                Directive::Pause => {
                    if self.last_checkpoint != Some(self.step) {
                        let c = self.checkpoint()?;
                        observer.on_checkpoint(&c);
                    }
                    return Ok(Outcome::Paused { step: self.step });
                }
            }
            let m = self.train_step()?;
            observer.on_step(&m);
            let every = self.config.checkpoint_every;
            if every > 0 && self.step.is_multiple_of(every) && self.step < self.total {
                let c = self.checkpoint()?;
                observer.on_checkpoint(&c);
            }
        }
    }
}
