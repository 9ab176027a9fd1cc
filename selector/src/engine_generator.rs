//! The trainer's generation behind the [`ReplyGenerator`] seam (feature `engine`): on-policy
//! replies from the aligned base model (adapters off).

use crate::onpolicy::{Reply, ReplyGenerator};
use crate::pool::ChatMessage;
use burn::tensor::backend::Backend;
use trainer::{Engine, GenerateOptions, Message};

/// Base-model reply generation with fixed settings (greedy by default: deterministic).
pub struct EngineGenerator<'e, B: Backend> {
    engine: &'e Engine<B>,
    options: GenerateOptions,
}

impl<'e, B: Backend> EngineGenerator<'e, B> {
    /// `options.stop_tokens` gets the model's end-of-turn token added when it has one.
    pub fn new(engine: &'e Engine<B>, mut options: GenerateOptions) -> Self {
        if let Some(eos) = engine.tokenizer.eos_id {
            if !options.stop_tokens.contains(&eos) {
                options.stop_tokens.push(eos);
            }
        }
        EngineGenerator { engine, options }
    }
}

impl<B: Backend> ReplyGenerator for EngineGenerator<'_, B> {
    fn generate_batch(
        &mut self,
        prompts: &[&[ChatMessage]],
    ) -> Result<Vec<Reply>, Box<dyn std::error::Error + Send + Sync>> {
        let mut ids = Vec::with_capacity(prompts.len());
        for p in prompts {
            let messages: Vec<Message> = p
                .iter()
                .map(|m| Message {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect();
            ids.push(self.engine.tokenizer.encode_prompt(&messages)?);
        }
        let generated = self.engine.generate(&ids, None, &self.options)?;
        let eos = self.engine.tokenizer.eos_id;
        let mut out = Vec::with_capacity(generated.len());
        for mut toks in generated {
            // A reply is finished when generation stopped on a stop token, not on the length
            // limit. The end-of-turn token closes the reply; any other special token stays in
            // the text so the quality filter sees leaked template markers.
            let finished = toks
                .last()
                .is_some_and(|t| self.options.stop_tokens.contains(t));
            if toks.last().copied() == eos && eos.is_some() {
                toks.pop();
            }
            let text = self
                .engine
                .tokenizer
                .tokenizer
                .decode(&toks, false)
                .map_err(|e| format!("decoding a generated reply: {e}"))?;
            out.push(Reply {
                text: text.trim().to_string(),
                finished,
            });
        }
        Ok(out)
    }
}
