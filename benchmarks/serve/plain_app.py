"""The baseline: the same champion behind a plain FastAPI app, as one would write it by hand.

Run: ``MODEL_URI=models:/NAME/1 MLFLOW_TRACKING_URI=... uvicorn plain_app:app --port 8100``.
"""

from __future__ import annotations

import os

import mlflow
import pandas as pd
from fastapi import FastAPI, Request

model = mlflow.pyfunc.load_model(os.environ["MODEL_URI"])
app = FastAPI()


@app.post("/predict")
async def predict(request: Request) -> dict:
    records = (await request.json())["records"]
    return {"predictions": model.predict(pd.DataFrame.from_records(records)).tolist()}
