"""The HTTP service: FastAPI app (app.py), routes, request/response schemas, the key and size
guard, the serving state (store, registry, served model) and background retraining."""
