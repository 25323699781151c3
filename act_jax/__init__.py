"""act_jax: ACT (Action Chunking with Transformers) in flax.linen.

The policy side of act-jax: model, data pipeline, training, checkpoints, policy runtime and
evaluation. It never imports `interp`; it may use `hardware`'s simulated robot to evaluate.
"""
