"""A FastAPI + numpy service computing mean sparse cross-entropy from a JSON
body: what a team writes instead of running lossd. The peer for the HTTP
figures; served by uvicorn (bench/run.sh starts it with 1 and 2 workers).

It accepts the same body lossd gets,
  {"loss": "sparse_categorical_crossentropy", "from_logits": true,
   "y_true": [...], "y_pred": [[...], ...]}
and answers {"loss": x, "count": n}. It reads the raw request (no pydantic
model), which is the fastest way FastAPI offers, so the comparison favours
the peer. It validates nothing beyond what numpy does.
"""
import numpy as np
from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/v1/loss")
async def loss(request: Request):
    body = await request.json()
    y_pred = np.asarray(body["y_pred"], dtype=np.float64)
    y_true = np.asarray(body["y_true"], dtype=np.int64)
    m = y_pred.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(y_pred - m).sum(axis=-1))
    picked = np.take_along_axis(y_pred, y_true[..., None], axis=-1)[..., 0]
    return {"loss": float((lse - picked).mean()), "count": int(y_true.size)}
