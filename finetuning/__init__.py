"""The pieces of `finetune.py`: arguments, data, model setup, the Trainer subclass, outputs and the HPO search."""
