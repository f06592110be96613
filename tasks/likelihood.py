"""Log-probabilities of given answers under a (TSN-)PaliGemma from image features computed once: the policy term of
self-critical training, and closed-set answers (`likeliest_answers`: the scene among the classes a model knows).

A closed set is answered by ranking, not by free generation: every known answer is scored as the suffix of the
prompt (its tokens, then the end of sequence, exactly as training labelled it), and the one with the highest MEAN
log-probability per token wins. The answer is therefore always one of the classes; the mean (not the sum) keeps
two-word classes (`dense residential`) from losing to one-word ones for their length alone.
"""

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import BaseModelOutputWithPooling


def sequence_log_probs(
    model, inputs: dict, features: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, temperature: float = 1.0
):
    """(N,) summed log-probability of each sample's first `lengths` tokens after the prompt, the image features
    (N, T_img, D) given: the LM head runs only on the positions that predict a sampled token. `temperature` divides
    the logits as sampling did, so the trained policy is the one that sampled (top-k truncation is not modelled)."""
    prompt_ids = inputs["input_ids"].repeat_interleave(tokens.shape[0] // inputs["input_ids"].shape[0], dim=0)
    prompt_length, samples = prompt_ids.shape[1], tokens.shape[0]
    scored = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]  # (N, T)
    input_ids = torch.cat([prompt_ids, tokens], dim=1)  # (N, P + T)
    prompt_mask = inputs.get("attention_mask")  # left padding, when prompts differ in length
    prompt_mask = (
        torch.ones_like(prompt_ids)
        if prompt_mask is None
        else prompt_mask.repeat_interleave(samples // prompt_mask.shape[0], dim=0)
    )
    attention_mask = torch.cat([prompt_mask, scored.long()], dim=1)
    token_type_ids = torch.cat([torch.zeros_like(prompt_ids), torch.ones_like(tokens)], dim=1)  # prefix | suffix
    keep = torch.zeros_like(input_ids, dtype=torch.bool)  # position t predicts token t+1
    keep[:, prompt_length - 1 : -1] = scored
    outputs = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        token_type_ids=token_type_ids,
        mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=features)},
        logits_to_keep=keep,
    )
    token_log_probs = F.log_softmax(outputs.logits.float() / temperature, dim=-1).gather(1, tokens[scored][:, None])[
        :, 0
    ]  # (M,)
    rows = torch.arange(samples, device=tokens.device)[:, None].expand_as(scored)[scored]  # (M,) sample of each
    return torch.zeros(samples, device=token_log_probs.device).index_add(0, rows, token_log_probs)


def answer_tokens(tokenizer, answers) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, T) token ids of each answer followed by the end of sequence, right-padded, and (C,) their lengths: the
    suffix tokens the processor labels for training."""
    ids = [tokenizer(answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id] for answer in answers]
    width = max(map(len, ids))
    tokens = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in ids])
    return tokens, torch.tensor([len(row) for row in ids])


def answer_scores(model, inputs: dict, tokens: torch.Tensor, lengths: torch.Tensor, encoder=None) -> torch.Tensor:
    """(B, C) mean log-probability per token of each of C answers after each of B prompts (`inputs`: the prompt's
    `input_ids` and the `pixel_values`, one prompt for all rows). The image features are computed once per image
    by `encoder` (default: `model`; under PEFT, the model without its wrapper)."""
    features = (encoder or model).model.get_image_features(inputs["pixel_values"]).pooler_output  # (B, T_img, D)
    images, answers = features.shape[0], tokens.shape[0]
    tokens, lengths = tokens.to(features.device), lengths.to(features.device)
    log_probs = sequence_log_probs(
        model,
        {key: inputs[key] for key in ("input_ids", "attention_mask") if key in inputs},
        features.repeat_interleave(answers, dim=0),  # image-major: every answer of image 0, then of image 1, ...
        tokens.repeat(images, 1),
        lengths.repeat(images),
    )
    return log_probs.view(images, answers) / lengths


def answer_probabilities(model, inputs: dict, tokens: torch.Tensor, lengths: torch.Tensor, encoder=None):
    """(B, C): each answer's score normalised over the C candidates, the softmax of `answer_scores` (the mean
    log-probability per token that ranks them), so the likeliest answer's is its score in [0, 1] and a row sums
    to 1."""
    with torch.no_grad():
        return answer_scores(model, inputs, tokens, lengths, encoder).softmax(dim=1)


def likeliest_answers(model, inputs: dict, tokens: torch.Tensor, lengths: torch.Tensor, encoder=None) -> list[int]:
    """For each of the B prompts of `inputs`, the index of the likeliest of the answers `answer_tokens` gave
    (`answer_scores`)."""
    with torch.no_grad():
        return answer_scores(model, inputs, tokens, lengths, encoder).argmax(dim=1).tolist()


def scored_pieces(tokenizer, ids: list[int], probabilities: list[float]) -> list[tuple[str, float]]:
    """(token text, probability) of generated tokens, special tokens left out: SentencePiece pieces with their
    spaces ("\u2581tank" -> " tank"), so that the pieces join into the decoded text (what `Task.read` reads a score
    per box from)."""
    pieces = [(piece or "").replace("\u2581", " ") for piece in tokenizer.convert_ids_to_tokens(ids)]
    special = set(tokenizer.all_special_ids)
    return [(piece, p) for i, piece, p in zip(ids, pieces, probabilities) if i not in special]
