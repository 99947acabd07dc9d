"""Training: data sets (synthetic speech, extracted videos, shards), the teacher trainer,
distillation, the video backend."""
