"""The base of every configuration model: frozen, unknown keys rejected, and "none" read as None.

TOML has no null, so a key whose value may be None (`serving_top`, `half_life_events`, ...)
takes the string "none" in a config file or a `--set` override to mean it.
"""

from __future__ import annotations

from types import NoneType
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, model_validator


class StrictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _none_from_text(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, field in cls.model_fields.items():
            if NoneType not in get_args(field.annotation):
                continue
            for key in {name, field.alias} - {None}:
                value = out.get(key)
                if isinstance(value, str) and value.strip().lower() == "none":
                    out[key] = None
        return out
