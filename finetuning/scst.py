"""Self-critical sequence training (Rennie et al., CVPR 2017) as a loss of the same Trainer.

One step, for a batch of B images (`TSNPaliGemmaSCSTCollator`: the prompt alone, every reference caption):

1. the image features (SigLIP + the segment encoder) are computed ONCE, with gradients;
2. k captions per image are sampled from the prompt alone, from those features (detached): no second encoder pass;
3. each sample's reward is its CIDEr-D against the image's references, document frequencies from the training
   split's references (`metrics.CiderDReward`: the number evaluation reports);
4. baseline: the mean reward of the image's OTHER k-1 samples (Luo, arXiv:2003.09971), or the greedy caption's
   reward (`scst_baseline: greedy`, Rennie et al.);
5. loss = -mean over the B*k samples of (reward - baseline) * log p(sample), where log p(sample) is the SUM of its
   tokens' log-probabilities under the sampling temperature (the end-of-sequence token included, not
   length-normalised; the <image> token is never sampled), from a forward of
   prompt + sample that reuses the features of step 1 (`mm_encoder_outputs`) through the Trainer's model (PEFT,
   DDP and gradient checkpointing as in cross-entropy training).
"""

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from tasks.likelihood import sequence_log_probs

from .model_setup import unwrapped_model


@dataclass(frozen=True)
class SCSTSettings:
    """What one SCST step needs of the run's arguments."""

    scst_samples: int = 5
    scst_temperature: float = 1.0
    scst_top_k: int = 0
    scst_baseline: str = "mean"
    max_new_tokens: int = 30

    @classmethod
    def from_args(cls, objective, generation) -> "SCSTSettings":
        return cls(
            scst_samples=objective.scst_samples,
            scst_temperature=objective.scst_temperature,
            scst_top_k=objective.scst_top_k,
            scst_baseline=objective.scst_baseline,
            max_new_tokens=objective.scst_max_new_tokens or generation.max_new_tokens,
        )


@dataclass
class SCSTStats:
    """Running sums for the training log: mean reward, mean advantage magnitude and mean sampled length."""

    samples: int = 0
    reward: float = 0.0
    length: float = 0.0

    def add(self, rewards: torch.Tensor, lengths: torch.Tensor) -> None:
        self.samples += rewards.numel()
        self.reward += float(rewards.sum())
        self.length += float(lengths.float().sum())

    def pop(self) -> dict[str, float]:
        """{"scst_reward", "scst_sample_length"} since the last call, then reset (empty when nothing was added)."""
        if not self.samples:
            return {}
        logs = {"scst_reward": self.reward / self.samples, "scst_sample_length": self.length / self.samples}
        self.samples, self.reward, self.length = 0, 0.0, 0.0
        return logs


def mean_of_others_baseline(rewards: torch.Tensor) -> torch.Tensor:
    """(B, k) rewards -> (B, k) baselines: each sample's is the mean of the image's other k-1 samples.

    >>> mean_of_others_baseline(torch.tensor([[1.0, 2.0, 3.0]])).tolist()
    [[2.5, 2.0, 1.5]]
    """
    samples = rewards.shape[1]
    return (rewards.sum(dim=1, keepdim=True) - rewards) / (samples - 1)


def caption_lengths(tokens: torch.Tensor, eos_token_id: int, pad_token_id: int) -> torch.Tensor:
    """(N, T) sampled tokens -> (N,) tokens each sample consists of: up to and including its first EOS (the policy
    chose to stop there), else every non-pad token."""
    is_eos = tokens == eos_token_id
    first_eos = torch.where(is_eos.any(dim=1), is_eos.float().argmax(dim=1) + 1, (tokens != pad_token_id).sum(dim=1))
    return first_eos


def sample_captions(generator, inputs: dict, features: torch.Tensor, settings, greedy: bool = False) -> torch.Tensor:
    """(B*k, T) new tokens sampled (or (B, T) greedy) from the prompt and the precomputed (B, T_img, D) image
    features (no gradient flows into them here)."""
    # A new output object per call: generate expands it in place for its k samples.
    image_outputs = BaseModelOutputWithPooling(pooler_output=features.detach())
    options = (
        {"do_sample": False, "num_beams": 1}
        if greedy
        else {
            "do_sample": True,
            "num_beams": 1,
            "num_return_sequences": settings.scst_samples,
            "temperature": settings.scst_temperature,
            "top_k": settings.scst_top_k or None,
            "top_p": None,
        }
    )
    was_training = generator.training
    generator.eval()  # the policy without dropout
    try:
        with torch.no_grad():
            sequences = generator.generate(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                token_type_ids=inputs["token_type_ids"],
                mm_encoder_outputs={"image": image_outputs},
                max_new_tokens=settings.max_new_tokens,
                min_new_tokens=1,
                # An <image> token in a caption would take an image feature in the training forward.
                suppress_tokens=[generator.config.image_token_id],
                **options,
            )
    finally:
        generator.train(was_training)
    return sequences[:, inputs["input_ids"].shape[1] :]


def decoded_texts(processor, tokens: torch.Tensor, task) -> list[str]:
    """The task's reading (`Task.read`'s text: a caption cleaned) of each row of generated `tokens` (new tokens
    only)."""
    return [task.read(text, 0, 0)["text"] for text in processor.batch_decode(tokens, skip_special_tokens=True)]


def scst_loss(model, inputs: dict, reward, processor, task, settings, stats: SCSTStats | None = None):
    """The SCST loss of one batch (see the module docstring) for `task` (its reading of the sampled text is
    rewarded); `settings` has the objective's scst_* fields plus `max_new_tokens`."""
    generator = unwrapped_model(getattr(model, "module", model))  # inside DDP and PEFT: `.model` has the encoder
    tokenizer = processor.tokenizer
    image_outputs = generator.model.get_image_features(inputs["pixel_values"])  # once per image, with gradients
    features = image_outputs.pooler_output  # (B, T_img, D)
    images, samples = features.shape[0], settings.scst_samples
    tokens = sample_captions(generator, inputs, features, settings)  # (B*k, T)
    lengths = caption_lengths(tokens, tokenizer.eos_token_id, tokenizer.pad_token_id)
    texts = decoded_texts(processor, tokens, task)
    references = [refs for refs in inputs["references"] for _ in range(samples)]
    rewards = torch.tensor(reward(texts, references), dtype=torch.float32).view(images, samples)  # (B, k)
    if settings.scst_baseline == "greedy":
        greedy = sample_captions(generator, inputs, features, settings, greedy=True)
        greedy_rewards = reward(decoded_texts(processor, greedy, task), inputs["references"])
        baseline = torch.tensor(greedy_rewards, dtype=torch.float32)[:, None]
    else:
        baseline = mean_of_others_baseline(rewards)
    advantages = (rewards - baseline).reshape(-1).to(features.device)  # (B*k,)
    expanded = features.repeat_interleave(samples, dim=0)  # (B*k, T_img, D): the same features, no encoder rerun
    log_probs = sequence_log_probs(model, inputs, expanded, tokens, lengths, settings.scst_temperature)
    if stats is not None:
        stats.add(rewards, lengths)
    return -(advantages * log_probs).mean()
