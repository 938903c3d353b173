"""Deploying trained models: bit-exact ONNX and C exports, and importing float weights.

* :func:`to_onnx` (:mod:`.onnx_export`; needs ``pip install 'nitrod-rs[onnx]'``): an
  integer-only ONNX graph, ``uint8`` images in, ``int8`` scores and the class out.
* :func:`to_c` (:mod:`.c_export`): a C99 ``.h``/``.c`` pair with
  ``int nitrod_predict(const uint8_t *image, int32_t *scores, void *scratch)``.
* :func:`from_float_weights` / :func:`quantize` (:mod:`.float_import`): float weights to the
  integer model, by an exact round-half-away-from-zero rule, range-checked.

Both exports take the same description of the inference path (:mod:`._program`) and give,
for every ``uint8`` image, exactly the scores of ``model.predict_logits(image)``.
"""

from __future__ import annotations

from .c_export import to_c
from .float_import import float_state_dict, from_float_weights, quantize
from .onnx_export import to_onnx

__all__ = ["to_onnx", "to_c", "from_float_weights", "float_state_dict", "quantize"]
