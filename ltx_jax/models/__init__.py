"""The LTX-Video models in Flax (transformer, causal VAE, T5 encoder) and what every model shares."""

from ltx_jax.models.params import abstract_params, as_variables, count_params, init_params, param_axes

__all__ = ["abstract_params", "as_variables", "count_params", "init_params", "param_axes"]
