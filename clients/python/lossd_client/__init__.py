"""lossd_client: a small Python client for the lossd loss-and-AUC service.

    from lossd_client import Client
    c = Client("http://127.0.0.1:8080")
    c.loss("binary_crossentropy", [0, 1], [0.2, 0.7])["loss"]
    s = c.stream(name="val", loss={"loss": "binary_crossentropy"})
    s.update(y_true, y_pred=probs)        # retried safely: batch_id reused
    s.result()["auc"]

Standard library only; numpy arrays (and torch / tensorflow tensors) are sent
as base64 when numpy is installed. Framework callbacks live in
lossd_client.keras and lossd_client.torch and import their framework only
when imported themselves.
"""

from ._tensor import HAVE_NUMPY, decode_tensor, encode_tensor
from .client import Client, LossdConnectionError, LossdError, Stream

__version__ = "0.2.0"

__all__ = ["Client", "Stream", "LossdError", "LossdConnectionError",
           "encode_tensor", "decode_tensor", "HAVE_NUMPY", "__version__"]
