"""interp: interpretability tools over a trained act_jax policy.

Probes, attention analysis, memorisation tests and MLP-only fine-tuning, written as pure
transforms over the param tree and the sown intermediates. Builds on `act_jax`; never the reverse.
"""
