"""The training stage of finetune.py: an optional zero-shot score first, then `Trainer.train`, resumed from the last
complete checkpoint of output_dir."""

import logging

from .outputs import last_complete_checkpoint, training_losses

logger = logging.getLogger(__name__)


def train(args, trainer, splits) -> dict:
    """Train (resuming when output_dir holds a complete checkpoint); returns what the run summary records."""
    training = args.training
    checkpoint = training.resume_from_checkpoint or last_complete_checkpoint(training.output_dir)
    if args.run.evaluate_before_training and training.do_predict and checkpoint is None:
        from .evaluation import predict_each_task

        predict_each_task(trainer, splits["test"], metric_key_prefix="baseline")
    if checkpoint:
        logger.info("Resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    first_loss, last_loss = training_losses(trainer.state.log_history)
    return {
        "resumed_from": checkpoint,
        "first_train_loss": first_loss,
        "last_train_loss": last_loss,
        "global_step": trainer.state.global_step,
        "epochs_done": trainer.state.epoch,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "best_checkpoint": trainer.state.best_model_checkpoint,
    }
