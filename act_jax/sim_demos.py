"""The old home of `record_missing_demos` and `record_command`, kept for one release: they live
in `act_jax.prepare_data` with the dataset build, the train app's other data step."""

from act_jax.prepare_data import record_command, record_missing_demos

__all__ = ["record_command", "record_missing_demos"]
