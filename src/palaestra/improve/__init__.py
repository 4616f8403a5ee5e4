"""Improvement by learning: training data from stored trajectories, trainers (TRL + PEFT), the local model
registry of checkpoints with lineage, and gated promotion (``palaestra improve``)."""
